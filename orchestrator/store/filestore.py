"""Task state: live and recent tasks in TinyDB (`<state_dir>/state.json`), finished ones in
the archive (`archive.sqlite`), guarded by one cross-process file lock.

This is the only module that changes a task's status, and only through named
transitions (`start`, `succeed`, `fail`, `cancel`, `mark_lost`, `requeue`) that refuse
the impossible ones and append to `task.history`. Every other module asks the store.
docs/state.md tells the whole story; in short:

- Any number of `orch` processes (cron passes overlapping a person's `orch dispatch`)
  share the state, so every read-modify-write holds `filelock.FileLock(state.lock)`: a
  real `flock(2)` that the kernel releases when a process dies, so a crash never leaves
  a stale lock behind. `with store.locked():` lets a caller make a multi-step decision
  atomically ("no live task for the issue, host has a slot, create the task"); the lock
  is re-entrant within a process, so store methods can be called inside it. Everything
  written inside the outermost `locked()` reaches the file in one atomic write when it
  ends (hotfile.py), so one decision is one write, and durable as a whole.
- The hot file holds every task that is live, lost, or not yet reported to its forge,
  plus the newest `keep_recent` finished, reported ones: what `orch tasks` shows. Older
  finished, reported tasks move to the archive, `archive_batch` at a time, as part of an
  ordinary write: the archive commits first, then the hot file is replaced without them.
  So the cost of a dispatch, a poll pass or `orch tasks` does not grow with history.
  A state.json of the previous version (every task in it) is archived the same way on
  first use, by whichever process gets there first.
- Readers take no lock. They read the hot file, then the archive; a task on its way to
  the archive is in the archive before it leaves the hot file, so a reader always finds
  it (a task in both is read from the hot file, which is the truth for what it holds).
"""

from __future__ import annotations

import builtins  # Store.list shadows `list` in the class body: annotations there say builtins.list
import copy
import heapq
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tinydb import Query, TinyDB
from tinydb.table import Document

from ..core.models import FINISHED_STATUSES, LIVE_STATUSES, TASK_STATUSES, Task
from ..core.split import CHILD_KINDS
from ..core.tally import TaskTally, tally
from ..errors import UsageError
from ..private import FILE_MODE, private_dir
from .archive import Archive
from .errors import DuplicateTask, InvalidTransition, StateCorrupt, StoreBusy, TaskNotFound
from .hotfile import HotStorage, Tables

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
TABLE = "tasks"
COMMANDS = "commands"  # command comments taken (lifecycle/conversation.py), by command key
CURSORS = "cursors"    # per-repository "read up to" times of the command scan
DEFAULT_LOCK_TIMEOUT = 60.0   # seconds; every critical section is local and short
KEEP_RECENT = 50      # finished, reported tasks the hot file keeps (the default view)
ARCHIVE_BATCH = 50    # ... and how many more it may hold before they move, all at once
COMPACT_WAIT = 10.0   # seconds a reader waits to archive an old state (else reads it all)


# --------------------------------------------------------------------------- time

def now_iso() -> str:
    """The current time, ISO-8601 UTC with seconds: what every timestamp field holds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(value: str | datetime) -> datetime:
    """An ISO-8601 string (or datetime) as an aware UTC datetime; naive means UTC."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


# --------------------------------------------------------------------------- store

_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    # action: (statuses it may start from, status it leads to)
    "start": (("queued",), "running"),
    "succeed": (("running",), "succeeded"),
    "fail": (("queued", "running", "lost"), "failed"),
    "cancel": (("queued", "running", "lost"), "cancelled"),
    "mark_lost": (("running",), "lost"),
    "requeue": (("lost", "failed", "cancelled"), "queued"),
}
_PARTICIPLE = {"start": "started", "succeed": "marked succeeded", "fail": "marked failed",
               "cancel": "cancelled", "mark_lost": "marked lost", "requeue": "queued again"}
_NOT_UPDATABLE = {"id", "status", "history"}
_FIELDS = set(Task.__dataclass_fields__)


