"""Task state: TinyDB in `<state_dir>/state.json`, guarded by a cross-process file lock.

This is the only module that changes a task's status, and only through named
transitions (`start`, `succeed`, `fail`, `cancel`, `mark_lost`, `requeue`) that refuse
the impossible ones and append to `task.history`. Every other module asks the store.

Why it is built this way
- Any number of `orch` processes (cron passes overlapping a person's `orch dispatch`)
  share the file, so every read-modify-write holds `filelock.FileLock(state.lock)`: a
  real `flock(2)` that the kernel releases when a process dies, so a crash never leaves
  a stale lock behind. `with store.locked():` lets a caller make a multi-step decision
  atomically ("no live task for the issue, host has a slot, create the task");
  the lock is re-entrant within a process, so store methods can be called inside it.
- Writes go to a temporary file in the same directory, are fsynced, and replace the
  state with `os.replace`, so a reader (which takes no lock) sees either the old or the
  new file, never half of one, and a writer killed mid-write leaves the old state intact.
  The previous version is kept as `state.json.bak` (a hard link to the replaced file,
  so it costs no copy).
- A file that does not parse is reported (`StateCorrupt`, exit 2) and never reset:
  losing the record of running jobs would make orch dispatch an issue twice.
"""

from __future__ import annotations

import builtins  # Store.list shadows `list` in the class body: annotations there say builtins.list
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tinydb import Query, TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from ..atomic import replace_file
from ..core.models import LIVE_STATUSES, TASK_STATUSES, Task
from ..errors import UsageError, WorkError
from ..private import FILE_MODE, private_dir

STATE_FILE = "state.json"
BACKUP_SUFFIX = ".bak"
LOCK_FILE = "state.lock"
TABLE = "tasks"
DEFAULT_LOCK_TIMEOUT = 60.0   # seconds; every critical section is local and short


# --------------------------------------------------------------------------- errors

class StateCorrupt(UsageError):
    """state.json does not parse: reported, never reset (exit 2)."""

    def __init__(self, path: Path, detail: str) -> None:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if backup.is_file():
            hint = (f"restore the last good version with `cp {backup} {path}`, or move the "
                    f"broken file aside (`mv {path} {path}.broken`) to start with no tasks")
        else:
            hint = (f"move the broken file aside (`mv {path} {path}.broken`) to start "
                    f"with no tasks, or repair it by hand")
        super().__init__(f"{path}: the state file is corrupt ({detail}); it was NOT reset "
                         f"and nothing was changed", hint=hint)
        self.path = path


class StoreBusy(WorkError):
    """Another orch process held the state lock for longer than we were willing to wait."""

    def __init__(self, lock_path: Path, timeout: float) -> None:
        super().__init__(f"{lock_path}: the task state is locked by another orch process "
                         f"(waited {timeout:g}s)",
                         hint="another `orch` command is running; try again when it is done")
        self.lock_path = lock_path


class TaskNotFound(UsageError):
    """No task, or more than one, matches an id prefix."""


class DuplicateTask(UsageError):
    """The issue already has a live (queued or running) task."""

    def __init__(self, live: Task) -> None:
        super().__init__(f"{live.repo}#{live.issue} already has a live task: {live.id} "
                         f"({live.status}{' on ' + live.host if live.host else ''})",
                         hint=f"follow it with `orch logs {live.id} -f`, or `orch cancel {live.id}`")
        self.task_id = live.id
        self.live = live


class InvalidTransition(UsageError):
    """A status change that makes no sense for the task's current status."""

    def __init__(self, task: Task, action: str, allowed: tuple[str, ...],
                 detail: str | None = None) -> None:
        msg = detail or (f"task {task.id} is {task.status}; only {_either(allowed)} task "
                         f"can be {action}")
        super().__init__(msg)
        self.task_id = task.id
        self.status = task.status


def _either(statuses: tuple[str, ...]) -> str:
    """('queued', 'running', 'lost') -> 'a queued, running or lost'."""
    words = list(statuses)
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return ("an " if text[0] in "aeiou" else "a ") + text


# --------------------------------------------------------------------------- time

def now_iso() -> str:
    """The current time, ISO-8601 UTC with seconds: what every timestamp field holds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(value: str | datetime) -> datetime:
    """An ISO-8601 string (or datetime) as an aware UTC datetime; naive means UTC."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


