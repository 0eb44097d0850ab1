"""One contract, two backends: every test here runs against the TinyDB store and against
PostgreSQL (a real server the suite starts: tests/fixtures_pg.py).

The contract (store/transitions.py, docs/state.md "Two backends"): one live task per
issue; a host's slots; claims with a fence that rises at every claim and a lease; a write
made with a stale fence is refused; the same refusals for impossible transitions; the
same counts. The multi-process tests race real processes on one store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import (
    DuplicateTask,
    FenceLost,
    InvalidTransition,
    NoSlot,
    TaskNotFound,
    open_store,
)
from orchestrator.store.transitions import LEASE_ENV

BACKENDS = ["tinydb", pytest.param("postgresql", marks=pytest.mark.integration)]
REPO = "octo/api"


@pytest.fixture(params=BACKENDS)
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state of each backend, as `state:` would name it."""
    if request.param == "tinydb":
        return f"tinydb:{tmp_path / 'state'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make(address: str, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Open the state at `address` (each call: a new store object, as another process)."""
    opened: list[Any] = []

    def open_one() -> Any:
        s = open_store(address, tmp_path / "state")
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


def _running(store: Any, issue: int, host: str = "h1", slots: int | None = None,
             owner: str | None = None) -> Any:
    t = store.create(REPO, issue, f"issue {issue}", "general")
    extra = {"claimed_by": owner} if owner else {}
    return store.start(t.id, host=host, branch=f"orch/{issue}", workspace=f"/w/{t.id}",
                       slots=slots, **extra)


# --------------------------------------------------------------------- the basics

def test_create_get_list_for_issue(make: Callable[[], Any]) -> None:
    s = make()
    a = s.create(REPO, 1, "one", "general")
    b = s.create(REPO, 2, "two", "backend", kind="issue")
    assert s.get(a.id) == a and s.get(a.id[:6]).id == a.id
    assert [t.id for t in s.list()] == [b.id, a.id]          # newest first
    assert [t.id for t in s.list(status="queued", repo=REPO)] == [b.id, a.id]
    assert [t.id for t in s.for_issue(REPO, 1)] == [a.id]
    assert s.live_for(REPO, 2).id == b.id and s.live_for(REPO, 3) is None
    with pytest.raises(TaskNotFound):
        s.get("zzzzzzzz")
    assert make().get(a.id).title == "one"                  # another process sees it


def test_one_live_task_per_issue(make: Callable[[], Any]) -> None:
    s = make()
    first = s.create(REPO, 7, "t", "general")
    with pytest.raises(DuplicateTask) as exc:
        make().create(REPO, 7, "t", "general")
    assert exc.value.task_id == first.id
    s.cancel(first.id)
    second = s.create(REPO, 7, "t", "general")              # not live any more: allowed
    with pytest.raises(DuplicateTask):
        s.requeue(first.id, "again")                         # would make two live tasks
    assert s.get(first.id).status == "cancelled" and s.live_for(REPO, 7).id == second.id


def test_transitions_refused_alike(make: Callable[[], Any]) -> None:
    s = make()
    t = s.create(REPO, 1, "t", "general")
    with pytest.raises(InvalidTransition, match="only a running task can be marked succeeded"):
        s.succeed(t.id)
    s.start(t.id, host="h1", branch="b", workspace="/w")
    done = s.succeed(t.id, cost_usd=0.5, finalized=True)
    assert done.status == "succeeded" and done.finished_at
    assert [h["to"] for h in done.history] == ["queued", "running", "succeeded"]
    with pytest.raises(InvalidTransition):
        s.requeue(t.id, "no")
    with pytest.raises(ValueError):
        s.update(t.id, status="queued")
    with pytest.raises(ValueError):
        s.update(t.id, lease_until="2099-01-01T00:00:00+00:00")   # leases only through claims


def test_requeue_bounded_and_history(make: Callable[[], Any]) -> None:
    s = make()
    t = _running(s, 1)
    s.mark_lost(t.id, "host gone", error_kind="lost")
    with pytest.raises(InvalidTransition, match="1 of 1 attempts"):
        s.requeue(t.id, "again", max_attempts=1)
    back = s.requeue(t.id, "again", max_attempts=2)
    assert back.status == "queued" and back.host is None
    assert back.history[-1]["previous"]["host"] == "h1"


# --------------------------------------------------------------------- slots