def archivable(doc: dict[str, Any]) -> bool:
    """A finished task whose forge has heard the outcome and that no process holds:
    nothing will change it again but a person's `orch retry`."""
    return (doc.get("status") in FINISHED_STATUSES and bool(doc.get("finalized"))
            and not doc.get("claimed_by"))


@dataclass(frozen=True)
class _Found:
    seq: int           # record number: creation order across hot file and archive
    task: Task
    archived: bool     # only in the archive (not in the hot file)


class Store:
    """The task table. Every method that writes takes the lock; reads need none."""

    def __init__(self, state_dir: Path | str, *, keep_recent: int = KEEP_RECENT,
                 archive_batch: int = ARCHIVE_BATCH) -> None:
        self.state_dir = Path(state_dir).expanduser()
        private_dir(self.state_dir)
        self.state_dir = self.state_dir.resolve()   # one lock singleton per real directory
        self.path = self.state_dir / STATE_FILE
        self.lock_path = self.state_dir / LOCK_FILE
        self.keep_recent, self.archive_batch = keep_recent, archive_batch
        # is_singleton: every Store on the same directory in this process shares one lock
        # object, so nesting them re-enters instead of deadlocking on our own flock.
        self._lock = FileLock(str(self.lock_path), is_singleton=True, mode=FILE_MODE)
        self._db = TinyDB(str(self.path), storage=HotStorage)
        self._hot: HotStorage = self._db.storage   # type: ignore[assignment]
        # cache_size=0: other processes change the file, so a query cache would go stale.
        self._table = self._db.table(TABLE, cache_size=0)
        self._commands = self._db.table(COMMANDS, cache_size=0)
        self._cursors = self._db.table(CURSORS, cache_size=0)
        self.archive = Archive(self.state_dir)

    # ----------------------------------------------------------------- locking
    @contextmanager
    def locked(self, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Store]:
        """Hold the cross-process state lock for a multi-step decision.

        Re-entrant within a thread (store methods called inside take it again for free).
        Raises StoreBusy after `timeout` seconds. Keep the body short and local: no SSH
        or GitHub calls while holding it, or every other orch process waits. What the
        body writes is durable when the outermost `locked()` returns (or raises).
        """
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreBusy(self.lock_path, timeout) from None
        try:
            self._hot.begin()
            try:
                yield self
            finally:
                self._hot.end(self._archive_step)
        finally:
            self._lock.release()

    # ----------------------------------------------------------------- the hot file
    def _records(self) -> list[tuple[int, Task]]:
        """Every task of the hot file with its record number, oldest first."""
        docs = self._table.all()
        if not self._hot.in_section and self._overdue(docs) and self._compact():
            docs = self._table.all()
        copy_nested = self._hot.in_section   # section data is shared: hand out copies
        out = []
        for doc in sorted(docs, key=lambda d: d.doc_id):
            data = {k: copy.deepcopy(v) if copy_nested and isinstance(v, list | dict) else v
                    for k, v in doc.items()}
            try:
                out.append((doc.doc_id, Task.from_json(data)))
            except TypeError as exc:
                raise StateCorrupt(self.path, f"record {doc.doc_id} is not a task: {exc}") from None
        return out

    def _all(self) -> list[Task]:
        return [t for _, t in self._records()]

    def _overdue(self, docs: list[Document]) -> bool:
        """More finished, reported tasks in the hot file than it keeps between batches."""
        limit = self.keep_recent + self.archive_batch
        return len(docs) > limit and sum(1 for d in docs if archivable(d)) > limit

    def _compact(self) -> bool:
        """Archive what is overdue now (a state written by an older orch) rather than read
        it all on every command. False if another process holds the lock for long (it
        will archive it itself at its next write) or the state dir is read-only."""
        try:
            with self.locked(timeout=COMPACT_WAIT):
                self._hot.touch()
        except (StoreBusy, OSError):
            return False
        return True

    def _archive_step(self, data: Tables) -> Tables:
        """Run on every write of the hot file (under the lock): move the oldest finished,
        reported tasks beyond `keep_recent` to the archive once `archive_batch` more have
        gathered. The archive commits before the hot file is replaced without them."""
        tasks = data.get(TABLE) or {}
        done = [(int(k), d) for k, d in tasks.items() if archivable(d)]
        if len(done) <= self.keep_recent + self.archive_batch:
            return data
        done.sort(key=lambda kd: (str(kd[1].get("finished_at") or ""), kd[0]))
        moving = done[:len(done) - self.keep_recent]
        self.archive.put(moving)
        for seq, _ in moving:
            del tasks[str(seq)]
        return data

    # ----------------------------------------------------------------- reads
    def _find(self, id_or_prefix: str) -> _Found:
        key = (id_or_prefix or "").strip().lower()
        if not key:
            raise TaskNotFound("a task id is required", hint="see `orch tasks`")
        records = self._records()
        for seq, t in records:
            if t.id == key:
                return _Found(seq, t, archived=False)
        hot_ids = {t.id for _, t in records}
        exact = self.archive.get(key)
        if exact is not None:
            return _Found(exact[0], Task.from_json(exact[1]), archived=True)
        matches = [_Found(seq, t, False) for seq, t in records if t.id.startswith(key)]
        matches += [_Found(seq, Task.from_json(d), True)
                    for seq, d in self.archive.with_prefix(key, limit=len(hot_ids) + 11)
                    if d.get("id") not in hot_ids]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise TaskNotFound(f"no task matches {id_or_prefix!r}", hint="see `orch tasks`")
        matches.sort(key=lambda f: f.task.id)
        listed = ", ".join(f"{f.task.id} ({f.task.repo}#{f.task.issue}, {f.task.status})"
                           for f in matches[:10])
        more = f" and more ({len(matches) - 10}+)" if len(matches) > 10 else ""
        raise TaskNotFound(f"task id prefix {id_or_prefix!r} is ambiguous: {listed}{more}",
                           hint="give more characters of the id")

    def get(self, id_or_prefix: str) -> Task:
        """The task whose id is, or uniquely starts with, `id_or_prefix` (archived too)."""
        return self._find(id_or_prefix).task

    def list(self, status: str | None = None, repo: str | None = None, *,
             archived: bool = False) -> builtins.list[Task]:
        """Tasks newest first, optionally only one status and/or one repo.

        The live and recent ones (the hot file: every queued, running and lost task is
        there); `archived=True` adds every archived task (`orch tasks --all`).
        """
        if status is not None and status not in TASK_STATUSES:
            raise UsageError(f"unknown task status {status!r} "
                             f"(known: {', '.join(TASK_STATUSES)})")
        records = self._records()

        def wanted(t: Task) -> bool:
            return (status is None or t.status == status) and (repo is None or t.repo == repo)

        hot = [(seq, t) for seq, t in reversed(records) if wanted(t)]
        if not archived:
            return [t for _, t in hot]
        hot_ids = {t.id for _, t in records}
        old = ((seq, Task.from_json(d)) for seq, d in self.archive.newest_first(status, repo)
               if d.get("id") not in hot_ids)
        return [t for _, t in heapq.merge(hot, old, key=lambda st: -st[0])]

    def archived_count(self) -> int:
        """Tasks only the archive holds (what `orch tasks` leaves out)."""
        if not self.archive.exists():
            return 0
        return self.archive.count() - len(self.archive.ids(t.id for t in self._all()))

    def for_issue(self, repo: str, issue: int) -> builtins.list[Task]:
        """Every task ever made for one issue, newest first (archived ones too)."""
        records = self._records()
        hot = [(seq, t) for seq, t in reversed(records) if t.repo == repo and t.issue == int(issue)]
        if not self.archive.exists():
            return [t for _, t in hot]
        hot_ids = {t.id for _, t in records}
        old = [(seq, Task.from_json(d)) for seq, d in self.archive.for_issue(repo, issue)
               if d.get("id") not in hot_ids]
        return [t for _, t in heapq.merge(hot, old, key=lambda st: -st[0])]

    def live_for(self, repo: str, issue: int) -> Task | None:
        """The issue's queued or running task, if any (there is at most one; live tasks are
        never archived, so the hot file alone answers). A split's parts and integrations
        are not counted: their parent is live while they are, and speaks for them."""
        return next((t for t in reversed(self._all())
                     if t.repo == repo and t.issue == int(issue) and t.status in LIVE_STATUSES
                     and t.kind not in CHILD_KINDS),
                    None)

    def children(self, parent: Task) -> builtins.list[Task]:
        """A split's parts and integrations, oldest first (archived ones too: the tasks
        of the parent's issue)."""
        return [t for t in reversed(self.for_issue(parent.repo, parent.issue))
                if t.parent == parent.id and t.kind in CHILD_KINDS]

    def refuse_duplicate(self, repo: str, issue: int, task_id: str | None = None) -> None:
        """The rule "one live task per issue", the one place it is decided: DuplicateTask
        if the issue has a live task other than `task_id`. create and requeue apply it
        under the lock; a caller may ask first (same answer) to say so before other work."""
        live = self.live_for(repo, issue)
        if live is not None and live.id != task_id:
            raise DuplicateTask(live)

    def running_on(self, host: str) -> builtins.list[Task]:
        """Tasks the store believes are running on `host`."""
        return [t for t in self._all() if t.status == "running" and t.host == host]

    def reserved(self) -> dict[str, builtins.list[str]]:
        """Live task ids per host: the `reserved` argument of `schedule.place`.

        A task the store has started may not show on its host yet (or the probe was
        taken before it started); the scheduler adds the ones the host does not show.
        """
        ids: dict[str, builtins.list[str]] = {}
        for t in self._all():
            if t.status in LIVE_STATUSES and t.host:
                ids.setdefault(t.host, []).append(t.id)
        return ids

    def tally(self, since: str | datetime) -> TaskTally:
        """Counts over every task, archived ones included, and the USD spent since `since`
        (core.tally's rules): what metrics and the daily budget read."""
        start = parse_time(since)
        hot = self._all()
        out = tally(hot, start)
        if self.archive.exists():
            out = out.add(self.archive.tally(start, skip=[t.id for t in hot]))
        return out

    def counts_by_status(self) -> dict[str, int]:
        """Number of tasks in every status (all statuses present, zero included)."""
        return self.tally(datetime.now(UTC)).statuses()

    def spent_since(self, since: str | datetime) -> float:
        """USD spent by tasks that finished at or after `since` (the daily fleet budget).

        Lost tasks count too: their agent ran (and cost) even if it never finished.
        """
        start = parse_time(since)
        hot = self._all()
        spent = tally(hot, start).spent
        if self.archive.exists():
            spent += self.archive.spent_since(start, skip=[t.id for t in hot])
        return spent

    # ----------------------------------------------------------------- writes
    def create(self, repo: str, issue: int, title: str, specialty: str,
               forge: str = "github", **fields: Any) -> Task:
        """Record a queued task; refused (DuplicateTask) if the issue has a live one.
        `fields`: other Task fields it starts with (kind, parent, pr_number)."""
        bad = sorted(set(fields) & (_NOT_UPDATABLE | {"id", "created_at"}))
        if bad:
            raise ValueError(f"Store.create cannot set {', '.join(bad)}")
        with self.locked():
            if fields.get("kind") not in CHILD_KINDS:   # a split's parts: one per plan entry (lifecycle/split.py)
                self.refuse_duplicate(repo, issue)
            docs = self._table.all()
            existing = {d.get("id") for d in docs}
            task_id = uuid.uuid4().hex[:8]
            while task_id in existing or self.archive.get(task_id) is not None:
                task_id = uuid.uuid4().hex[:8]
            now = now_iso()
            task = Task(id=task_id, repo=repo, issue=int(issue), title=title,
                        specialty=specialty, forge=forge, created_at=now, **fields,
                        history=[{"at": now, "from": None, "to": "queued",
                                  "reason": f"created (specialty {specialty})"}])
            self._table.insert(Document(task.to_json(), doc_id=self._next_seq(docs)))
            return task

    def _next_seq(self, docs: builtins.list[Document]) -> int:
        """A record number above every one used, in the hot file or the archive (so that
        numbers keep telling creation order). From the files as read now, under the lock:
        TinyDB's own next-id counter is cached per process and would collide with other
        writers."""
        archived = self.archive.max_seq() if self.archive.exists() else 0
        return max(max((d.doc_id for d in docs), default=0), archived) + 1

    def update(self, task_id: str, **fields: Any) -> Task:
        """Change non-status fields (pr_url, cost_usd, pid, ...); status needs a transition."""
        bad = sorted(set(fields) & _NOT_UPDATABLE)
        if bad:
            raise ValueError(f"Store.update cannot change {', '.join(bad)}: "
                             f"status changes only through the named transitions")
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise TypeError(f"Task has no field(s) {', '.join(unknown)}")
        with self.locked():
            found = self._find(task_id)
            task = found.task
            if all(getattr(task, k) == v for k, v in fields.items()):
                return task          # nothing changes: no write
            for k, v in fields.items():
                setattr(task, k, v)
            self._save(found, task)
            return task

    def start(self, task_id: str, host: str, branch: str, workspace: str,
              pid: int | None = None, **fields: Any) -> Task:
        """queued -> running on `host`; counts one more dispatch attempt."""
        return self._transition(task_id, "start", f"started on {host}",
                                host=host, branch=branch, workspace=workspace, pid=pid,
                                started_at=now_iso(), unreachable_since=None, error=None,
                                _attempt=True, **fields)

    def succeed(self, task_id: str, reason: str = "job succeeded", **fields: Any) -> Task:
        """running -> succeeded (fields: pr_url, cost_usd, turns, tests, commit, ...)."""
        return self._transition(task_id, "succeed", reason, **fields)

    def fail(self, task_id: str, error: str, **fields: Any) -> Task:
        """queued|running|lost -> failed, with `error` saying why (one line)."""
        return self._transition(task_id, "fail", error, error=error, **fields)

    def cancel(self, task_id: str, reason: str = "cancelled by user", **fields: Any) -> Task:
        """queued|running|lost -> cancelled (the caller stops the remote job)."""
        return self._transition(task_id, "cancel", reason, **fields)

    def mark_lost(self, task_id: str, reason: str, **fields: Any) -> Task:
        """running -> lost: its host vanished (or its job died) and the result is unknown."""
        return self._transition(task_id, "mark_lost", reason, error=f"lost: {reason}", **fields)

    def requeue(self, task_id: str, reason: str, max_attempts: int | None = None,
                reset_attempts: bool = False) -> Task:
        """lost|failed|cancelled -> queued, to be placed again (possibly on another host).

        `max_attempts` bounds automatic requeues of lost tasks (poll.max_attempts): a lost
        task that has used them up is refused, and the caller fails it for good.
        `reset_attempts` (for `orch retry`, a person's decision) starts the count again.
        The previous host, pid and workspace move into the history entry, so the stale
        job can still be found and killed if its host comes back. An archived task comes
        back to the hot file.
        """
        with self.locked():
            task = self.get(task_id)
            allowed, _ = _TRANSITIONS["requeue"]
            if task.status not in allowed:
                raise InvalidTransition(task, _PARTICIPLE["requeue"], allowed)
            if (task.status == "lost" and max_attempts is not None and not reset_attempts
                    and task.attempts >= max_attempts):
                raise InvalidTransition(
                    task, "queued again", ("lost", "failed", "cancelled"),
                    detail=(f"task {task.id} is lost after {task.attempts} of {max_attempts} "
                            f"attempts; it will not be queued again automatically"))
            if task.kind not in CHILD_KINDS:
                self.refuse_duplicate(task.repo, task.issue, task.id)
            previous = {"host": task.host, "pid": task.pid, "workspace": task.workspace}
            fields: dict[str, Any] = dict(host=None, pid=None, workspace=None, error=None,
                                          error_kind=None,
                                          finished_at=None, unreachable_since=None,
                                          finalized=False, _previous=previous)
            if reset_attempts:
                fields["attempts"] = 0
            return self._transition(task_id, "requeue", reason, **fields)

    # ----------------------------------------------------------------- commands
    def command(self, key: str) -> dict[str, Any] | None:
        """The record of a command comment taken before (core/commands.py command_key)."""
        found = self._commands.get(Query().key == key)
        return dict(found) if isinstance(found, dict) else None

    def take_command(self, key: str, **record: Any) -> bool:
        """Record command `key` as taken, once: False when it was taken before (by this
        or any other orch process). The caller holds `locked()` around this and whatever
        the command starts (a task created), so both are one write: a crash leaves either
        neither or both, and a second pass finds the record."""
        with self.locked():
            if self._commands.contains(Query().key == key):
                return False
            self._commands.insert({"key": key, "taken_at": now_iso(), **record})
            return True

    def update_command(self, key: str, **fields: Any) -> None:
        """Add to a taken command's record (what orch replied, how it ended)."""
        with self.locked():
            self._commands.update(fields, Query().key == key)

    def commands_for(self, task_id: str) -> builtins.list[dict[str, Any]]:
        """The command records that started task `task_id`."""
        return [dict(d) for d in self._commands.search(Query().task_id == task_id)]

    def forget_commands(self, taken_before: str) -> int:
        """Drop the records of commands taken before `taken_before` (ISO time): a command
        scan never reads a comment written before its window again, so these can never
        be met again; the hot file does not grow with every command ever given."""
        cut = parse_time(taken_before)
        with self.locked():
            old = [d.doc_id for d in self._commands.all()
                   if parse_time(str(d.get("taken_at") or taken_before)) < cut]
            if old:
                self._commands.remove(doc_ids=old)
            return len(old)

    def cursor(self, name: str) -> str | None:
        found = self._cursors.get(Query().name == name)
        return str(found["at"]) if isinstance(found, dict) and found.get("at") else None

    def set_cursor(self, name: str, at: str) -> None:
        with self.locked():
            self._cursors.upsert({"name": name, "at": at}, Query().name == name)

    # ----------------------------------------------------------------- internals
    def _transition(self, task_id: str, action: str, reason: str, *,
                    _attempt: bool = False, _previous: dict[str, Any] | None = None,
                    **fields: Any) -> Task:
        allowed, target = _TRANSITIONS[action]
        bad = sorted(set(fields) & _NOT_UPDATABLE)
        if bad:
            raise ValueError(f"a transition cannot set {', '.join(bad)} directly")
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise TypeError(f"Task has no field(s) {', '.join(unknown)}")
        with self.locked():
            found = self._find(task_id)
            task = found.task
            if task.status not in allowed:
                raise InvalidTransition(task, _PARTICIPLE[action], allowed)
            now = now_iso()
            entry: dict[str, Any] = {"at": now, "from": task.status, "to": target,
                                     "reason": reason}
            for k, v in fields.items():
                setattr(task, k, v)
            host = task.host or (_previous or {}).get("host")
            if host:
                entry["host"] = host
            if _previous and any(_previous.values()):
                entry["previous"] = _previous
            if _attempt:
                task.attempts += 1
            if target in FINISHED_STATUSES:
                task.finished_at = now
            task.status = target
            task.history = [*task.history, entry]
            self._save(found, task)
            return task

    def _save(self, found: _Found, task: Task) -> None:
        """Write one task back (caller holds the lock). An archived task returns to the hot
        file under its record number; its archive row stays as a stale copy (so a reader
        that read the hot file just before still finds it) until it is archived again."""
        if found.archived:
            taken = {d.doc_id for d in self._table.all()}
            seq = found.seq if found.seq and found.seq not in taken else self._next_seq(
                self._table.all())
            self._table.insert(Document(task.to_json(), doc_id=seq))
            return
        n = self._table.update(_replace_with(task.to_json()), Query().id == task.id)
        if not n:
            raise TaskNotFound(f"task {task.id} vanished from {self.path}")


def _replace_with(data: dict[str, Any]) -> Callable[[MutableMapping[str, Any]], None]:
    """A TinyDB update operation that replaces the whole document."""
    def op(doc: MutableMapping[str, Any]) -> None:
        doc.clear()
        doc.update(data)
    return op
