"""The store at a year's scale: the archive, the migration of an old state.json, the one
write per locked section, and what survives a SIGKILL (issue 10 item 1, issue 16 item 4).

Real parts only: the real Store in this process and in subprocesses (the way several orch
commands share one state dir), the real `orch` CLI, and a state.json written by the
previous orch version (tests/data/state-legacy.json.gz, scaled up by tests/legacy_state.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.core.models import Task
from orchestrator.ops.metrics import day_start, render, render_tally
from orchestrator.store import ArchiveCorrupt, DuplicateTask, Store, TaskNotFound
from orchestrator.store.filestore import KEEP_RECENT, archivable
from tests.legacy_state import LEGACY_FIELDS, as_written, legacy_records, write_legacy, year_of_state

REPO = "acme/widgets"


def finish(s: Store, issue: int, status: str = "succeeded", *, repo: str = REPO,
           cost: float | None = None, finalized: bool = True, error: str = "tests failed") -> Task:
    """A task for `issue` that ran on h1 and ended in `status`, through the transitions."""
    t = s.create(repo, issue, f"issue {issue}", "backend")
    s.start(t.id, "h1", f"orch/{issue}-x", f"~/w/{t.id}", pid=100 + issue)
    if cost is not None:
        s.update(t.id, cost_usd=cost)
    if status == "succeeded":
        return s.succeed(t.id, "PR x", finalized=finalized)
    if status == "failed":
        return s.fail(t.id, error, finalized=finalized)
    return s.cancel(t.id, "cancelled by user", finalized=finalized)


def hot_ids(s: Store) -> set[str]:
    return {d["id"] for d in json.loads(s.path.read_text())["tasks"].values()}


def archive_ids(s: Store) -> set[str]:
    with sqlite3.connect(s.archive.path) as db:
        return {r[0] for r in db.execute("SELECT id FROM tasks")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def orch(state: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(COLUMNS="200", NO_COLOR="1")
    cfg = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "orchestrator", *cfg, "--state-dir", str(state),
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=state)


def _run_py(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------ the archive

def test_finished_reported_tasks_move_to_the_archive_in_batches(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=3, archive_batch=2)
    done = [finish(s, n) for n in range(1, 6)]
    assert not s.archive.exists()                      # 5 <= keep 3 + batch 2: all hot
    unreported = finish(s, 50, "failed", finalized=False)
    live = s.create(REPO, 60, "live", "backend")
    done.append(finish(s, 6))                          # the 6th reported one: a batch moves
    assert archive_ids(s) == {t.id for t in done[:3]}  # the oldest three, at once
    assert hot_ids(s) == {t.id for t in done[3:]} | {unreported.id, live.id}
    # Everything is still found, and nothing twice.
    every = s.list(archived=True)
    assert [t.id for t in every] == [done[5].id, live.id, unreported.id,
                                     *[t.id for t in reversed(done[:5])]]
    assert s.list() == [t for t in every if t.id in hot_ids(s)]
    assert s.get(done[0].id) == done[0]
    assert s.archived_count() == 3


def test_show_finds_archived_ids_and_prefixes(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=1, archive_batch=1)
    tasks = [finish(s, n) for n in range(1, 40)]
    archived = [t for t in tasks if t.id in archive_ids(s)]
    assert len(archived) >= 30
    old = archived[0]
    assert s.get(old.id) == old
    # The shortest prefix that only the old task has.
    ids = [t.id for t in tasks]
    prefix = next(old.id[:k] for k in range(1, 9)
                  if sum(i.startswith(old.id[:k]) for i in ids) == 1)
    assert s.get(prefix) == old
    # A prefix shared by an archived task and a hot one is ambiguous and lists both.
    for n in range(100, 300):
        hot = s.list()[0]
        twin = next((i for i in archive_ids(s) if i[0] == hot.id[0]), None)
        if twin:
            break
        finish(s, n)
    assert twin, "no archived id shares a first character with a hot one"
    with pytest.raises(TaskNotFound, match="ambiguous") as ei:
        s.get(hot.id[0])
    assert hot.id in str(ei.value) and twin in str(ei.value)
    with pytest.raises(TaskNotFound, match="no task matches"):
        s.get("zzzz")
    assert s.get(hot.id) == hot

    r = orch(tmp_path, "show", old.id, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["task_id"] == old.id and json.loads(r.stdout)["history"]
    r = orch(tmp_path, "show", prefix)
    assert r.returncode == 0 and old.id in r.stdout
    r = orch(tmp_path, "show", hot.id[0])
    assert r.returncode == 2 and "ambiguous" in r.stderr


def test_tasks_shows_live_and_recent_and_all_shows_everything(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=2, archive_batch=1)
    done = [finish(s, n, "failed" if n % 2 else "succeeded") for n in range(1, 9)]
    live = s.create(REPO, 100, "live", "backend")
    recent = {t.id for t in s.list()}
    assert live.id in recent and len(recent) <= 4

    r = orch(tmp_path, "tasks", "--json")
    assert r.returncode == 0, r.stderr
    assert [t["id"] for t in json.loads(r.stdout)] == [t.id for t in s.list()]
    r = orch(tmp_path, "tasks")
    archived = len(done) + 1 - len(recent)
    assert f"{archived} older finished tasks archived: `orch tasks --all`" in r.stdout
    r = orch(tmp_path, "tasks", "--all", "--json")
    assert [t["id"] for t in json.loads(r.stdout)] == [live.id, *[t.id for t in reversed(done)]]
    r = orch(tmp_path, "tasks", "--all", "--status", "failed", "--json")
    assert {t["id"] for t in json.loads(r.stdout)} == {t.id for t in done if t.status == "failed"}
    r = orch(tmp_path, "tasks", "--all", "--repo", "nope/none", "--json")
    assert json.loads(r.stdout) == []


def test_one_live_task_per_issue_holds_with_the_issues_history_archived(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=1, archive_batch=1)
    old = [finish(s, 7, "failed") for _ in range(5)]
    for n in range(8, 12):                       # other issues push #7's tasks out
        finish(s, n)
    assert {t.id for t in old} <= archive_ids(s)
    assert [t.id for t in s.for_issue(REPO, 7)] == [t.id for t in reversed(old)]
    assert s.live_for(REPO, 7) is None
    live = s.create(REPO, 7, "again", "backend")
    assert [t.id for t in s.for_issue(REPO, 7)][:2] == [live.id, old[-1].id]
    with pytest.raises(DuplicateTask):
        s.create(REPO, 7, "twice", "backend")
    with pytest.raises(DuplicateTask):           # an archived task of the issue: not requeued
        s.requeue(old[0].id, "retried by user", reset_attempts=True)
    assert s.get(old[0].id).status == "failed"
    s.start(live.id, "h2", "b", "/w")
    with pytest.raises(DuplicateTask):
        s.create(REPO, 7, "twice", "backend")


def test_retry_of_an_archived_task_brings_it_back_once(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=1, archive_batch=1)
    failed = finish(s, 1, "failed", cost=2.0)
    for n in range(2, 6):
        finish(s, n)
    assert failed.id in archive_ids(s) and failed.id not in hot_ids(s)
    again = s.requeue(failed.id, "retried by user", reset_attempts=True)
    assert again.status == "queued" and again.attempts == 0
    assert again.history[-1]["previous"]["host"] == "h1"
    assert failed.id in hot_ids(s)
    every = s.list(archived=True)
    assert [t.id for t in every].count(failed.id) == 1
    assert s.get(failed.id).status == "queued"
    assert s.list(status="failed", archived=True) == []          # its stale archive row is not
    assert s.counts_by_status()["failed"] == 0 and s.counts_by_status()["queued"] == 1
    # Finished and reported again, it goes back to the archive: one row, the new one.
    s.start(failed.id, "h2", "b", "/w")
    s.succeed(failed.id, finalized=True)
    for n in range(6, 9):
        finish(s, n)
    assert failed.id in archive_ids(s) and failed.id not in hot_ids(s)
    assert s.get(failed.id).status == "succeeded" and len(s.get(failed.id).history) == 6
    assert len(s.list(archived=True)) == 8


def test_metrics_and_the_daily_budget_count_archived_tasks(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=2, archive_batch=1)
    spent = 0.0
    for n in range(1, 13):
        status = ("succeeded", "failed", "cancelled")[n % 3]
        finish(s, n, status, cost=0.25 * n, error=["timeout: ran 45m", "tests failed"][n % 2])
        spent += 0.25 * n
    running = s.create(REPO, 99, "running", "backend")
    s.start(running.id, "h1", "b", "/w")
    assert len(archive_ids(s)) >= 9
    every = s.list(archived=True)
    assert len(every) == 13
    midnight = day_start()
    assert s.spent_since(midnight) == pytest.approx(spent)
    assert s.spent_since(datetime.now(UTC) + timedelta(minutes=1)) == 0.0
    assert s.tally(midnight).statuses() == dict(Counter(t.status for t in every)) | \
        dict.fromkeys(("queued", "lost"), 0)
    # The exposition from the store's tally is the one of every task, byte for byte.
    assert render_tally(s.tally(midnight)) == render(every)
    r = orch(tmp_path, "metrics", "--no-probe")
    assert r.returncode == 0, r.stderr
    assert r.stdout == render(every)
    assert 'orch_tasks_completed_total{status="succeeded"} 4.0' in r.stdout

    # The daily budget that `orch poll` enforces counts the archived spend.
    cfg = tmp_path / "orch.yml"
    cfg.write_text(f"agent:\n  daily_budget_usd: {spent - 0.5}\nrepos: []\n")
    s.fail(running.id, "stopped", finalized=True)
    r = orch(tmp_path, "poll", "--json", config=cfg)
    assert r.returncode == 0, r.stderr
    reasons = [x["reason"] for x in json.loads(r.stdout)["skipped"]]
    assert any(x.startswith(f"daily budget spent: ${spent:.2f}") for x in reasons), reasons


def test_a_corrupt_archive_is_reported_and_left_alone(tmp_path: Path) -> None:
    s = Store(tmp_path, keep_recent=1, archive_batch=1)
    old = [finish(s, n) for n in range(1, 5)][0]
    s.archive.close()
    s.archive.path.write_bytes(b"this is not a database" * 100)
    before = s.archive.path.read_bytes()
    with pytest.raises(ArchiveCorrupt) as ei:
        Store(tmp_path).get(old.id)
    assert ei.value.exit_code == 2 and "archive.sqlite" in str(ei.value)
    r = orch(tmp_path, "show", old.id)
    assert r.returncode == 2 and "NOT reset" in r.stderr and "integrity_check" in r.stderr
    assert s.archive.path.read_bytes() == before


# ------------------------------------------------------------------ one write per section

def test_a_locked_section_is_one_write_and_durable_as_a_whole(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.create(REPO, 1, "a", "backend")
    first = s.path.read_bytes()
    with s.locked():
        t = s.create(REPO, 2, "b", "backend")
        s.start(t.id, "h1", "b", "/w")
        assert Store(tmp_path).get(t.id).status == "running"   # this thread sees the section
        assert s.path.read_bytes() == first                    # the file does not, yet
    # One write: the backup is the file from before the section, not an intermediate one.
    assert s.path.with_name("state.json.bak").read_bytes() == first
    assert Store(tmp_path).get(t.id).status == "running"
    # A section that raises keeps what its calls did (each of them returned).
    with pytest.raises(RuntimeError), s.locked():
        u = s.create(REPO, 3, "c", "backend")
        raise RuntimeError("after the create")
    assert Store(tmp_path).get(u.id).status == "queued"


def test_an_update_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path)
    t = s.create(REPO, 1, "a", "backend")
    s.update(t.id, pid=7, claimed_by=None)
    inode = s.path.stat().st_ino
    s.update(t.id, pid=7, claimed_by=None)
    assert s.path.stat().st_ino == inode
    s.update(t.id, pid=8)
    assert s.path.stat().st_ino != inode and s.get(t.id).pid == 8


# ------------------------------------------------------------------ migration

def test_a_previous_version_state_is_migrated_on_first_read_losing_nothing(tmp_path: Path) -> None:
    """20,000 finished tasks and every kind of record the previous version left."""
    records = year_of_state(20_000)
    write_legacy(tmp_path, records)
    before = {r["id"]: r for r in records}
    assert len(before) == len(records)
    s = Store(tmp_path)
    recent = s.list()                                   # the first use is a read
    keep = {i for i, r in before.items() if not archivable(r)}
    assert len(keep) >= 6                               # live, lost, unreported...
    assert keep <= hot_ids(s) and len(hot_ids(s)) == len(keep) + KEEP_RECENT
    assert {t.id for t in recent} == hot_ids(s)
    assert archive_ids(s) == set(before) - hot_ids(s)
    every = s.list(archived=True)
    assert [t.id for t in every] == [r["id"] for r in reversed(records)]
    assert all(as_written(t.to_json()) == before[t.id] for t in every)
    assert all(t.kind == "issue" and t.parent is None for t in every)   # the new fields
    assert all((t.error_kind is not None) == (t.status in ("failed", "cancelled", "lost"))
               for t in every)
    assert s.counts_by_status() == dict.fromkeys(("queued", "running", "lost"), 0) | dict(
        Counter(r["status"] for r in records))
    for path in (s.path, s.archive.path):
        assert mode(path) == 0o600, path
    # The file from before stays as the backup until the next write.
    assert len(json.loads(s.path.with_name("state.json.bak").read_text())["tasks"]) == len(records)
    live = next(r for r in records if r["status"] == "running")
    with pytest.raises(DuplicateTask):
        s.create(live["repo"], live["issue"], "again", "backend")


RACER = """
    import sys, time
    from orchestrator.store import Store
    state, start, kind, n = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    s = Store(state)
    while time.time() < start:
        time.sleep(0.001)
    if kind == "read":
        print(len(s.list()), len(s.list(archived=True)))
    else:
        t = s.create("acme/race", n, "race", "backend")
        s.start(t.id, "h1", "b", "/w")
        s.succeed(t.id, finalized=True)
        print(t.id)
