"""Task state in PostgreSQL: one database several orchestrators share (psycopg 3).

The same API and rules as the TinyDB store (store/transitions.py decides what a task
becomes); what makes it safe across machines is the database, not our code:

- "one live task per issue" is a partial unique index (`orch_one_live_task`): a second
  `create` for an issue with a queued or running task fails in the database, whoever
  commits first wins;
- a host's slots are rows (`orch_slots`); `start(..., slots=N)` takes a free one with
  `FOR UPDATE SKIP LOCKED` in the same transaction as queued -> running, so two
  orchestrators placing on the last slot cannot both win;
- a claim is the task row's `claimed_by`, `fence` (raised at every claim) and
  `lease_until` (the database's clock); a write made with a fence (finalize, renew,
  launch) locks the row and is refused unless the fence is current and its lease runs.

Every method is one short transaction; `with store.locked():` makes several one
transaction (not a global lock: the invariants above are what serialise). Nothing holds
a transaction across SSH or forge work (callers keep such blocks local, as for TinyDB).
A database that cannot be reached is StoreUnreachable (exit 1), its URL without the
password. Schema versions are numbered migrations (MIGRATIONS), applied on first use.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.models import CHILD_KINDS, TASK_STATUSES, Task
from ..core.tally import TaskTally, duration_seconds, spend_stamp
from ..errors import UsageError, WorkError
from . import transitions as rules
from .clock import parse_time
from .errors import DuplicateTask, NoSlot, StateMoved, StoreUnreachable, TaskNotFound, redact_url
from .sql import task_filters

KEEP_RECENT = 50   # finished, reported tasks `orch tasks` shows (as the TinyDB store)
CONNECT_TIMEOUT = 10   # seconds
SCHEMA_LOCK = 0x6f726368   # pg_advisory_xact_lock key while migrating the schema ("orch")

# Numbered schema migrations: version -> statements. Applied in order, each once, on the
# first use of a database (a new version appends a row, never edits one).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE orch_tasks (
             seq bigserial PRIMARY KEY,
             id text NOT NULL UNIQUE,
             repo text NOT NULL,
             issue integer NOT NULL,
             status text NOT NULL,
             kind text NOT NULL DEFAULT 'issue',
             host text,
             finalized boolean NOT NULL DEFAULT false,
             finished_at text,
             claimed_by text,
             fence bigint NOT NULL DEFAULT 0,
             lease_until timestamptz,
             duration double precision,
             cost_usd double precision,
             error_kind text,
             spend_at timestamptz,
             doc jsonb NOT NULL)""",
        # The invariant "one live task per issue", in the database (a split's parts and
        # integrations belong to their live parent, which speaks for them: core/split.py).
        "CREATE UNIQUE INDEX orch_one_live_task ON orch_tasks (repo, issue) "
        "WHERE status IN ('queued', 'running') AND kind NOT IN ('part', 'integrate', 'planner')",
        "CREATE INDEX orch_tasks_status ON orch_tasks (status)",
        "CREATE INDEX orch_tasks_issue ON orch_tasks (repo, issue)",
        "CREATE INDEX orch_tasks_id_prefix ON orch_tasks (id text_pattern_ops)",
        "CREATE INDEX orch_tasks_spend ON orch_tasks (spend_at)",
        """CREATE TABLE orch_slots (
             host text NOT NULL,
             n integer NOT NULL,
             task_id text UNIQUE,
             PRIMARY KEY (host, n))""",
        """CREATE TABLE orch_orchestrators (
             owner text PRIMARY KEY,
             seen timestamptz NOT NULL)""",
    ),
    # Command comments taken (lifecycle/conversation.py) and the command scan's cursors.
    2: (
        """CREATE TABLE orch_commands (
             key text PRIMARY KEY,
             taken_at timestamptz NOT NULL,
             task_id text,
             record jsonb NOT NULL)""",
        "CREATE INDEX orch_commands_task ON orch_commands (task_id)",
        "CREATE TABLE orch_cursors (name text PRIMARY KEY, at text NOT NULL)",
    ),
    # `orch store migrate` away from this database: where the state went (one row), and
    # the database itself refusing every later change of the state (a trigger per table),
    # whichever orch version or process tries it.
    3: (
        """CREATE TABLE orch_moved (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             moved_to text NOT NULL,
             at timestamptz NOT NULL DEFAULT now())""",
        """CREATE FUNCTION orch_refuse_if_moved() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM orch_moved) THEN
               RAISE EXCEPTION 'orch: this state was moved to %',
                 (SELECT moved_to FROM orch_moved) USING ERRCODE = '55000';
             END IF;
             RETURN NULL;
           END $$""",
        *(f"CREATE TRIGGER {t}_moved BEFORE INSERT OR UPDATE OR DELETE ON {t} "
          "FOR EACH STATEMENT EXECUTE FUNCTION orch_refuse_if_moved()"
          for t in ("orch_tasks", "orch_slots", "orch_commands", "orch_cursors")),
    ),
}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise UsageError("the PostgreSQL state backend needs psycopg 3, which is not installed",
                         hint="pip install 'orch[postgres]' (or: pip install 'psycopg[binary]')"
                         ) from None
    return psycopg


