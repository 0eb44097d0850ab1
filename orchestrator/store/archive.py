"""The archive: finished, reported tasks, out of the hot state file, in SQLite.

Why SQLite (Python's own sqlite3) rather than files of our own: the archive must answer
"this id or id prefix", "every task of this issue", "how many, how long, what did today
cost" over a year of tasks (100,000) in milliseconds, survive a SIGKILL at any moment,
and be appended to while other orch processes read it. Those are an indexed, transactional
table's job; a library kept by its authors for decades does them better than an index
and a torn-line repair of our own. One file, `archive.sqlite` next to state.json, mode
0600 (its journal gets the same mode from SQLite).

- Rows are written only under the state lock, by the store's archive step, in one
  transaction (`INSERT OR REPLACE`: archiving a task twice leaves one row). The
  default rollback journal with synchronous=FULL: a commit is durable once it returns,
  and a writer killed mid-commit leaves the previous contents (the next open rolls the
  journal back).
- A row holds the whole task record as JSON (`doc`) plus the columns the indexes and
  counts need. The hot file stays the truth for any task it holds: a row whose id is
  also in the hot file (a retried task, or one archived by a writer killed before its
  hot write) is a stale copy, and readers skip it.
- Reads never create the file; without it the archive is empty.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.models import ERROR_KINDS, Task
from ..core.tally import TaskTally, duration_seconds, parse_stamp
from ..errors import UsageError
from .errors import ArchiveCorrupt, StoreBusy
from .hotfile import STATE_MODE, fsync_dir
from .sql import task_filters

ARCHIVE_FILE = "archive.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT = 30.0    # seconds; an archive commit is short, but a migration may not be

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
  id          TEXT PRIMARY KEY,
  seq         INTEGER NOT NULL,   -- the task's record number in state.json: creation order
  repo        TEXT NOT NULL,
  issue       INTEGER NOT NULL,
  status      TEXT NOT NULL,
  finished_ts REAL,               -- finished_at, epoch seconds
  duration    REAL,               -- core.tally.duration_seconds
  cost_usd    REAL,
  error       TEXT,               -- its error_kind (core/models.py ERROR_KINDS), for the tally
  doc         TEXT NOT NULL       -- the whole task record (Task.to_json) as JSON
);
CREATE INDEX IF NOT EXISTS tasks_seq ON tasks (seq);
CREATE INDEX IF NOT EXISTS tasks_issue ON tasks (repo, issue, seq);
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_ts, cost_usd);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, duration);
"""
# Above any character an id can contain: the upper bound of a prefix range (ids compare
# as UTF-8 bytes, and no valid UTF-8 sequence starts above U+10FFFF's F4 8F).
_TOP = "\U0010ffff"