def test_slots_are_held_and_given_back(make: Callable[[], Any]) -> None:
    s = make()
    a, b = _running(s, 1, slots=2), _running(s, 2, slots=2)
    c = s.create(REPO, 3, "t", "general")
    with pytest.raises(NoSlot):
        make().start(c.id, host="h1", branch="b", workspace="/w", slots=2)
    assert s.get(c.id).status == "queued"                    # nothing changed
    assert s.start(c.id, host="h2", branch="b", workspace="/w", slots=2).host == "h2"
    s.fail(a.id, "broke")
    d = s.create(REPO, 4, "t", "general")
    assert s.start(d.id, host="h1", branch="b", workspace="/w", slots=2).status == "running"
    assert sorted(s.reserved()["h1"]) == sorted([b.id, d.id])


# --------------------------------------------------------------------- claims and fences

def test_claim_fence_rises_and_excludes(make: Callable[[], Any]) -> None:
    s = make()
    t = _running(s, 1, owner="orch-a:1")                     # reserved: the first claim
    assert t.fence == 1 and t.lease_until
    assert make().claim(t.id, "orch-b:2") is None            # a held lease: refused
    s.release(t.id, t.fence)
    won = make().claim(t.id, "orch-b:2")
    assert won is not None and won.fence == 2 and won.claimed_by == "orch-b:2"
    with pytest.raises(FenceLost):
        s.update(t.id, pid=5, fence=1)                       # the old claim changes nothing
    assert s.get(t.id).pid is None
    assert s.renew(t.id, 2).lease_until
    assert s.claim(t.id, "orch-b:2").fence == 3              # one's own claim: taken again


def test_expired_lease_is_taken_over_and_late_writes_refused(
        make: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEASE_ENV, "1s")
    paused = make()
    t = _running(paused, 1)
    mine = paused.claim(t.id, "orch-a:1")
    assert mine is not None and mine.fence == 1
    other = make()
    assert other.claim(t.id, "orch-b:2") is None             # lease still runs
    time.sleep(2.2)                                          # orch-a is paused past it
    theirs = other.claim(t.id, "orch-b:2")
    assert theirs is not None and theirs.fence == 2
    for late in (lambda: paused.succeed(t.id, fence=1, finalized=True),
                 lambda: paused.fail(t.id, "x", fence=1),
                 lambda: paused.renew(t.id, 1),
                 lambda: paused.mark_lost(t.id, "x", fence=1)):
        with pytest.raises(FenceLost):
            late()
    assert paused.release(t.id, 1) is False                  # not its claim to give back
    done = other.succeed(t.id, fence=2, finalized=True, claimed_by=None)
    assert done.status == "succeeded" and done.claimed_by is None and done.lease_until is None


