"""`orch store migrate` both ways, the typed error of an unreachable database, and the
password that is never printed (a real PostgreSQL server: tests/fixtures_pg.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.core.models import Task
from orchestrator.store import StateMoved, Store, open_store
from tests.fixtures_pg import PASSWORD, PgServer, _free_port
from tests.legacy_state import write_legacy, year_of_state


def orch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "ORCH_STATE_URL"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True,
                          text=True, timeout=600, env=full, cwd="/")


def _docs(tasks: list[Task]) -> dict[str, dict]:
    return {t.id: t.to_json() for t in tasks}


def test_migrate_20000_tasks_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src"
    write_legacy(src, year_of_state(20_000))
    before = _docs(Store(src).list(archived=True))   # opening it archives the old file
    assert len(before) > 20_000 and Store(src).archived_count() > 19_000
    Store(src).take_command("octo/app#1/c42", task_id=next(iter(before)))   # a command taken
    Store(src).set_cursor("octo/app", "2026-11-30T00:00:00+00:00")

    r = orch("--state-dir", str(src), "store", "migrate", "--to", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["copied"] == len(before) == out["total"]
    assert PASSWORD not in r.stdout + r.stderr and "***" in out["target"]
    pg = open_store(pg_url, tmp_path)
    assert _docs(pg.list(archived=True)) == before            # every field of every task
    assert pg.command("octo/app#1/c42") is not None           # ... and never taken again
    assert pg.cursor("octo/app") == "2026-11-30T00:00:00+00:00"
    assert pg.tally("2000-01-01").statuses() == Store(src).tally("2000-01-01").statuses()

    # The file is read-only now, and orch says where the state went.
    assert (src / "state.json").stat().st_mode & 0o777 == 0o400
    try:
        Store(src).create("octo/api", 99999, "t", "general")
        raise AssertionError("a moved state accepted a write")
    except StateMoved as exc:
        assert "***" in exc.message and PASSWORD not in str(exc)
    r = orch("--state-dir", str(src), "retry", next(iter(before)))
    assert r.returncode == 2 and "moved to postgresql://orch:***@" in r.stderr, r.stderr
    assert Store(src).list(archived=True)                      # still readable

    # Again: idempotent (the same tasks, once).
    r = orch("--state-dir", str(src), "store", "migrate", "--to", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    assert pg.count() == len(before)

    # And back, into a new TinyDB state.
    back = tmp_path / "back"
    r = orch("--state-dir", str(tmp_path / "other"), "store", "migrate", "--to", f"tinydb:{back}",
             "--json", env={"ORCH_STATE_URL": pg_url})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["copied"] == len(before)
    again = Store(back)
    assert _docs(again.list(archived=True)) == before
    assert again.archived_count() > 19_000                    # finished ones archived
    assert again.take_command("octo/app#1/c42") is False
    pg.close()


def test_a_database_migrated_away_refuses_every_change_until_migrated_back(
        tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL -> TinyDB marks the database moved: the database itself (a trigger per
    table) refuses any later change, from this orch or any other, with where the state
    went (exit 2); it still reads; migrating back into it makes it writable again."""
    pg = open_store(pg_url, tmp_path)
    t = pg.create("octo/api", 1, "one", "general", forge="local")
    pg.take_command("octo/api#1/c1", task_id=t.id)
    out = tmp_path / "tiny"
    r = orch("--state-dir", str(tmp_path / "other"), "store", "migrate", "--to", f"tinydb:{out}",
             "--json", env={"ORCH_STATE_URL": pg_url})
    assert r.returncode == 0, r.stderr
    assert pg.moved_to() == f"tinydb:{out}"
    for write in (lambda: pg.create("octo/api", 2, "two", "general"),
                  lambda: pg.update(t.id, error="x"),
                  lambda: pg.cancel(t.id),
                  lambda: pg.take_command("octo/api#1/c2", task_id=t.id),
                  lambda: pg.set_cursor("octo/api", "2026-12-01T00:00:00+00:00")):
        try:
            write()
            raise AssertionError("a moved database accepted a write")
        except StateMoved as exc:
            assert f"moved to tinydb:{out}" in exc.message and PASSWORD not in str(exc)
            assert "orch store migrate --to postgresql://" in (exc.hint or "")
    assert [x.id for x in pg.list()] == [t.id] and pg.get(t.id).status == "queued"   # reads
    r = orch("--state-dir", str(tmp_path / "other"), "cancel", t.id, env={"ORCH_STATE_URL": pg_url})
    assert r.returncode == 2 and "this state was moved to tinydb:" in r.stderr, r.stderr
    assert Store(out).get(t.id).status == "queued"                      # the copy took it
    # Back: the TinyDB state into the database, which is the state in force again.
    r = orch("--state-dir", str(out), "store", "migrate", "--to", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    assert pg.moved_to() is None
    assert pg.cancel(t.id).status == "cancelled"
    pg.close()


def test_unreachable_database_is_exit_1_without_password(tmp_path: Path) -> None:
    url = f"postgresql://orch:{PASSWORD}@127.0.0.1:{_free_port()}/orch"
    r = orch("--state-dir", str(tmp_path), "tasks", env={"ORCH_STATE_URL": url})
    assert r.returncode == 1, r.stderr
    assert "the state database is unreachable" in r.stderr
    assert "postgresql://orch:***@127.0.0.1" in r.stderr and "hint:" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr


def test_password_from_pgpassword_and_pgpassfile(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.database()
    bare = url.replace(f":{PASSWORD}@", "@")
    r = orch("--state-dir", str(tmp_path), "store", "status", "--json",
             env={"ORCH_STATE_URL": bare, "PGPASSWORD": PASSWORD, "PGPASSFILE": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == "postgresql"
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_server.port}:*:orch:{PASSWORD}\n")
    passfile.chmod(0o600)
    env = {"ORCH_STATE_URL": bare, "PGPASSFILE": str(passfile)}
    r = orch("--state-dir", str(tmp_path), "store", "status", env=env)
    assert r.returncode == 0, r.stderr
    assert f"{bare} (postgresql), 0 tasks" in r.stdout
    r = orch("--state-dir", str(tmp_path), "store", "status",
             env={"ORCH_STATE_URL": bare, "PGPASSFILE": "/nonexistent", "PGPASSWORD": "wrong"})
    assert r.returncode == 1 and "unreachable" in r.stderr and "wrong" not in r.stderr


def test_a_role_without_rights_is_told_what_to_grant(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.database()
    db = url.rsplit("/", 1)[1]
    role = f"weak_{db}"
    pg_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'weak-pw'")
    pg_server.psql(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE ALL ON DATABASE {db} "
                   f"FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {role}", db)
    weak = f"postgresql://{role}:weak-pw@127.0.0.1:{pg_server.port}/{db}"
    r = orch("--state-dir", str(tmp_path), "tasks", env={"ORCH_STATE_URL": weak})
    assert r.returncode == 1, r.stderr
    assert "refused orch's role" in r.stderr and "grant the role CREATE" in r.stderr
    assert "weak-pw" not in r.stderr and "Traceback" not in r.stderr


def test_schema_migrations_are_applied_once_on_first_use(tmp_path: Path, pg_url: str) -> None:
    """A database left at schema version 1 (the first release of the backend) gains the
    later versions on first use, keeping its tasks; a second store applies nothing."""
    import psycopg

    from orchestrator.store.postgres import MIGRATIONS, PgStore
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orch_schema (version integer PRIMARY KEY, applied "
                     "timestamptz NOT NULL DEFAULT now())")
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("INSERT INTO orch_schema (version) VALUES (1)")
        conn.execute("INSERT INTO orch_tasks (id, repo, issue, status, doc) VALUES ('0ld00001', "
                     "'octo/api', 5, 'queued', %s)", (json.dumps(
                         {"id": "0ld00001", "repo": "octo/api", "issue": 5, "title": "old",
                          "specialty": "general", "status": "queued"}),))
    s = PgStore(pg_url)
    assert s.get("0ld00001").title == "old" and s.get("0ld00001").fence == 0
    assert s.schema_version() == max(MIGRATIONS)
    assert s.take_command("octo/api#5/c1") is True                # version 2's table
    again = PgStore(pg_url)
    assert again.schema_version() == max(MIGRATIONS) and again.count() == 1
    s.close()
    again.close()