class Archive:
    """The archive file of one state dir. Thread-safe: one connection per thread."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ARCHIVE_FILE
        self._local = threading.local()

    # ----------------------------------------------------------------- connection
    def exists(self) -> bool:
        return self.path.is_file()

    def _connection(self, create: bool = False) -> sqlite3.Connection | None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if not self.path.exists():
            if not create:
                return None
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, STATE_MODE)
            os.close(fd)
            fsync_dir(self.path.parent)
        # mode=rw: never create the file here (a reader of a missing archive sees none).
        conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT,
                               isolation_level=None, check_same_thread=True)
        with self._errors():
            conn.execute("PRAGMA synchronous = FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise UsageError(f"{self.path}: written by a newer orch (archive schema "
                             f"{version}; this orch knows {SCHEMA_VERSION})",
                             hint="upgrade orch on this machine")
        self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(self.path, BUSY_TIMEOUT) from None
            raise ArchiveCorrupt(self.path, str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise ArchiveCorrupt(self.path, str(exc)) from None

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        conn = self._connection()
        if conn is None:
            return []
        with self._errors():
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                return []   # created, but no row was ever committed
            return conn.execute(sql, tuple(params)).fetchall()

    # ----------------------------------------------------------------- writes
    def put(self, records: list[tuple[int, dict[str, Any]]]) -> None:
        """Archive task records (seq, record) in one transaction; call under the state lock."""
        if not records:
            return
        rows = [_row(seq, doc) for seq, doc in records]
        conn = self._connection(create=True)
        assert conn is not None
        if stat.S_IMODE(self.path.stat().st_mode) != STATE_MODE:
            os.chmod(self.path, STATE_MODE)   # like state.json: a copy may have widened it
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.executemany(
                    "INSERT OR REPLACE INTO tasks (id, seq, repo, issue, status, finished_ts,"
                    " duration, cost_usd, error, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ----------------------------------------------------------------- reads
    def get(self, task_id: str) -> tuple[int, dict[str, Any]] | None:
        """(seq, record) of one id, or None."""
        rows = self._query("SELECT seq, doc FROM tasks WHERE id = ?", (task_id,))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def with_prefix(self, prefix: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` (seq, record) whose id starts with `prefix`, in id order."""
        rows = self._query("SELECT seq, doc FROM tasks WHERE id >= ? AND id < ? "
                           "ORDER BY id LIMIT ?", (prefix, prefix + _TOP, limit))
        return [(seq, json.loads(doc)) for seq, doc in rows]

    def for_issue(self, repo: str, issue: int) -> list[tuple[int, dict[str, Any]]]:
        rows = self._query("SELECT seq, doc FROM tasks WHERE repo = ? AND issue = ? "
                           "ORDER BY seq DESC", (repo, int(issue)))
        return [(seq, json.loads(doc)) for seq, doc in rows]

    def newest_first(self, status: str | None = None,
                     repo: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every record, newest first, optionally of one status and/or repo."""
        where, params = task_filters("?", status, repo)
        sql = "SELECT seq, doc FROM tasks" + (" WHERE " + " AND ".join(where) if where else "")
        for seq, doc in self._query(sql + " ORDER BY seq DESC", params):
            yield seq, json.loads(doc)

    def ids(self, among: Iterable[str]) -> set[str]:
        """Which of `among` have a row (the stale copies of hot tasks)."""
        wanted = list(among)
        if not wanted:
            return set()
        rows = self._query("SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?))",
                           (json.dumps(wanted),))
        return {r[0] for r in rows}

    def count(self) -> int:
        rows = self._query("SELECT count(*) FROM tasks")
        return rows[0][0] if rows else 0

    def max_seq(self) -> int:
        rows = self._query("SELECT max(seq) FROM tasks")
        return (rows[0][0] or 0) if rows else 0

    def tally(self, since: datetime, skip: Iterable[str] = ()) -> TaskTally:
        """The tally of every row but those whose id is in `skip` (the hot file's ids).

        Counted by the indexes, not by reading records; the rows of `skip` that exist
        (stale copies, usually none) are counted alike and taken off.
        """
        out = TaskTally(since)
        for status, duration, n in self._query(
                "SELECT status, duration, count(*) FROM tasks GROUP BY status, duration"):
            out.by_status[status] += n
            if duration is not None:
                out.durations[(status, duration)] += n
        for error, n in self._query("SELECT error, count(*) FROM tasks WHERE status = 'failed' "
                                    "GROUP BY error"):
            out.failed_kinds[_kind(error)] += n
        out.spent = self._spent(since)
        for status, duration, error, cost, finished in self._stale(skip):
            out.by_status[status] -= 1
            if duration is not None:
                out.durations[(status, duration)] -= 1
            if status == "failed":
                out.failed_kinds[_kind(error)] -= 1
            out.spent -= _spend(cost, finished, since)
        out.by_status, out.durations = +out.by_status, +out.durations   # drop zeros
        out.failed_kinds = +out.failed_kinds
        return out

    def spent_since(self, since: datetime, skip: Iterable[str] = ()) -> float:
        """USD of the rows finished at or after `since`, but those whose id is in `skip`."""
        return self._spent(since) - sum(_spend(cost, finished, since)
                                        for *_, cost, finished in self._stale(skip))

    def _spent(self, since: datetime) -> float:
        rows = self._query("SELECT sum(cost_usd) FROM tasks WHERE finished_ts >= ?",
                           (since.timestamp(),))
        return float(rows[0][0] or 0.0) if rows else 0.0

    def _stale(self, ids: Iterable[str]) -> list[tuple]:
        """(status, duration, error, cost_usd, finished_ts) of the rows of these ids."""
        wanted = list(ids)
        if not wanted:
            return []
        return self._query("SELECT status, duration, error, cost_usd, finished_ts FROM tasks "
                           "WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))


def _kind(error: str | None) -> str:
    """A row's error_kind; a row archived before the column held kinds holds the error's
    text, whose kind core/migrate.py gives (once per distinct text: the query groups)."""
    if error in ERROR_KINDS:
        return error
    # (a row from before kinds: only then is core/migrate.py loaded)
    from ..core.migrate import error_kind_from_message
    return error_kind_from_message(error)


def _spend(cost: float | None, finished: float | None, since: datetime) -> float:
    """What one row adds to the spend since `since` (the rule of core.tally.spend_stamp)."""
    return float(cost) if cost and finished is not None and finished >= since.timestamp() else 0.0


def _row(seq: int, doc: dict[str, Any]) -> tuple:
    task = Task.from_json(doc)
    finished = parse_stamp(task.finished_at)
    return (task.id, int(seq), task.repo, int(task.issue), task.status,
            finished.timestamp() if finished else None, duration_seconds(task),
            float(task.cost_usd) if task.cost_usd else None, task.error_kind,
            json.dumps(doc, ensure_ascii=False, sort_keys=True))
