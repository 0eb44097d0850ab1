"""The task store: transitions, queries, cross-process locking, crash and corruption safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.core.models import TASK_STATUSES, Task
from orchestrator.errors import UsageError, WorkError
from orchestrator.store import DuplicateTask, InvalidTransition, StateCorrupt, Store, StoreBusy, TaskNotFound

REPO = "acme/widgets"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


_counter = iter(range(1000, 100000))


def make(store: Store, status: str, repo: str = REPO) -> Task:
    """A task in the given status, reached through the real transitions."""
    t = store.create(repo, next(_counter), "title", "backend")
    if status == "queued":
        return t
    if status in ("running", "succeeded", "lost"):
        store.start(t.id, "h1", "orch/1-x", "/w/x", 4242)
    if status == "succeeded":
        return store.succeed(t.id, pr_url="https://x/pr/1", cost_usd=0.5, turns=3)
    if status == "lost":
        return store.mark_lost(t.id, "host h1 unreachable for 10m")
    if status == "failed":
        return store.fail(t.id, "tests failed")
    if status == "cancelled":
        return store.cancel(t.id, "by user")
    return store.get(t.id)


# ------------------------------------------------------------------ create / queries

def test_create_records_a_queued_task(store: Store) -> None:
    t = store.create(REPO, 7, "Fix the thing", "frontend", forge="local")
    assert len(t.id) == 8 and int(t.id, 16) >= 0
    assert t.status == "queued" and t.attempts == 0 and t.forge == "local"
    created = datetime.fromisoformat(t.created_at)
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert t.history[0]["to"] == "queued" and t.history[0]["from"] is None
    assert store.get(t.id) == t
    data = json.loads(store.path.read_text())
    assert [d["id"] for d in data["tasks"].values()] == [t.id]


def test_the_file_holds_one_task_per_line_and_reads_back_whole(store: Store) -> None:
    """state.json is written one record per line (the C encoder, not indent=: issue 10),
    still plain JSON: a line per task for people, the same tables for any reader."""
    tasks = [make(store, s) for s in ("queued", "running", "succeeded")]
    store.update(tasks[0].id, error="a \"quoted\" line\nwith a break and \u00e9")
    text = store.path.read_text()
    lines = text.splitlines()
    assert lines[0] == "{" and lines[1] == ' "tasks": {' and lines[-1] == "}"
    task_lines = [ln for ln in lines if ln.startswith('  "')]
    assert len(task_lines) == 3 and all(json.loads(ln.split(": ", 1)[1].rstrip(","))["id"]
                                        for ln in task_lines)
    assert {d["id"] for d in json.loads(text)["tasks"].values()} == {t.id for t in tasks}
    assert store.get(tasks[0].id).error == "a \"quoted\" line\nwith a break and \u00e9"
    assert "\u00e9" in text and "\\u00e9" not in text   # UTF-8, not \u-escaped


def test_create_refuses_a_second_live_task_for_the_issue(store: Store) -> None:
    t = store.create(REPO, 7, "x", "backend")
    with pytest.raises(DuplicateTask) as ei:
        store.create(REPO, 7, "x", "backend")
    assert t.id in str(ei.value) and ei.value.task_id == t.id
    assert isinstance(ei.value, UsageError)
    store.start(t.id, "h1", "b", "/w", 1)
    with pytest.raises(DuplicateTask):
        store.create(REPO, 7, "x", "backend")
    # Another repo with the same number is another issue.
    store.create("acme/other", 7, "x", "backend")
    # Once the task is finished, the issue may be dispatched again.
    store.fail(t.id, "agent error")
    t2 = store.create(REPO, 7, "x", "backend")
    assert store.live_for(REPO, 7).id == t2.id
    assert [x.id for x in store.for_issue(REPO, 7)] == [t2.id, t.id]


def test_get_by_prefix_unknown_and_ambiguous(store: Store) -> None:
    tasks = [store.create(REPO, n, "x", "backend") for n in range(17)]  # 17 > 16 hex digits
    t = tasks[0]
    unique = next(t.id[:k] for k in range(1, 9)
                  if sum(x.id.startswith(t.id[:k]) for x in tasks) == 1)
    assert store.get(unique).id == t.id
    assert store.get(t.id.upper()).id == t.id
    with pytest.raises(TaskNotFound, match="no task matches 'zzzz'"):
        store.get("zzzz")
    by_first: dict[str, list[str]] = {}
    for x in tasks:
        by_first.setdefault(x.id[0], []).append(x.id)
    prefix, ids = next((k, v) for k, v in by_first.items() if len(v) > 1)
    with pytest.raises(TaskNotFound, match="ambiguous") as ei:
        store.get(prefix)
    for i in ids:
        assert i in str(ei.value)
    with pytest.raises(TaskNotFound):
        store.get("")


def test_list_newest_first_and_filters(store: Store) -> None:
    a = store.create(REPO, 1, "a", "backend")
    b = store.create("acme/other", 2, "b", "backend")
    c = store.create(REPO, 3, "c", "backend")
    store.start(c.id, "h1", "b", "/w", 1)
    assert [t.id for t in store.list()] == [c.id, b.id, a.id]
    assert [t.id for t in store.list(repo=REPO)] == [c.id, a.id]
    assert [t.id for t in store.list(status="queued")] == [b.id, a.id]
    assert [t.id for t in store.list(status="running", repo=REPO)] == [c.id]
    with pytest.raises(UsageError, match="unknown task status 'done'"):
        store.list(status="done")


def test_counts_running_on_reserved_and_spend(store: Store) -> None:
    for s in ("queued", "running", "running", "succeeded", "failed", "lost"):
        make(store, s)
    counts = store.counts_by_status()
    assert counts == {"queued": 1, "running": 2, "succeeded": 1, "failed": 1,
                      "cancelled": 0, "lost": 1}
    assert set(counts) == set(TASK_STATUSES)
    assert len(store.running_on("h1")) == 2 and store.running_on("h2") == []
    reserved = {h: sorted(ids) for h, ids in store.reserved().items()}
    assert reserved == {"h1": sorted(t.id for t in store.running_on("h1"))}
    yesterday = datetime.now(UTC) - timedelta(days=1)
    assert store.spent_since(yesterday) == pytest.approx(0.5)
    t = store.list(status="running")[0]
    store.succeed(t.id, cost_usd=1.25)
    assert store.spent_since(yesterday.isoformat()) == pytest.approx(1.75)
    assert store.spent_since(datetime.now(UTC) + timedelta(hours=1)) == 0.0


def test_update_changes_fields_but_never_status(store: Store) -> None:
    t = store.create(REPO, 1, "a", "backend")
    u = store.update(t.id, pr_url="https://x/pr/9", comment_id=5)
    assert u.pr_url == "https://x/pr/9" and store.get(t.id).comment_id == 5
    with pytest.raises(ValueError, match="status"):
        store.update(t.id, status="succeeded")
    with pytest.raises(TypeError, match="bogus"):
        store.update(t.id, bogus=1)
    assert store.get(t.id).status == "queued"


# ------------------------------------------------------------------ transitions

ALLOWED = {
    "start": ({"queued"}, "running"),
    "succeed": ({"running"}, "succeeded"),
    "fail": ({"queued", "running", "lost"}, "failed"),
    "cancel": ({"queued", "running", "lost"}, "cancelled"),
    "mark_lost": ({"running"}, "lost"),
    "requeue": ({"lost", "failed", "cancelled"}, "queued"),
}

CALL = {
    "start": lambda s, i: s.start(i, "h2", "orch/2-y", "/w/y", 77),
    "succeed": lambda s, i: s.succeed(i, pr_url="u", cost_usd=1.0, turns=4),
    "fail": lambda s, i: s.fail(i, "timeout: agent ran 45m"),
    "cancel": lambda s, i: s.cancel(i, "by user"),
    "mark_lost": lambda s, i: s.mark_lost(i, "host gone"),
    "requeue": lambda s, i: s.requeue(i, "retry"),
}

REFUSALS = {
    "start": "only a queued task can be started",
    "succeed": "only a running task can be marked succeeded",
    "fail": "only a queued, running or lost task can be marked failed",
    "cancel": "only a queued, running or lost task can be cancelled",
    "mark_lost": "only a running task can be marked lost",
    "requeue": "only a lost, failed or cancelled task can be queued again",
}


@pytest.mark.parametrize("action", sorted(ALLOWED))
@pytest.mark.parametrize("status", TASK_STATUSES)
def test_every_transition(store: Store, action: str, status: str) -> None:
    t = make(store, status)
    before = store.get(t.id)
    sources, target = ALLOWED[action]
    if status in sources:
        after = CALL[action](store, t.id)
        assert after.status == target == store.get(t.id).status
        assert len(after.history) == len(before.history) + 1
        last = after.history[-1]
        assert last["from"] == status and last["to"] == target and last["at"] and last["reason"]
        if target in ("succeeded", "failed", "cancelled"):
            assert after.finished_at is not None
        if target == "queued":
            assert after.finished_at is None and after.host is None and after.error is None
    else:
        with pytest.raises(InvalidTransition) as ei:
            CALL[action](store, t.id)
        assert str(ei.value) == f"task {t.id} is {status}; {REFUSALS[action]}"
        assert ei.value.exit_code == 2
        assert store.get(t.id) == before          # nothing changed


def test_cancel_message_matches_the_contract(store: Store) -> None:
    t = make(store, "succeeded")
    with pytest.raises(InvalidTransition) as ei:
        store.cancel(t.id, "x")
    assert str(ei.value) == (f"task {t.id} is succeeded; only a queued, running or lost "
                             f"task can be cancelled")


def test_start_and_succeed_fill_fields(store: Store) -> None:
    t = store.create(REPO, 1, "a", "backend")
    r = store.start(t.id, "h1", "orch/1-a", "~/orch-work/x", 999)
    assert (r.host, r.branch, r.workspace, r.pid, r.attempts) == ("h1", "orch/1-a",
                                                                  "~/orch-work/x", 999, 1)
    assert r.started_at and r.finished_at is None
    s = store.succeed(t.id, pr_url="https://x/pull/3", cost_usd=0.42, turns=7, tests="passed")
    assert (s.pr_url, s.cost_usd, s.turns, s.tests) == ("https://x/pull/3", 0.42, 7, "passed")
    assert s.finished_at and s.history[-1]["host"] == "h1"
    with pytest.raises(ValueError):
        store.succeed(t.id, status="failed")


def test_lost_requeue_is_bounded_and_retry_resets(store: Store) -> None:
    t = store.create(REPO, 1, "a", "backend")
    for attempt in (1, 2):
        store.start(t.id, f"h{attempt}", "b", f"/w/{attempt}", 100 + attempt)
        lost = store.mark_lost(t.id, "unreachable for 10m")
        assert lost.error.startswith("lost:") and lost.host == f"h{attempt}"
        if attempt == 1:
            q = store.requeue(t.id, "host lost", max_attempts=2)
            assert q.status == "queued" and q.host is None and q.pid is None
            prev = q.history[-1]["previous"]
            assert prev == {"host": "h1", "pid": 101, "workspace": "/w/1"}
    with pytest.raises(InvalidTransition, match="lost after 2 of 2 attempts"):
        store.requeue(t.id, "host lost", max_attempts=2)
    assert store.get(t.id).status == "lost"
    # A failed-for-good lost task may still be failed; a person's retry resets the count.
    r = store.requeue(t.id, "orch retry", max_attempts=2, reset_attempts=True)
    assert r.status == "queued" and r.attempts == 0


def test_requeue_refused_when_the_issue_has_another_live_task(store: Store) -> None:
    t = make(store, "failed")
    other = store.create(REPO, t.issue, "again", "backend")
    with pytest.raises(DuplicateTask, match=other.id):
        store.requeue(t.id, "retry")
    assert store.get(t.id).status == "failed"
    # A transition that makes no sense is reported as such, whatever else is live.
    done = make(store, "succeeded")
    store.create(REPO, done.issue, "again", "backend")
    with pytest.raises(InvalidTransition, match="is succeeded; only a lost, failed or cancelled"):
        store.requeue(done.id, "retry")


# ------------------------------------------------------------------ locking

def test_locked_is_reentrant_and_shared_between_stores(tmp_path: Path) -> None:
    a = Store(tmp_path)
    b = Store(tmp_path)
    with a.locked(timeout=1), b.locked(timeout=1):          # same process: re-enters, no self-deadlock
        t = b.create(REPO, 1, "a", "backend")
        a.start(t.id, "h1", "b", "/w", 1)
    assert a.get(t.id).status == "running"


def test_interleaved_writers_do_not_reuse_record_ids(tmp_path: Path) -> None:
    """Each Store is like another process: TinyDB's cached next id must not be trusted."""
    a, b = Store(tmp_path), Store(tmp_path)
    t1 = a.create(REPO, 1, "a", "backend")
    t2 = b.create(REPO, 2, "b", "backend")
    t3 = a.create(REPO, 3, "c", "backend")
    t4 = b.create(REPO, 4, "d", "backend")
    assert [t.id for t in Store(tmp_path).list()] == [t4.id, t3.id, t2.id, t1.id]