# --------------------------------------------------------------------------- storage

class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces the whole file atomically and refuses to read garbage.

    Unlike TinyDB's JSONStorage it keeps no file handle open: each read opens the file
    anew, so it always sees the latest replaced version.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + BACKUP_SUFFIX)

    def read(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            # An empty file is a fresh start unless there was state before it.
            if self.backup.exists():
                raise StateCorrupt(self.path, "the file is empty but a backup exists")
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateCorrupt(self.path, f"not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StateCorrupt(self.path, "expected a JSON object of tables")
        return data

    def write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False)
        directory = self.path.parent
        replace_file(self.path, text, mode=0o600, before_replace=self._backup_current)
        _fsync_dir(directory)
        _remove_stale_temps(directory, self.path.name)

    def _backup_current(self) -> None:
        """Keep the version about to be replaced as state.json.bak.

        TinyDB always reads (and we validate) the file just before writing it, under the
        lock, so the current file is known good. It is never modified in place, so a hard
        link preserves it exactly; copying is the fallback where links are unsupported.
        """
        if not self.path.exists():
            return
        tmp = self.backup.with_name(f".{self.backup.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.path, tmp)
            except OSError:
                tmp.write_bytes(self.path.read_bytes())
            os.replace(tmp, self.backup)
        except OSError:
            tmp.unlink(missing_ok=True)   # a missing backup must not block the state write

    def close(self) -> None:
        pass


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(directory: Path, name: str, older_than: float = 60.0) -> None:
    """Temp files left by a writer killed mid-write; harmless, but tidy them up."""
    cutoff = time.time() - older_than
    for p in directory.glob(f".{name}*.tmp"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass


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
_FINISHED = ("succeeded", "failed", "cancelled")
_NOT_UPDATABLE = {"id", "status", "history"}
_FIELDS = set(Task.__dataclass_fields__)


class Store:
    """The task table. Every method that writes takes the lock; reads need none."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir).expanduser()
        private_dir(self.state_dir)
        self.state_dir = self.state_dir.resolve()   # one lock singleton per real directory
        self.path = self.state_dir / STATE_FILE
        self.lock_path = self.state_dir / LOCK_FILE
        # is_singleton: every Store on the same directory in this process shares one lock
        # object, so nesting them re-enters instead of deadlocking on our own flock.
        self._lock = FileLock(str(self.lock_path), is_singleton=True, mode=FILE_MODE)
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        # cache_size=0: other processes change the file, so a query cache would go stale.
        self._table = self._db.table(TABLE, cache_size=0)

    # ----------------------------------------------------------------- locking
    @contextmanager
    def locked(self, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Store]:
        """Hold the cross-process state lock for a multi-step decision.

        Re-entrant within a thread (store methods called inside take it again for free).
        Raises StoreBusy after `timeout` seconds. Keep the body short and local: no SSH
        or GitHub calls while holding it, or every other orch process waits.
        """
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreBusy(self.lock_path, timeout) from None
        try:
            yield self
        finally:
            self._lock.release()

    # ----------------------------------------------------------------- reads
    def _all(self) -> list[Task]:
        """Every task, oldest first (TinyDB doc ids grow with each insert)."""
        docs = sorted(self._table.all(), key=lambda d: d.doc_id)
        tasks = []
        for doc in docs:
            try:
                tasks.append(Task.from_json(dict(doc)))
            except TypeError as exc:
                raise StateCorrupt(self.path, f"record {doc.doc_id} is not a task: {exc}") from None
        return tasks

    def get(self, id_or_prefix: str) -> Task:
        """The task whose id is, or uniquely starts with, `id_or_prefix`."""
        key = (id_or_prefix or "").strip().lower()
        if not key:
            raise TaskNotFound("a task id is required", hint="see `orch tasks`")
        tasks = self._all()
        for t in tasks:
            if t.id == key:
                return t
        matches = [t for t in tasks if t.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise TaskNotFound(f"no task matches {id_or_prefix!r}", hint="see `orch tasks`")
        listed = ", ".join(f"{t.id} ({t.repo}#{t.issue}, {t.status})" for t in matches[:10])
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise TaskNotFound(f"task id prefix {id_or_prefix!r} is ambiguous: {listed}{more}",
                           hint="give more characters of the id")

    def list(self, status: str | None = None, repo: str | None = None) -> list[Task]:
        """Tasks newest first, optionally only one status and/or one repo."""
        if status is not None and status not in TASK_STATUSES:
            raise UsageError(f"unknown task status {status!r} "
                             f"(known: {', '.join(TASK_STATUSES)})")
        tasks = [t for t in reversed(self._all())
                 if (status is None or t.status == status) and (repo is None or t.repo == repo)]
        return tasks

    def for_issue(self, repo: str, issue: int) -> builtins.list[Task]:
        """Every task ever made for one issue, newest first."""
        return [t for t in reversed(self._all()) if t.repo == repo and t.issue == int(issue)]

    def live_for(self, repo: str, issue: int) -> Task | None:
        """The issue's queued or running task, if any (there is at most one)."""
        return next((t for t in self.for_issue(repo, issue) if t.status in LIVE_STATUSES), None)

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

    def counts_by_status(self) -> dict[str, int]:
        """Number of tasks in every status (all statuses present, zero included)."""
        counts = dict.fromkeys(TASK_STATUSES, 0)
        for t in self._all():
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def spent_since(self, since: str | datetime) -> float:
        """USD spent by tasks that finished at or after `since` (the daily fleet budget).

        Lost tasks count too: their agent ran (and cost) even if it never finished.
        """
        start = parse_time(since)
        total = 0.0
        for t in self._all():
            stamp = t.finished_at or (t.started_at if t.status == "lost" else None)
            if t.cost_usd and stamp and parse_time(stamp) >= start:
                total += float(t.cost_usd)
        return total

    # ----------------------------------------------------------------- writes
    def create(self, repo: str, issue: int, title: str, specialty: str,
               forge: str = "github") -> Task:
        """Record a queued task; refused (DuplicateTask) if the issue has a live one."""
        with self.locked():
            live = self.live_for(repo, issue)
            if live is not None:
                raise DuplicateTask(live)
            docs = self._table.all()
            existing = {d.get("id") for d in docs}
            task_id = uuid.uuid4().hex[:8]
            while task_id in existing:
                task_id = uuid.uuid4().hex[:8]
            now = now_iso()
            task = Task(id=task_id, repo=repo, issue=int(issue), title=title,
                        specialty=specialty, forge=forge, created_at=now,
                        history=[{"at": now, "from": None, "to": "queued",
                                  "reason": f"created (specialty {specialty})"}])
            # An explicit doc id from the file as read now, under the lock: TinyDB's own
            # next-id counter is cached per process and would collide with other writers.
            doc_id = max((d.doc_id for d in docs), default=0) + 1
            self._table.insert(Document(task.to_json(), doc_id=doc_id))
            return task

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
            task = self.get(task_id)
            for k, v in fields.items():
                setattr(task, k, v)
            self._save(task)
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
        job can still be found and killed if its host comes back.
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
            live = self.live_for(task.repo, task.issue)
            if live is not None and live.id != task.id:
                raise DuplicateTask(live)
            previous = {"host": task.host, "pid": task.pid, "workspace": task.workspace}
            fields: dict[str, Any] = dict(host=None, pid=None, workspace=None, error=None,
                                          finished_at=None, unreachable_since=None,
                                          finalized=False, _previous=previous)
            if reset_attempts:
                fields["attempts"] = 0
            return self._transition(task_id, "requeue", reason, **fields)

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
            task = self.get(task_id)
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
            if target in _FINISHED:
                task.finished_at = now
            task.status = target
            task.history = [*task.history, entry]
            self._save(task)
            return task

    def _save(self, task: Task) -> None:
        """Write one task back (caller holds the lock)."""
        n = self._table.update(_replace_with(task.to_json()), Query().id == task.id)
        if not n:
            raise TaskNotFound(f"task {task.id} vanished from {self.path}")


def _replace_with(data: dict[str, Any]) -> Callable[[MutableMapping[str, Any]], None]:
    """A TinyDB update operation that replaces the whole document."""
    def op(doc: MutableMapping[str, Any]) -> None:
        doc.clear()
        doc.update(data)
    return op