def test_an_expired_lease_refuses_its_own_holder(
        make: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its lease a claim is not a claim: its holder must renew in time or claim
    again (and lose to whoever claimed first)."""
    monkeypatch.setenv(LEASE_ENV, "1s")
    s = make()
    t = _running(s, 1)
    c = s.claim(t.id, "orch-a:1")
    time.sleep(1.5)
    with pytest.raises(FenceLost):
        s.succeed(t.id, fence=c.fence)
    assert s.claim(t.id, "orch-a:1").fence == c.fence + 1


def test_heartbeats(make: Callable[[], Any]) -> None:
    s = make()
    s.heartbeat("box-a:10")
    make().heartbeat("box-b:20")
    seen = s.orchestrators()
    assert set(seen) == {"box-a:10", "box-b:20"}
    age = datetime.now(UTC) - datetime.fromisoformat(seen["box-a:10"])
    assert abs(age) < timedelta(minutes=1)


# --------------------------------------------------------------------- counts

def test_tally_and_spend(make: Callable[[], Any]) -> None:
    s = make()
    a = _running(s, 1)
    s.succeed(a.id, cost_usd=1.25)
    b = _running(s, 2)
    s.fail(b.id, "tests failed", error_kind="tests_failed", cost_usd=0.5)
    _running(s, 3)
    s.create(REPO, 4, "t", "general")
    tally = s.tally("2000-01-01T00:00:00+00:00")
    assert tally.statuses() == {"queued": 1, "running": 1, "succeeded": 1, "failed": 1,
                                "cancelled": 0, "lost": 0}
    assert tally.failed_kinds == {"tests_failed": 1}
    assert tally.running_by_host == {"h1": 1}
    assert tally.spent == pytest.approx(1.75)
    assert s.spent_since(datetime.now(UTC) + timedelta(hours=1)) == 0.0
    assert sum(tally.durations.values()) == 2


# --------------------------------------------------------------------- many processes

RACER = r"""
import json, sys, time
from pathlib import Path
from orchestrator.store import open_store, DuplicateTask, NoSlot
address, state_dir, what, start_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
store = open_store(address, state_dir)
arg = json.loads(sys.argv[5])
store.list()                      # connected and migrated before the start line
while time.time() < start_at:
    time.sleep(0.001)
try:
    if what == "reserve":
        with store.locked():
            t = store.create("octo/api", 42, "t", "general")
            store.start(t.id, host="h1", branch="b", workspace="/w", claimed_by=arg["me"])
        print(json.dumps({"won": t.id}))
    else:
        with store.locked():
            t = store.start(arg["task"], host="h1", branch="b", workspace="/w", slots=2)
        print(json.dumps({"won": t.id}))
except (DuplicateTask, NoSlot) as exc:
    print(json.dumps({"lost": type(exc).__name__}))
"""


def _race(address: str, state_dir: Path, what: str, args: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start_at = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", RACER, address, str(state_dir), what,
                               str(start_at), json.dumps(a)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in args]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_n_processes_reserving_one_issue_one_wins(address: str, tmp_path: Path,
                                                  make: Callable[[], Any]) -> None:
    results = _race(address, tmp_path / "state", "reserve", [{"me": f"p:{i}"} for i in range(8)])
    won = [r["won"] for r in results if "won" in r]
    assert len(won) == 1, results
    assert all(r.get("lost") == "DuplicateTask" for r in results if "won" not in r)
    s = make()
    assert [t.id for t in s.for_issue(REPO, 42)] == won
    assert s.get(won[0]).status == "running"


def test_eight_processes_claiming_two_slots_two_win(address: str, tmp_path: Path,
                                                    make: Callable[[], Any]) -> None:
    s = make()
    tasks = [s.create(REPO, i, "t", "general").id for i in range(8)]
    results = _race(address, tmp_path / "state", "slot", [{"task": t} for t in tasks])
    won = sorted(r["won"] for r in results if "won" in r)
    assert len(won) == 2, results
    assert all(r.get("lost") == "NoSlot" for r in results if "won" not in r)
    assert sorted(t.id for t in make().running_on("h1")) == won
    assert len(make().list(status="queued")) == 6


# --------------------------------------------------------------------- upgrades and input

def test_a_claim_of_the_previous_version_counts_until_its_ttl(tmp_path: Path) -> None:
    """state.json written by the previous orch: a running task claimed "host:pid" with
    claimed_at and no fence or lease. It keeps its claim for the old TTL (10 minutes from
    claimed_at), then is taken with fence 1."""
    from tests.legacy_state import legacy_records, write_legacy
    old = next(dict(t) for t in legacy_records() if t["status"] == "running")
    assert "fence" not in old and "lease_until" not in old
    now = datetime.now(UTC)
    old.update(claimed_by="other-box:4242", claimed_at=now.isoformat(timespec="seconds"))
    stale = dict(old, id="0ld0c1a1", issue=old["issue"] + 1000,
                 claimed_at=(now - timedelta(minutes=11)).isoformat(timespec="seconds"))
    write_legacy(tmp_path, [old, stale])
    s = open_store(f"tinydb:{tmp_path}", tmp_path)
    assert s.get(old["id"]).fence == 0
    assert s.claim(old["id"], "new-box:1") is None             # 10 minutes not up yet
    taken = s.claim(stale["id"], "new-box:1")
    assert taken is not None and taken.fence == 1 and taken.lease_until


def test_bad_state_address_in_orch_yml_is_exit_2_without_the_password(tmp_path: Path) -> None:
    from orchestrator.config.load import load_settings
    from orchestrator.errors import ConfigError
    cfg = tmp_path / "orch.yml"
    cfg.write_text("repos: []\nstate: mysql://orch:hunter2@db/orch\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert exc.value.exit_code == 2 and exc.value.line == 2 and "hunter2" not in str(exc.value)
    cfg.write_text("state: tinydb:rel/dir\n")
    assert load_settings(cfg).state == f"tinydb:{tmp_path / 'rel/dir'}"


def test_urls_are_shown_without_their_password() -> None:
    from orchestrator.store import StoreUnreachable, redact_url
    assert redact_url("postgresql://orch:pw%40x@db:5433/orch?sslmode=require") == \
        "postgresql://orch:***@db:5433/orch?sslmode=require"
    assert redact_url("postgresql://orch@db/orch") == "postgresql://orch@db/orch"
    err = StoreUnreachable("postgresql://u:sekrit@h/d", "connection refused")
    assert "sekrit" not in str(err) and err.exit_code == 1 and "PGPASSWORD" in str(err)


def test_renew_extends_only_a_lease_half_run(make: Callable[[], Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEASE_ENV, "4s")
    s = make()
    t = _running(s, 1)
    c = s.claim(t.id, "orch-a:1")
    assert s.renew(t.id, c.fence).lease_until == c.lease_until   # checked, not written
    time.sleep(2.5)
    later = s.renew(t.id, c.fence).lease_until
    assert later is not None and later > c.lease_until          # past half: extended


def test_a_claimed_task_is_not_marked_lost_by_another(make: Callable[[], Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The race reconcile could lose: B claimed the task to finalize it just after A read
    it as unclaimed; A's mark_lost must not take it from under B."""
    monkeypatch.setenv(LEASE_ENV, "2s")
    s = make()
    t = _running(s, 1)
    b = make().claim(t.id, "orch-b:2")
    with pytest.raises(InvalidTransition, match="held by orch-b:2"):
        s.mark_lost(t.id, "host away", owner="orch-a:1", claimed_by=None)
    assert s.get(t.id).status == "running" and s.get(t.id).fence == b.fence
    assert s.mark_lost(t.id, "dead", owner="orch-a:1", take_from="orch-b:2").status == "lost"
    u = _running(s, 2)
    s.claim(u.id, "orch-b:2")
    time.sleep(2.5)                                          # B's lease ran out
    assert s.mark_lost(u.id, "host away", owner="orch-a:1").status == "lost"


def test_the_state_in_force_and_the_demo_sandbox(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.app import App
    from orchestrator.config.settings import Settings
    from orchestrator.errors import UsageError
    from orchestrator.store import BACKENDS, backend_of
    monkeypatch.setenv("ORCH_STATE_URL", "postgresql://orch@db.invalid/orch")
    app = App(state_dir=str(tmp_path))
    assert app.state_address == "postgresql://orch@db.invalid/orch"
    demo = app.sandbox(str(tmp_path / "demo"), Settings())
    assert demo.state_address is None and demo.store.backend == "tinydb"   # its own state
    assert backend_of("postgres://x@y/z") is BACKENDS["postgresql"]
    with pytest.raises(UsageError, match="unknown state backend 'mysql'"):
        backend_of("mysql://x@y/z")


def test_commands_are_taken_once_and_cursors_kept(make: Callable[[], Any]) -> None:
    s, other = make(), make()
    assert s.command("octo/api#1/c9") is None
    assert s.take_command("octo/api#1/c9", task_id="t1") is True
    assert other.take_command("octo/api#1/c9", task_id="t2") is False     # once, for all
    other.update_command("octo/api#1/c9", replies={"answered": 77})
    rec = s.command("octo/api#1/c9")
    assert rec["task_id"] == "t1" and rec["replies"] == {"answered": 77} and rec["taken_at"]
    assert [r["key"] for r in s.commands_for("t1")] == ["octo/api#1/c9"]
    assert s.forget_commands("2000-01-01T00:00:00+00:00") == 0
    assert s.forget_commands((datetime.now(UTC) + timedelta(minutes=1)).isoformat()) == 1
    assert s.command("octo/api#1/c9") is None
    assert s.cursor("octo/api") is None
    s.set_cursor("octo/api", "2026-01-01T00:00:00+00:00")
    other.set_cursor("octo/api", "2026-01-02T00:00:00+00:00")
    assert s.cursor("octo/api") == "2026-01-02T00:00:00+00:00"


def test_a_splits_parts_are_live_together_under_their_parent(make: Callable[[], Any]) -> None:
    """core/split.py: a split issue's parts run at once; the one-live-task rule (the
    index, in PostgreSQL) counts the parent only."""
    s = make()
    parent = s.create(REPO, 9, "split", "general", kind="split")
    parts = [s.create(REPO, 9, f"part {i}", "backend", kind="part", parent=parent.id)
             for i in range(3)]
    for p in parts:
        s.start(p.id, host="h1", branch=f"b{p.id}", workspace=f"/w/{p.id}")
    assert s.live_for(REPO, 9).id == parent.id
    assert [c.id for c in s.children(parent)] == [p.id for p in parts]
    with pytest.raises(DuplicateTask):
        make().create(REPO, 9, "again", "general")