"""


def test_racing_migrations_lose_and_double_nothing(tmp_path: Path) -> None:
    records = year_of_state(3_000)
    write_legacy(tmp_path, records)
    start = time.time() + 2.0
    procs = [_run_py(RACER, str(tmp_path), repr(start), kind, str(k))
             for k, kind in enumerate(["read", "write"] * 3)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out.split())
    created = {o[0] for o in outs[1::2]}
    assert len(created) == 3
    for o in outs[0::2]:
        assert int(o[1]) >= len(records)       # a reader saw every task, migrated or not
    s = Store(tmp_path)
    hot, archived = hot_ids(s), archive_ids(s)
    assert not hot & archived                  # nothing doubled
    assert hot | archived == {r["id"] for r in records} | created   # nothing lost
    every = s.list(archived=True)
    assert len(every) == len(records) + 3
    originals = {r["id"]: r for r in records}
    assert all(as_written(t.to_json()) == originals[t.id] for t in every if t.id in originals)
    assert {t.status for t in every if t.id in created} == {"succeeded"}


# ------------------------------------------------------------------ crashes (issue 16.4)

WRITER = """
    import sys
    from orchestrator.store import Store
    state, base = sys.argv[1], int(sys.argv[2])
    s = Store(state, keep_recent=3, archive_batch=2)   # archives every second finished task
    def ack(*words):
        # one write per line: under PYTHONUNBUFFERED print() writes each word
        # apart, and a kill between them leaves half an acknowledgement
        sys.stdout.write(" ".join(map(str, words)) + "\\n")
        sys.stdout.flush()
    n = base
    while True:
        t = s.create("acme/widgets", n, "x" * 300, "backend"); ack(t.id, 1)
        s.start(t.id, "h1", "b", "/w", n); ack(t.id, 2)
        s.update(t.id, cost_usd=0.5); ack(t.id, 3)
        if n % 4:
            s.succeed(t.id, finalized=True); ack(t.id, 4)
        else:   # failed, then retried: a task that may come back from the archive
            s.fail(t.id, "tests failed", finalized=True); ack(t.id, 4)
            old = s.for_issue("acme/widgets", n - 4)
            if old and old[0].status == "failed":
                s.requeue(old[0].id, "retried by user", reset_attempts=True); ack(old[0].id, "r")
        n += 1