def _run_py(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    holder = _run_py("""
        import sys, time
        from orchestrator.store import Store
        s = Store(sys.argv[1])
        with s.locked():
            print("held", flush=True)
            time.sleep(3)
    """, str(tmp_path))
    assert holder.stdout.readline().strip() == "held"
    s = Store(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(StoreBusy) as ei, s.locked(timeout=0.3):
        pass
    assert time.monotonic() - t0 >= 0.3
    assert isinstance(ei.value, WorkError) and "state.lock" in str(ei.value)
    holder.wait(timeout=10)
    with s.locked(timeout=5):              # released when the holder exits
        pass


WORKER = """
    import sys, time
    from orchestrator.store import Store, DuplicateTask
    state, start, issue = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    s = Store(state)
    while time.time() < start:
        time.sleep(0.001)
    try:
        t = s.create("acme/widgets", issue, "race", "backend")
        print("OK", t.id)
    except DuplicateTask as e:
        print("DUP", e.task_id)
"""


def _race(tmp_path: Path, issues: list[int]) -> list[str]:
    start = time.time() + 2.0              # every process is up and waiting by then
    procs = [_run_py(WORKER, str(tmp_path), repr(start), str(i)) for i in issues]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def test_eight_processes_same_issue_exactly_one_task(tmp_path: Path) -> None:
    outs = _race(tmp_path, [5] * 8)
    oks = [o for o in outs if o.startswith("OK")]
    dups = [o for o in outs if o.startswith("DUP")]
    assert len(oks) == 1 and len(dups) == 7, outs
    winner = oks[0].split()[1]
    assert all(d.split()[1] == winner for d in dups)
    tasks = Store(tmp_path).list()
    assert [t.id for t in tasks] == [winner]


def test_eight_processes_different_issues_all_recorded(tmp_path: Path) -> None:
    outs = _race(tmp_path, list(range(1, 9)))
    assert all(o.startswith("OK") for o in outs), outs
    data = json.loads((tmp_path / "state.json").read_text())   # valid JSON
    assert sorted(d["issue"] for d in data["tasks"].values()) == list(range(1, 9))
    assert sorted(t.id for t in Store(tmp_path).list()) == sorted(o.split()[1] for o in outs)


def test_eight_processes_busy_writers_lose_nothing(tmp_path: Path) -> None:
    """Each process creates, starts and finishes 10 tasks; every write survives."""
    busy = """
        import sys, time
        from orchestrator.store import Store
        state, start, base = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
        s = Store(state)
        while time.time() < start:
            time.sleep(0.001)
        for n in range(base, base + 10):
            t = s.create("acme/widgets", n, "busy", "backend")
            s.start(t.id, f"h{base}", "b", "/w", n)
            s.succeed(t.id, cost_usd=0.25)
    """
    start = time.time() + 2.0
    procs = [_run_py(busy, str(tmp_path), repr(start), str(k * 100)) for k in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    s = Store(tmp_path)
    tasks = s.list()
    assert len(tasks) == 80 and len({t.id for t in tasks}) == 80
    assert all(t.status == "succeeded" and len(t.history) == 3 for t in tasks)
    assert s.spent_since("2000-01-01T00:00:00+00:00") == pytest.approx(20.0)


# ------------------------------------------------------------------ crash and corruption

def test_failed_replace_leaves_previous_state(store: Store, monkeypatch) -> None:
    t = store.create(REPO, 1, "a", "backend")
    before = store.path.read_bytes()
    real_replace = os.replace

    def crash(src, dst, *a, **kw):
        if Path(dst).name == "state.json":
            raise OSError("simulated crash before rename")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        store.create(REPO, 2, "b", "backend")
    assert store.path.read_bytes() == before
    assert [x.id for x in store.list()] == [t.id]
    assert not list(store.state_dir.glob(".state.json.*.tmp"))   # temp file cleaned up
    monkeypatch.setattr(os, "replace", real_replace)
    store.create(REPO, 2, "b", "backend")
    assert len(store.list()) == 2


def test_writer_killed_mid_write_leaves_readable_state(tmp_path: Path) -> None:
    """SIGKILL a process writing as fast as it can, at several moments: state stays valid."""
    Store(tmp_path).create(REPO, 0, "seed", "backend")
    writer = """
        import sys
        from orchestrator.store import Store
        s = Store(sys.argv[1])
        print("go", flush=True)
        n = 1
        while True:
            t = s.create("acme/widgets", n, "x" * 2000, "backend")
            s.start(t.id, "h1", "b", "/w", n)
            s.succeed(t.id)
            n += 1
    """
    for delay in (0.05, 0.2, 0.4, 0.7):
        p = _run_py(writer, str(tmp_path))
        assert p.stdout.readline().strip() == "go"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        json.loads((tmp_path / "state.json").read_text())     # never half a file
        s = Store(tmp_path)
        tasks = s.list()
        assert any(t.issue == 0 for t in tasks)
        s.create(REPO, 100000 + int(delay * 100), "after", "backend")   # writable again


def test_backup_holds_the_previous_version(store: Store) -> None:
    store.create(REPO, 1, "a", "backend")
    first = store.path.read_bytes()
    store.create(REPO, 2, "b", "backend")
    backup = store.path.with_name("state.json.bak")
    assert backup.read_bytes() == first
    assert len(json.loads(store.path.read_text())["tasks"]) == 2


@pytest.mark.parametrize("garbage", [b"{\"tasks\": {\"1\": {\"id\": ", b"\x00\xff garbage",
                                     b"[1, 2, 3]", b"{\"tasks\": {\"1\": {\"nope\": 1}}}"])
def test_corrupt_state_is_reported_and_left_untouched(tmp_path: Path, garbage: bytes) -> None:
    s = Store(tmp_path)
    s.create(REPO, 1, "a", "backend")
    s.create(REPO, 2, "b", "backend")                   # now a .bak exists
    s.path.write_bytes(garbage)
    for op in (s.list, lambda: s.get("ab"), lambda: s.create(REPO, 3, "c", "backend"),
               s.counts_by_status):
        with pytest.raises(StateCorrupt) as ei:
            op()
        msg = str(ei.value)
        assert str(s.path) in msg and "NOT reset" in msg
        assert "state.json.bak" in msg and "mv " in msg
        assert ei.value.exit_code == 2
    assert s.path.read_bytes() == garbage


def test_corrupt_state_without_backup_suggests_moving_aside(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("not json at all")
    s = Store(tmp_path)
    with pytest.raises(StateCorrupt) as ei:
        s.list()
    assert "mv " in str(ei.value) and ".bak" not in str(ei.value)
    assert (tmp_path / "state.json").read_text() == "not json at all"


def test_empty_file_is_fresh_only_without_backup(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("")
    s = Store(tmp_path)
    assert s.list() == []
    s.create(REPO, 1, "a", "backend")
    s.create(REPO, 2, "b", "backend")
    s.path.write_text("")
    with pytest.raises(StateCorrupt, match="empty"):
        s.list()