class PgStore:
    """The task table in PostgreSQL; every method is one transaction (or part of the
    caller's `locked()` transaction)."""

    backend = "postgresql"

    def __init__(self, url: str, *, state_dir: Path | None = None) -> None:
        self.url = url
        self.state_dir = state_dir
        self.lease = rules.lease()
        self._pg = _psycopg()
        self._conn: Any = None
        self._depth = 0

    @classmethod
    def from_address(cls, address: str, state_dir: Path) -> PgStore:
        return cls(address, state_dir=state_dir)

    @property
    def where(self) -> str:
        """The database, as it may be shown (without its password)."""
        return redact_url(self.url)

    def moved_to(self) -> str | None:
        """Where `orch store migrate` moved this state (None: it is the state in force)."""
        rows = self._rows("SELECT moved_to FROM orch_moved")
        return str(rows[0][0]) if rows else None

    def mark_moved(self, where: str) -> None:
        """After `orch store migrate` away: every later change is refused by the database
        (migration 3's triggers) with where the state went (StateMoved, exit 2). Readers
        still read it."""
        with self.locked():
            self._rows("INSERT INTO orch_moved (moved_to) VALUES (%s) ON CONFLICT (one) "
                       "DO UPDATE SET moved_to = excluded.moved_to, at = now()", (where,))

    def unmark_moved(self) -> None:
        """Make a database `orch store migrate` had moved away writable again (migrating
        back into it)."""
        with self.locked():
            self._rows("DELETE FROM orch_moved")

    def _moved(self) -> StateMoved:
        return StateMoved(self.where, self.moved_to() or "another state",
                          back=self.where)

    # ----------------------------------------------------------------- connection
    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = self._pg.connect(self.url, autocommit=True,
                                    connect_timeout=CONNECT_TIMEOUT,
                                    application_name="orch")
        except self._pg.Error as exc:
            raise StoreUnreachable(self.url, self._scrub(str(exc))) from None
        self._conn = conn
        self._migrate()
        return conn

    def _scrub(self, text: str) -> str:
        """An error text without the URL's password, should libpq ever repeat it."""
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def locked(self, timeout: float = 60.0) -> Iterator[PgStore]:
        """One transaction for a multi-step decision (nests as savepoints). Not a lock:
        the database's constraints decide between orchestrators. Keep the body short
        and local (no SSH or forge calls): it holds row locks until it ends."""
        conn = self._connection()
        try:
            with conn.transaction():
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
        except self._pg.errors.ObjectNotInPrerequisiteState:   # an OperationalError: first
            if self._depth:
                raise       # an outer locked(): the outermost one says it
            raise self._moved() from None
        except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
            self._lost_connection()
            raise StoreUnreachable(self.url, self._scrub(str(exc))) from None

    def _lost_connection(self) -> None:
        if self._depth == 0 and self._conn is not None and self._conn.broken:
            self._conn = None

    def _rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        pg = self._pg
        try:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        except pg.errors.ObjectNotInPrerequisiteState:   # an OperationalError: first
            if self._depth:
                raise       # the transaction is aborted: locked() says why, after rollback
            raise self._moved() from None
        except (pg.OperationalError, pg.InterfaceError) as exc:
            self._lost_connection()
            raise StoreUnreachable(self.url, self._scrub(str(exc))) from None
        except pg.errors.InsufficientPrivilege as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: Exception) -> WorkError:
        return WorkError(f"{self.where}: the database refused orch's role "
                         f"({(self._scrub(str(exc)).splitlines() or ['no detail'])[0]})",
                         hint="grant the role CREATE on the database for the first use (the "
                              "schema), then SELECT, INSERT, UPDATE, DELETE on the orch_* "
                              "tables and USAGE on their sequences")

    def _migrate(self) -> None:
        """Apply the numbered migrations this database lacks (one transaction, under an
        advisory lock, so two orchestrators starting together do it once)."""
        conn = self._conn
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS orch_schema (version integer "
                             "PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
                row = conn.execute("SELECT coalesce(max(version), 0) FROM orch_schema").fetchone()
                have = int(row[0])
                if have > max(MIGRATIONS):
                    raise UsageError(f"{self.where}: the state database has schema version "
                                     f"{have}, newer than this orch knows ({max(MIGRATIONS)})",
                                     hint="upgrade orch on this machine")
                for version in sorted(v for v in MIGRATIONS if v > have):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute("INSERT INTO orch_schema (version) VALUES (%s)", (version,))
        except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
            self._conn = None
            raise StoreUnreachable(self.url, self._scrub(str(exc))) from None
        except self._pg.errors.InsufficientPrivilege as exc:
            self._conn = None
            raise self._refused(exc) from None

    def schema_version(self) -> int:
        return int(self._rows("SELECT coalesce(max(version), 0) FROM orch_schema")[0][0])

    def now(self) -> datetime:
        """The database's clock (leases are measured on it, whoever asks)."""
        return _aware(self._rows("SELECT now()")[0][0])

    # ----------------------------------------------------------------- reads
    def _tasks(self, where: str = "TRUE", params: tuple[Any, ...] = (), *,
               order: str = "seq DESC", limit: int | None = None) -> builtins.list[Task]:
        sql = f"SELECT doc FROM orch_tasks WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Task.from_json(doc) for (doc,) in self._rows(sql, params)]

    def _locked_row(self, task_id: str) -> tuple[Task, datetime]:
        """The task row locked for this transaction, and the database's time."""
        found = self.get(task_id)
        rows = self._rows("SELECT doc, now() FROM orch_tasks WHERE id = %s FOR UPDATE",
                          (found.id,))
        if not rows:
            raise TaskNotFound(f"task {found.id} vanished from {self.where}")
        return Task.from_json(rows[0][0]), _aware(rows[0][1])

    def get(self, id_or_prefix: str) -> Task:
        """The task whose id is, or uniquely starts with, `id_or_prefix`."""
        key = (id_or_prefix or "").strip().lower()
        if not key:
            raise TaskNotFound("a task id is required", hint="see `orch tasks`")
        exact = self._tasks("id = %s", (key,))
        if exact:
            return exact[0]
        like = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matches = self._tasks("id LIKE %s", (like,), order="id", limit=11)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise TaskNotFound(f"no task matches {id_or_prefix!r}", hint="see `orch tasks`")
        listed = ", ".join(f"{t.id} ({t.repo}#{t.issue}, {t.status})" for t in matches[:10])
        more = " and more" if len(matches) > 10 else ""
        raise TaskNotFound(f"task id prefix {id_or_prefix!r} is ambiguous: {listed}{more}",
                           hint="give more characters of the id")

    def _recent_clause(self) -> str:
        """The live and recent tasks (what the TinyDB store's hot file holds)."""
        return ("(status NOT IN ('succeeded', 'failed', 'cancelled') OR NOT finalized "
                "OR claimed_by IS NOT NULL OR seq IN (SELECT seq FROM orch_tasks WHERE "
                "status IN ('succeeded', 'failed', 'cancelled') AND finalized AND claimed_by "
                f"IS NULL ORDER BY finished_at DESC NULLS LAST, seq DESC LIMIT {KEEP_RECENT}))")

    def list(self, status: str | None = None, repo: str | None = None, *,
             archived: bool = False) -> builtins.list[Task]:
        """Tasks newest first; without `archived`, the live and recent ones only."""
        if status is not None and status not in TASK_STATUSES:
            raise UsageError(f"unknown task status {status!r} "
                             f"(known: {', '.join(TASK_STATUSES)})")
        clauses, params = task_filters("%s", status, repo)
        if not archived:
            clauses.insert(0, self._recent_clause())
        return self._tasks(" AND ".join(clauses) or "TRUE", tuple(params))

    def archived_count(self) -> int:
        """Tasks `orch tasks` leaves out (finished, reported, older than the recent ones)."""
        total = self._rows("SELECT count(*) FROM orch_tasks")[0][0]
        recent = self._rows(f"SELECT count(*) FROM orch_tasks WHERE {self._recent_clause()}")[0][0]
        return int(total) - int(recent)

    def for_issue(self, repo: str, issue: int) -> builtins.list[Task]:
        return self._tasks("repo = %s AND issue = %s", (repo, int(issue)))

    def live_for(self, repo: str, issue: int) -> Task | None:
        """The issue's live task; a split's parts and integrations are not counted."""
        found = self._tasks("repo = %s AND issue = %s AND status IN ('queued', 'running') "
                            "AND NOT (kind = ANY(%s))", (repo, int(issue), list(CHILD_KINDS)))
        return found[0] if found else None

    def children(self, parent: Task) -> builtins.list[Task]:
        """A split's parts and integrations, oldest first."""
        return self._tasks("repo = %s AND issue = %s AND doc->>'parent' = %s AND kind = ANY(%s)",
                           (parent.repo, int(parent.issue), parent.id, list(CHILD_KINDS)),
                           order="seq")

    def refuse_duplicate(self, repo: str, issue: int, task_id: str | None = None) -> None:
        """DuplicateTask if the issue has a live task other than `task_id` (the index
        decides at the write; this says so before other work)."""
        live = self.live_for(repo, issue)
        if live is not None and live.id != task_id:
            raise DuplicateTask(live)

    def running_on(self, host: str) -> builtins.list[Task]:
        return self._tasks("status = 'running' AND host = %s", (host,))

    def reserved(self) -> dict[str, builtins.list[str]]:
        ids: dict[str, builtins.list[str]] = {}
        for host, task_id in self._rows(
                "SELECT host, id FROM orch_tasks WHERE status IN ('queued', 'running') "
                "AND host IS NOT NULL ORDER BY seq"):
            ids.setdefault(host, []).append(task_id)
        return ids

    def tally(self, since: str | datetime) -> TaskTally:
        """Counts over every task by aggregate queries (core.tally's rules, applied to
        the columns when each task was written)."""
        start = parse_time(since)
        out = TaskTally(start)
        for status, duration, n in self._rows(
                "SELECT status, CASE WHEN status IN ('succeeded', 'failed', 'cancelled') "
                "THEN duration END, count(*) FROM orch_tasks GROUP BY 1, 2"):
            out.by_status[status] += n
            if duration is not None:
                out.durations[(status, float(duration))] += n
        for kind, n in self._rows("SELECT coalesce(error_kind, 'other'), count(*) FROM "
                                  "orch_tasks WHERE status = 'failed' GROUP BY 1"):
            out.failed_kinds[kind] += n
        for host, n in self._rows("SELECT host, count(*) FROM orch_tasks WHERE status = "
                                  "'running' AND host IS NOT NULL GROUP BY 1"):
            out.running_by_host[host] += n
        out.spent = self.spent_since(start)
        return out

    def counts_by_status(self) -> dict[str, int]:
        return self.tally(datetime.now(UTC)).statuses()

    def spent_since(self, since: str | datetime) -> float:
        row = self._rows("SELECT sum(cost_usd) FROM orch_tasks WHERE spend_at >= %s "
                         "AND cost_usd > 0", (parse_time(since),))
        return float(row[0][0] or 0.0)

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM orch_tasks")[0][0])

    # ----------------------------------------------------------------- writes
    @staticmethod
    def _columns(task: Task, seq: int | None = None) -> dict[str, Any]:
        """The row of `task`: its JSON, and the columns the indexes and counts use."""
        cols: dict[str, Any] = dict(
            id=task.id, repo=task.repo, issue=int(task.issue), status=task.status,
            kind=task.kind, host=task.host, finalized=bool(task.finalized), finished_at=task.finished_at,
            claimed_by=task.claimed_by, fence=int(task.fence),
            lease_until=parse_time(task.lease_until) if task.lease_until else None,
            duration=duration_seconds(task), cost_usd=task.cost_usd,
            error_kind=task.error_kind, spend_at=spend_stamp(task),
            doc=json.dumps(task.to_json(), ensure_ascii=False))
        if seq is not None:
            cols["seq"] = seq
        return cols

    @staticmethod
    def _insert_sql(cols: dict[str, Any]) -> str:
        return (f"INSERT INTO orch_tasks ({', '.join(cols)}) "
                f"VALUES ({', '.join(f'%({k})s' for k in cols)})")

    def _write(self, task: Task, *, insert: bool = False) -> None:
        cols = self._columns(task)
        if insert:
            self._rows(self._insert_sql(cols), cols)
            return
        sets = ", ".join(f"{k} = %({k})s" for k in cols if k != "id")
        self._rows(f"UPDATE orch_tasks SET {sets} WHERE id = %(id)s", cols)
        if task.status != "running":
            self._rows("UPDATE orch_slots SET task_id = NULL WHERE task_id = %s", (task.id,))

    def create(self, repo: str, issue: int, title: str, specialty: str,
               forge: str = "github", **fields: Any) -> Task:
        """Record a queued task; DuplicateTask if the issue has a live one (the partial
        unique index says so, whichever orchestrator commits first)."""
        pg = self._pg
        while True:
            task = rules.new_task(uuid.uuid4().hex[:8], repo, issue, title, specialty, forge,
                                  datetime.now(UTC), fields)
            try:
                with self.locked():
                    task = rules.new_task(task.id, repo, issue, title, specialty, forge,
                                          self.now(), fields)
                    self._write(task, insert=True)
                return task
            except pg.errors.UniqueViolation as exc:
                if getattr(exc.diag, "constraint_name", None) != "orch_one_live_task":
                    continue   # the id was taken: draw another
                live = self.live_for(repo, issue)
                if live is None:
                    continue   # it finished meanwhile: try again
                raise DuplicateTask(live) from None

    def update(self, task_id: str, *, fence: int | None = None, **fields: Any) -> Task:
        rules.check_fields(fields, "Store.update")
        with self.locked():
            task, now = self._locked_row(task_id)
            rules.check_fence(task, fence, now)
            if all(getattr(task, k) == v for k, v in fields.items()):
                return task
            rules.set_claim(task, fields, now, self.lease)
            self._write(task)
            return task

    def start(self, task_id: str, host: str, branch: str, workspace: str,
              pid: int | None = None, *, slots: int | None = None, **fields: Any) -> Task:
        """queued -> running on `host`, holding one of its `slots` slot rows (NoSlot,
        nothing changed, when every one is held: FOR UPDATE SKIP LOCKED)."""
        with self.locked():
            task, now = self._locked_row(task_id)
            if slots is not None:
                self._take_slot(host, slots, task.id)
            out = rules.transition(task, "start", f"started on {host}",
                                   dict(host=host, branch=branch, workspace=workspace, pid=pid,
                                        started_at=rules.iso(now), unreachable_since=None,
                                        error=None, **fields),
                                   now, self.lease, attempt=True)
            self._write(out)
            return out

    def _take_slot(self, host: str, slots: int, task_id: str) -> None:
        self._rows("INSERT INTO orch_slots (host, n) SELECT %s, g FROM generate_series(1, %s) g "
                   "ON CONFLICT DO NOTHING", (host, slots))
        held = self._rows("SELECT count(*) FROM orch_slots WHERE host = %s AND task_id IS NOT "
                          "NULL", (host,))[0][0]
        free = self._rows("SELECT n FROM orch_slots WHERE host = %s AND n <= %s AND task_id IS "
                          "NULL ORDER BY n LIMIT 1 FOR UPDATE SKIP LOCKED", (host, slots))
        if not free or held >= slots:
            raise NoSlot(host, slots)
        self._rows("UPDATE orch_slots SET task_id = %s WHERE host = %s AND n = %s",
                   (task_id, host, free[0][0]))

    def succeed(self, task_id: str, reason: str = "job succeeded", *,
                fence: int | None = None, **fields: Any) -> Task:
        return self._transition(task_id, "succeed", reason, fields, fence=fence)

    def fail(self, task_id: str, error: str, *, fence: int | None = None,
             **fields: Any) -> Task:
        return self._transition(task_id, "fail", error, {"error": error, **fields}, fence=fence)

    def cancel(self, task_id: str, reason: str = "cancelled by user", *,
               fence: int | None = None, **fields: Any) -> Task:
        return self._transition(task_id, "cancel", reason, fields, fence=fence)

    def mark_lost(self, task_id: str, reason: str, *, fence: int | None = None,
                  owner: str | None = None, take_from: str | None = None,
                  **fields: Any) -> Task:
        with self.locked():
            task, now = self._locked_row(task_id)
            rules.check_free(task, owner, now, take_from, self.lease)
            return self._transition(task_id, "mark_lost", reason,
                                    {"error": f"lost: {reason}", **fields}, fence=fence)

    def requeue(self, task_id: str, reason: str, max_attempts: int | None = None,
                reset_attempts: bool = False) -> Task:
        pg = self._pg
        task = self.get(task_id)
        try:
            with self.locked():
                task, now = self._locked_row(task.id)
                fields, previous = rules.requeue_fields(task, max_attempts, reset_attempts)
                if task.kind not in CHILD_KINDS:
                    self.refuse_duplicate(task.repo, task.issue, task.id)
                out = rules.transition(task, "requeue", reason, fields, now, self.lease,
                                       previous=previous)
                self._write(out)
                return out
        except pg.errors.UniqueViolation:
            live = self.live_for(task.repo, task.issue)
            if live is None:
                raise
            raise DuplicateTask(live) from None

    def _transition(self, task_id: str, action: str, reason: str, fields: dict[str, Any], *,
                    fence: int | None) -> Task:
        rules.check_fields(fields, "a transition")
        with self.locked():
            task, now = self._locked_row(task_id)
            rules.check_fence(task, fence, now)
            out = rules.transition(task, action, reason, fields, now, self.lease)
            self._write(out)
            return out

    # ----------------------------------------------------------------- claims
    def claim(self, task_id: str, owner: str, *, take_from: str | None = None,
              **fields: Any) -> Task | None:
        rules.check_fields(fields, "Store.claim")
        with self.locked():
            task, now = self._locked_row(task_id)
            if not rules.may_claim(task, owner, now, take_from, self.lease):
                return None
            rules.set_claim(task, {**fields, "claimed_by": owner}, now, self.lease)
            self._write(task)
            return task

    def renew(self, task_id: str, fence: int) -> Task:
        with self.locked():
            task, now = self._locked_row(task_id)
            if rules.renewed(task, fence, now, self.lease):
                self._write(task)
            return task

    def release(self, task_id: str, fence: int | None = None) -> bool:
        with self.locked():
            task, now = self._locked_row(task_id)
            if not task.claimed_by or (fence is not None and task.fence != fence):
                return False
            rules.set_claim(task, {"claimed_by": None}, now, self.lease)
            self._write(task)
            return True

    def heartbeat(self, owner: str) -> None:
        self._rows("INSERT INTO orch_orchestrators (owner, seen) VALUES (%s, now()) "
                   "ON CONFLICT (owner) DO UPDATE SET seen = excluded.seen", (owner,))

    def orchestrators(self) -> dict[str, str]:
        return {owner: rules.iso(_aware(seen)) for owner, seen in self._rows(
            "SELECT owner, seen FROM orch_orchestrators ORDER BY owner")}

    def lease_left(self, task: Task) -> timedelta:
        if not task.lease_until:
            return timedelta(0)
        return parse_time(task.lease_until) - self.now()

    # ----------------------------------------------------------------- commands
    def command(self, key: str) -> dict[str, Any] | None:
        """The record of a command comment taken before (core/commands.py command_key)."""
        rows = self._rows("SELECT record FROM orch_commands WHERE key = %s", (key,))
        return dict(rows[0][0]) if rows else None

    def take_command(self, key: str, **record: Any) -> bool:
        """Record command `key` as taken, once (the primary key decides between
        orchestrators): False when it was taken before."""
        with self.locked():
            now = self.now()
            doc = {"key": key, "taken_at": rules.iso(now), **record}
            rows = self._rows("INSERT INTO orch_commands (key, taken_at, task_id, record) "
                              "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key",
                              (key, now, record.get("task_id"), json.dumps(doc)))
            return bool(rows)

    def update_command(self, key: str, **fields: Any) -> None:
        self._rows("UPDATE orch_commands SET record = record || %s::jsonb, task_id = "
                   "coalesce(%s, task_id) WHERE key = %s",
                   (json.dumps(fields), fields.get("task_id"), key))

    def commands_for(self, task_id: str) -> builtins.list[dict[str, Any]]:
        return [dict(r) for (r,) in self._rows(
            "SELECT record FROM orch_commands WHERE task_id = %s ORDER BY taken_at", (task_id,))]

    def forget_commands(self, taken_before: str) -> int:
        rows = self._rows("DELETE FROM orch_commands WHERE taken_at < %s RETURNING key",
                          (parse_time(taken_before),))
        return len(rows)

    def cursor(self, name: str) -> str | None:
        rows = self._rows("SELECT at FROM orch_cursors WHERE name = %s", (name,))
        return str(rows[0][0]) if rows else None

    def set_cursor(self, name: str, at: str) -> None:
        self._rows("INSERT INTO orch_cursors (name, at) VALUES (%s, %s) ON CONFLICT (name) "
                   "DO UPDATE SET at = excluded.at", (name, at))

    def conversation(self) -> tuple[builtins.list[dict[str, Any]], dict[str, str]]:
        """Every command record and cursor (`orch store migrate` copies them)."""
        commands = [dict(r) for (r,) in self._rows("SELECT record FROM orch_commands ORDER BY key")]
        cursors = {n: str(a) for n, a in self._rows("SELECT name, at FROM orch_cursors")}
        return commands, cursors

    def put_conversation(self, commands: builtins.list[dict[str, Any]],
                         cursors: dict[str, str]) -> None:
        """Insert or replace command records and cursors (inside the caller's transaction)."""
        for rec in commands:
            taken = parse_time(str(rec.get("taken_at"))) if rec.get("taken_at") else self.now()
            self._rows("INSERT INTO orch_commands (key, taken_at, task_id, record) VALUES "
                       "(%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET taken_at = "
                       "excluded.taken_at, task_id = excluded.task_id, record = excluded.record",
                       (rec["key"], taken, rec.get("task_id"), json.dumps(rec)))
        for name, at in cursors.items():
            self.set_cursor(name, at)

    # ----------------------------------------------------------------- migration
    def put_all(self, records: Iterator[tuple[int, dict[str, Any]]]) -> int:
        """Insert or replace tasks (record number, JSON) inside the caller's transaction
        (`orch store migrate`); each running task holds a slot row of its host. Returns
        how many."""
        rows = [self._columns(Task.from_json(doc), int(seq)) for seq, doc in records]
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        self._rows("DELETE FROM orch_slots WHERE task_id = ANY(%s)", (ids,))
        self._rows("DELETE FROM orch_tasks WHERE id = ANY(%s)", (ids,))
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.executemany(self._insert_sql(rows[0]), rows)
        except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
            raise StoreUnreachable(self.url, self._scrub(str(exc))) from None
        for r in rows:
            if r["status"] == "running" and r["host"]:
                self._rows("INSERT INTO orch_slots (host, n, task_id) SELECT %s, coalesce(max(n), "
                           "0) + 1, %s FROM orch_slots WHERE host = %s", (r["host"], r["id"], r["host"]))
        self._rows("SELECT setval(pg_get_serial_sequence('orch_tasks', 'seq'), "
                   "greatest((SELECT coalesce(max(seq), 0) FROM orch_tasks), 1))")
        return len(rows)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every task with its record number, oldest first (`orch store migrate --to`)."""
        for seq, doc in self._rows("SELECT seq, doc FROM orch_tasks ORDER BY seq"):
            yield int(seq), doc


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