"""


def _check_state(state: Path, acked: dict[str, int], requeued: set[str]) -> None:
    """The state parses, is 0600, and holds every acknowledged transition exactly once."""
    json.loads((state / "state.json").read_text())                # never half a file
    for name in ("state.json", "state.json.bak", "archive.sqlite", "archive.sqlite-journal"):
        if (state / name).exists():
            assert mode(state / name) == 0o600, name
    with sqlite3.connect(state / "archive.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s = Store(state)
    every = s.list(archived=True)
    ids = [t.id for t in every]
    assert len(ids) == len(set(ids))
    by_id = {t.id: t for t in every}
    for tid, step in acked.items():
        t = by_id[tid]                                             # never lost
        assert len(t.history) >= {1: 1, 2: 2, 3: 2, 4: 3}[step], (tid, step, t.history)
        if step >= 3:
            assert t.cost_usd == 0.5
        if step >= 4 and tid not in requeued:
            # The acknowledged end holds, unless the writer's next, unacknowledged step
            # (killed before it printed the ack) requeued the failed task: then the end
            # is still in the history, right before the requeue.
            requeued_after = (t.status == "queued" and len(t.history) >= 2
                              and t.history[-2]["to"] == "failed")
            assert (t.status in ("succeeded", "failed") and t.finalized) or requeued_after
    for tid in requeued:
        assert by_id[tid].history[-1]["to"] == "queued" or len(by_id[tid].history) > 4


def test_writers_killed_at_random_points_lose_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("ORCH_TEST_SEED", "0")) or random.randrange(1 << 30)
    rnd = random.Random(seed)
    acked: dict[str, int] = {}
    requeued: set[str] = set()
    old_umask = os.umask(0o022)         # a plain write would leave 0644 files
    try:
        for round_ in range(12):
            p = _run_py(WRITER, str(tmp_path), str(1000 * (round_ + 1)))
            delay = rnd.uniform(0.05, 0.8)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            out, _ = p.communicate(timeout=30)
            for line in out.split("\n")[:-1]:     # the unterminated tail was never acknowledged
                tid, step = line.split()
                if step == "r":
                    requeued.add(tid)
                else:
                    acked[tid] = int(step)
            if (tmp_path / "archive.sqlite").exists():
                _check_state(tmp_path, acked, requeued)
    finally:
        os.umask(old_umask)
    assert len(acked) > 20, f"seed {seed}: the writer hardly wrote ({len(acked)} tasks)"
    assert archive_ids(Store(tmp_path)), f"seed {seed}: nothing was ever archived"
    _check_state(tmp_path, acked, requeued)


MIGRATOR = """
    import sys
    from orchestrator.store import Store
    print(len(Store(sys.argv[1]).list()), flush=True)
