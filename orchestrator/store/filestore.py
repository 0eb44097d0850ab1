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
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tinydb import Query, TinyDB
from tinydb.table import Document

from ..core.models import CHILD_KINDS, FINISHED_STATUSES, LIVE_STATUSES, TASK_STATUSES, Task
from ..core.tally import TaskTally, tally
from ..errors import UsageError
from ..private import FILE_MODE, private_dir
from . import transitions as rules
from .archive import Archive
from .clock import now_iso, parse_time
from .errors import DuplicateTask, NoSlot, StateCorrupt, StateMoved, StoreBusy, TaskNotFound
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
MOVED_FILE = "state.moved"   # written by `orch store migrate`: where the state went
ORCHESTRATORS_FILE = "orchestrators.json"   # heartbeats: owner -> last seen

__all__ = ["Store", "now_iso", "parse_time"]


# --------------------------------------------------------------------------- store

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

    backend = "tinydb"

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
        self.lease = rules.lease()

    @classmethod
    def from_address(cls, address: str, state_dir: Path) -> Store:
        """`tinydb:PATH` (a state dir; relative to the working directory)."""
        return cls(address.split(":", 1)[1] or state_dir)

    @property
    def where(self) -> str:
        """Where the state is, as `orch store` names it (tinydb:DIR)."""
        return f"tinydb:{self.state_dir}"

    def close(self) -> None:
        """Nothing to close: every change is on disk when its method returns."""

    def moved_to(self) -> str | None:
        """Where `orch store migrate` moved this state (None: it is the state in force)."""
        marker = self.state_dir / MOVED_FILE
        try:
            return marker.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

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
            moved = self.moved_to()
            if moved is not None:
                raise StateMoved(self.path, moved)
            self._hot.begin()
            try:
                yield self
            finally:
                self._hot.end(self._archive_step)
        finally:
            self._lock.release()

    # ----------------------------------------------------------------- the hot file
    def _docs(self) -> list[Document]:
        """Every record of the hot file as stored, oldest first; StateCorrupt if one lacks
        a field every task has (a call that makes Tasks of a few records still refuses a
        broken file, as one that made Tasks of them all did)."""
        docs = self._table.all()
        if not self._hot.in_section and self._overdue(docs) and self._compact():
            docs = self._table.all()
        for d in docs:
            if not d.keys() >= _REQUIRED:
                missing = ", ".join(sorted(_REQUIRED - d.keys()))
                raise StateCorrupt(self.path, f"record {d.doc_id} is not a task: no {missing}")
        return sorted(docs, key=lambda d: d.doc_id)

    def _task(self, doc: Document) -> Task:
        """One stored record as a Task (copied: section data is shared)."""
        copy_nested = self._hot.in_section
        data = {k: copy.deepcopy(v) if copy_nested and isinstance(v, list | dict) else v
                for k, v in doc.items()}
        try:
            return Task.from_json(data)
        except TypeError as exc:
            raise StateCorrupt(self.path, f"record {doc.doc_id} is not a task: {exc}") from None

    def _records(self, where: Callable[[Document], bool] | None = None
                 ) -> list[tuple[int, Task]]:
        """The tasks of the hot file with their record numbers, oldest first; with `where`,
        only the records it accepts. Turning a record into a Task (a deep copy and a
        dataclass) is most of a store call's cost, and the hot file holds up to ~100: a
        call about one issue or one host tests the stored fields first. `where` tests
        fields no upgrade of an old record changes (id, repo, issue, status, host), and
        callers check the Task again: a record it lets through too many is harmless."""
        return [(d.doc_id, self._task(d)) for d in self._docs() if where is None or where(d)]

    def _all(self, where: Callable[[Document], bool] | None = None) -> list[Task]:
        return [t for _, t in self._records(where)]

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
        except (StoreBusy, StateMoved, OSError):
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
        docs = self._docs()
        # An exact id is a prefix of itself: only the records the key starts become Tasks.
        records = [(d.doc_id, self._task(d)) for d in docs if str(d.get("id") or "").startswith(key)]
        for seq, t in records:
            if t.id == key:
                return _Found(seq, t, archived=False)
        hot_ids = {d.get("id") for d in docs}
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
        return self.archive.count() - len(self.archive.ids(str(d.get("id")) for d in self._docs()))

    def for_issue(self, repo: str, issue: int) -> builtins.list[Task]:
        """Every task ever made for one issue, newest first (archived ones too)."""
        docs = self._docs()
        records = [(d.doc_id, self._task(d)) for d in docs if _about(d, repo, issue)]
        hot = [(seq, t) for seq, t in reversed(records) if t.repo == repo and t.issue == int(issue)]
        if not self.archive.exists():
            return [t for _, t in hot]
        hot_ids = {d.get("id") for d in docs}
        old = [(seq, Task.from_json(d)) for seq, d in self.archive.for_issue(repo, issue)
               if d.get("id") not in hot_ids]
        return [t for _, t in heapq.merge(hot, old, key=lambda st: -st[0])]

    def live_for(self, repo: str, issue: int) -> Task | None:
        """The issue's queued or running task, if any (there is at most one; live tasks are
        never archived, so the hot file alone answers). A split's parts and integrations
        are not counted: their parent is live while they are, and speaks for them."""
        return next((t for t in reversed(self._all(lambda d: _about(d, repo, issue)))
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
        return [t for t in self._all(lambda d: d.get("host") == host)
                if t.status == "running" and t.host == host]

    def reserved(self) -> dict[str, builtins.list[str]]:
        """Live task ids per host: the `reserved` argument of `schedule.place`.

        A task the store has started may not show on its host yet (or the probe was
        taken before it started); the scheduler adds the ones the host does not show.
        """
        ids: dict[str, builtins.list[str]] = {}
        for t in self._all(lambda d: d.get("status") in LIVE_STATUSES):
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
        with self.locked():
            if fields.get("kind") not in CHILD_KINDS:   # a split's parts: one per plan entry (lifecycle/split.py)
                self.refuse_duplicate(repo, issue)
            docs = self._table.all()
            existing = {d.get("id") for d in docs}
            task_id = uuid.uuid4().hex[:8]
            while task_id in existing or self.archive.get(task_id) is not None:
                task_id = uuid.uuid4().hex[:8]
            task = rules.new_task(task_id, repo, issue, title, specialty, forge,
                                  datetime.now(UTC), fields)
            self._table.insert(Document(task.to_json(), doc_id=self._next_seq(docs)))
            return task

    def _next_seq(self, docs: builtins.list[Document]) -> int:
        """A record number above every one used, in the hot file or the archive (so that
        numbers keep telling creation order). From the files as read now, under the lock:
        TinyDB's own next-id counter is cached per process and would collide with other
        writers."""
        archived = self.archive.max_seq() if self.archive.exists() else 0
        return max(max((d.doc_id for d in docs), default=0), archived) + 1

    def update(self, task_id: str, *, fence: int | None = None, **fields: Any) -> Task:
        """Change non-status fields (pr_url, cost_usd, pid, ...); status needs a transition.
        `fence`: the claim this change is made under; FenceLost if it is not the task's
        current claim any more (another orchestrator took the task over)."""
        rules.check_fields(fields, "Store.update")
        with self.locked():
            found = self._find(task_id)
            task = found.task
            now = datetime.now(UTC)
            rules.check_fence(task, fence, now)
            if all(getattr(task, k) == v for k, v in fields.items()):
                return task          # nothing changes: no write
            rules.set_claim(task, fields, now, self.lease)
            self._save(found, task)
            return task

    def start(self, task_id: str, host: str, branch: str, workspace: str,
              pid: int | None = None, *, slots: int | None = None, **fields: Any) -> Task:
        """queued -> running on `host`; counts one more dispatch attempt. `slots`: the
        host's capacity: NoSlot (nothing changed) when that many tasks already run there."""
        with self.locked():
            if slots is not None:
                held = self.running_on(host)
                if len(held) >= slots:
                    raise NoSlot(host, slots)
            return self._transition(task_id, "start", f"started on {host}",
                                    host=host, branch=branch, workspace=workspace, pid=pid,
                                    started_at=now_iso(), unreachable_since=None, error=None,
                                    _attempt=True, **fields)

    def succeed(self, task_id: str, reason: str = "job succeeded", *,
                fence: int | None = None, **fields: Any) -> Task:
        """running -> succeeded (fields: pr_url, cost_usd, turns, tests, commit, ...)."""
        return self._transition(task_id, "succeed", reason, _fence=fence, **fields)

    def fail(self, task_id: str, error: str, *, fence: int | None = None,
             **fields: Any) -> Task:
        """queued|running|lost -> failed, with `error` saying why (one line)."""
        return self._transition(task_id, "fail", error, _fence=fence, error=error, **fields)

    def cancel(self, task_id: str, reason: str = "cancelled by user", *,
               fence: int | None = None, **fields: Any) -> Task:
        """queued|running|lost -> cancelled (the caller stops the remote job)."""
        return self._transition(task_id, "cancel", reason, _fence=fence, **fields)

    def mark_lost(self, task_id: str, reason: str, *, fence: int | None = None,
                  owner: str | None = None, take_from: str | None = None,
                  **fields: Any) -> Task:
        """running -> lost: its host vanished (or its job died) and the result is unknown.
        `owner`: refused (InvalidTransition) while a process other than `owner` (or
        `take_from`, seen dead) holds an unexpired claim on it."""
        with self.locked():
            task = self.get(task_id)
            rules.check_free(task, owner, datetime.now(UTC), take_from, self.lease)
            return self._transition(task_id, "mark_lost", reason, _fence=fence,
                                    error=f"lost: {reason}", **fields)

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
            fields, previous = rules.requeue_fields(task, max_attempts, reset_attempts)
            if task.kind not in CHILD_KINDS:   # a split's parts: see create
                self.refuse_duplicate(task.repo, task.issue, task.id)
            return self._transition(task_id, "requeue", reason, _previous=previous, **fields)

    # ----------------------------------------------------------------- migration
    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every task (hot file and archive, the hot file's copy winning) with its record
        number, oldest first: what `orch store migrate` copies."""
        hot = {d.doc_id: dict(d) for d in self._table.all()}
        hot_ids = {d.get("id") for d in hot.values()}
        old = [] if not self.archive.exists() else [
            (seq, doc) for seq, doc in self.archive.newest_first() if doc.get("id") not in hot_ids]
        yield from sorted([*hot.items(), *old], key=lambda sd: sd[0])

    def count(self) -> int:
        """How many tasks the state holds (hot file and archive)."""
        return self.archived_count() + len(self._table.all())

    def put_all(self, records: Iterator[tuple[int, dict[str, Any]]]) -> int:
        """Insert or replace tasks (record number, JSON) inside the caller's `locked()`
        (`orch store migrate --to tinydb:`); the finished, reported ones then move to the
        archive as the write ends, as for any write. Returns how many."""
        with self.locked():
            rows = [(int(seq), Task.from_json(doc).to_json()) for seq, doc in records]
            ids = {doc["id"] for _, doc in rows}
            self._table.remove(Query().id.one_of(list(ids)))
            taken = {d.doc_id for d in self._table.all()}
            clash = [seq for seq, _ in rows if seq in taken]
            if clash:
                raise UsageError(f"{self.path}: holds other tasks under the same record numbers "
                                 f"({len(clash)}); nothing was changed",
                                 hint="migrate into an empty state directory")
            self._table.insert_multiple(Document(doc, doc_id=seq) for seq, doc in rows)
            return len(rows)

    def unmark_moved(self) -> None:
        """Make a state `orch store migrate` had moved away writable again (migrating back
        into it)."""
        (self.state_dir / MOVED_FILE).unlink(missing_ok=True)
        for name in (STATE_FILE, "archive.sqlite"):
            f = self.state_dir / name
            if f.exists():
                f.chmod(FILE_MODE)

    def mark_moved(self, where: str) -> None:
        """After `orch store migrate`: the files read-only, and every later write refused
        with where the state went (StateMoved). Readers still read them."""
        from ..atomic import replace_file
        replace_file(self.state_dir / MOVED_FILE, where + "\n", mode=FILE_MODE)
        for name in (STATE_FILE, "archive.sqlite"):
            f = self.state_dir / name
            if f.exists():
                f.chmod(0o400)

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

    def conversation(self) -> tuple[builtins.list[dict[str, Any]], dict[str, str]]:
        """Every command record and cursor (`orch store migrate` copies them)."""
        return ([dict(d) for d in self._commands.all()],
                {str(d["name"]): str(d["at"]) for d in self._cursors.all() if d.get("name")})

    def put_conversation(self, commands: builtins.list[dict[str, Any]],
                         cursors: dict[str, str]) -> None:
        """Insert or replace command records and cursors."""
        with self.locked():
            for rec in commands:
                self._commands.upsert(dict(rec), Query().key == rec["key"])
            for name, at in cursors.items():
                self._cursors.upsert({"name": name, "at": at}, Query().name == name)

    def cursor(self, name: str) -> str | None:
        found = self._cursors.get(Query().name == name)
        return str(found["at"]) if isinstance(found, dict) and found.get("at") else None

    def set_cursor(self, name: str, at: str) -> None:
        with self.locked():
            self._cursors.upsert({"name": name, "at": at}, Query().name == name)

    # ----------------------------------------------------------------- internals
    def _transition(self, task_id: str, action: str, reason: str, *,
                    _attempt: bool = False, _previous: dict[str, Any] | None = None,
                    _fence: int | None = None, **fields: Any) -> Task:
        rules.check_fields(fields, "a transition")
        with self.locked():
            found = self._find(task_id)
            now = datetime.now(UTC)
            rules.check_fence(found.task, _fence, now)
            task = rules.transition(found.task, action, reason, fields, now, self.lease,
                                    attempt=_attempt, previous=_previous)
            self._save(found, task)
            return task

    # ----------------------------------------------------------------- claims
    def claim(self, task_id: str, owner: str, *, take_from: str | None = None,
              **fields: Any) -> Task | None:
        """Take the right to act on running task `task_id` for `owner`: the task with its
        new fence and lease, or None (not running, or another holds an unexpired lease).
        `take_from`: a holder the caller knows is dead (a process of this machine).
        `fields`: other fields written with the claim (as Store.update's)."""
        rules.check_fields(fields, "Store.claim")
        with self.locked():
            found = self._find(task_id)
            task = found.task
            now = datetime.now(UTC)
            if not rules.may_claim(task, owner, now, take_from, self.lease):
                return None
            rules.set_claim(task, {**fields, "claimed_by": owner}, now, self.lease)
            self._save(found, task)
            return task

    def renew(self, task_id: str, fence: int) -> Task:
        """Check claim `fence` (FenceLost if it is not current any more) and extend its
        lease if half of it has run (transitions.renewed)."""
        with self.locked():
            found = self._find(task_id)
            task = found.task
            if rules.renewed(task, fence, datetime.now(UTC), self.lease):
                self._save(found, task)
            return task

    def release(self, task_id: str, fence: int | None = None) -> bool:
        """Give a claim back; False when it was not held (or not with `fence`)."""
        with self.locked():
            found = self._find(task_id)
            task = found.task
            if not task.claimed_by or (fence is not None and task.fence != fence):
                return False
            rules.set_claim(task, {"claimed_by": None}, datetime.now(UTC), self.lease)
            self._save(found, task)
            return True

    def heartbeat(self, owner: str) -> None:
        """Record that orchestrator `owner` is alive now (`orch store status` lists them)."""
        from ..atomic import replace_file
        with self.locked():
            seen = self.orchestrators()
            seen[owner] = now_iso()
            replace_file(self.state_dir / ORCHESTRATORS_FILE, _json_dumps(seen), mode=FILE_MODE)

    def orchestrators(self) -> dict[str, str]:
        """Every orchestrator's last heartbeat (owner -> ISO time)."""
        import json
        try:
            data = json.loads((self.state_dir / ORCHESTRATORS_FILE).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def lease_left(self, task: Task) -> timedelta:
        """How long `task`'s claim still runs (zero or negative: expired)."""
        if not task.lease_until:
            return timedelta(0)
        return parse_time(task.lease_until) - datetime.now(UTC)

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


# The fields a stored task cannot lack (Task has no default for them).
_REQUIRED = frozenset(f.name for f in fields(Task)
                      if f.default is MISSING and f.default_factory is MISSING)


def _about(doc: Document, repo: str, issue: int) -> bool:
    """A stored record of this repository's issue (the test before a Task is made)."""
    return doc.get("repo") == repo and doc.get("issue") == int(issue)


def _json_dumps(data: dict[str, str]) -> str:
    import json
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _replace_with(data: dict[str, Any]) -> Callable[[MutableMapping[str, Any]], None]:
    """A TinyDB update operation that replaces the whole document."""
    def op(doc: MutableMapping[str, Any]) -> None:
        doc.clear()
        doc.update(data)
    return op