"""


def test_a_migration_killed_at_random_points_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("ORCH_TEST_SEED", "0")) or random.randrange(1 << 30)
    rnd = random.Random(seed)
    records = year_of_state(5_000)
    write_legacy(tmp_path, records)
    originals = {r["id"]: r for r in records}
    finished = False
    for _ in range(8):
        p = _run_py(MIGRATOR, str(tmp_path))
        try:
            p.wait(timeout=rnd.uniform(0.1, 1.2))
            finished = p.returncode == 0
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
        every = Store(tmp_path, keep_recent=10**9).list(archived=True)   # reads, never archives
        assert len(every) == len(records), f"seed {seed}"
        assert all(as_written(t.to_json()) == originals[t.id] for t in every), f"seed {seed}"
        json.loads((tmp_path / "state.json").read_text())
        if finished:
            break
    p = _run_py(MIGRATOR, str(tmp_path))
    assert p.wait(timeout=120) == 0
    s = Store(tmp_path)
    assert not hot_ids(s) & archive_ids(s)
    assert hot_ids(s) | archive_ids(s) == set(originals)


def test_state_and_archive_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o000)
    try:
        s = Store(tmp_path / "a", keep_recent=1, archive_batch=1)
        for n in range(1, 5):
            finish(s, n)
        for name in ("state.json", "state.json.bak", "archive.sqlite"):
            assert mode(s.state_dir / name) == 0o600, name
        # Files left readable by someone else (a copy, an old tool) are 0600 after a write.
        os.chmod(s.path, 0o644)
        os.chmod(s.archive.path, 0o644)
        for n in range(5, 8):
            finish(s, n)
        assert mode(s.path) == 0o600 and mode(s.archive.path) == 0o600
    finally:
        os.umask(old_umask)


def test_the_legacy_fixture_is_what_the_previous_version_wrote() -> None:
    """The migration tests stand on this file: every kind of record, as it was written."""
    records = legacy_records()
    kinds = Counter((r["status"], r["finalized"]) for r in records)
    assert kinds[("running", False)] and kinds[("queued", False)] and kinds[("lost", False)]
    assert kinds[("failed", False)] and kinds[("succeeded", True)] and kinds[("cancelled", True)]
    assert any(e.get("previous") for r in records for e in r["history"])
    assert all(set(r) == LEGACY_FIELDS for r in records)
    assert set(Task.__dataclass_fields__) > LEGACY_FIELDS      # fields only ever added


def test_the_backup_is_0600_also_where_hard_links_fail(tmp_path: Path, monkeypatch) -> None:
    """Without hard links (some filesystems) the backup is a copy: it was written 0644."""
    def no_links(src, dst, *a, **kw):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    old_umask = os.umask(0o022)
    try:
        s = Store(tmp_path)
        s.create(REPO, 1, "a", "backend")
        first = s.path.read_bytes()
        s.create(REPO, 2, "b", "backend")
    finally:
        os.umask(old_umask)
    backup = s.path.with_name("state.json.bak")
    assert backup.read_bytes() == first
    assert mode(backup) == 0o600


def test_new_tasks_sort_after_archived_ones_even_with_a_fresh_state_file(tmp_path: Path) -> None:
    """state.json moved aside (what StateCorrupt's hint suggests), the archive kept: a new
    task's record number still comes after every archived one, so --all stays in order."""
    s = Store(tmp_path, keep_recent=1, archive_batch=1)
    old = [finish(s, n) for n in range(1, 6)]
    assert archive_ids(s)
    s.path.rename(tmp_path / "state.json.broken")
    s.path.with_name("state.json.bak").unlink()
    new = s.create(REPO, 100, "after", "backend")
    every = s.list(archived=True)
    assert every[0].id == new.id
    assert [t.id for t in every[1:]] == [t.id for t in reversed(old) if t.id in archive_ids(s)]
