"""`orch poll` killed with SIGKILL at the worst moments (issue 4, "Orchestrator crash").

Each kill is timed by watching the state file, not by sleeping: while a task is reserved
but its job is not started yet, while jobs are being started, and while a finished task
is being finalized (its claim held). The passes that follow must leave no orphan job, no
duplicate task and no lost issue: every issue ends with one succeeded task and one PR.
"""

from __future__ import annotations

from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_no_orphans,
    assert_one_pr_per_issue,
    by_issue,
    host_jobs,
    poll,
    run_passes,
    tasks,
    wait_for,
)

BODY = "orch-standin: slow 0.3\norch-standin: turns 3\norch-standin: write c{i}.txt c{i}\n"


def _kill_when(w, pred, what: str, timeout: float = 60) -> None:
    """Start `orch poll` and SIGKILL it the moment `pred(tasks)` holds."""
    proc = w.popen("poll")
    try:
        wait_for(lambda: pred(tasks(w)) or proc.poll() is not None, timeout, what, every=0.005)
        assert proc.poll() is None, (f"the pass ended before {what}:\n"
                                     + "".join(proc.communicate()))
    finally:
        proc.kill()            # SIGKILL: no cleanup, no finally blocks, no lock release
        proc.communicate()


def test_sigkill_mid_dispatch_and_mid_finalize_loses_and_doubles_nothing(make_world):
    w = make_world(hosts=3, max_tasks=2, tests=FAST_TESTS,
                   poll={"lost_after": "5s", "max_attempts": 5})
    # The default start grace (120 s) stays: a reservation whose process died is seen at
    # once (its claim names a dead process), with no grace period to wait out.
    numbers = [w.issue(f"Crash issue {i}", BODY.format(i=i)) for i in range(8)]

    # 1. Killed right after reserving a slot, before the job is started.
    _kill_when(w, lambda ts: any(t.status == "running" and t.pid is None for t in ts),
               "a reserved task without a job")
    reserved = [t for t in tasks(w) if t.status == "running" and t.pid is None]
    assert reserved, "the kill came too late"
    never_started = {t.id for t in reserved}

    # 2. Killed while jobs are being started (one more job started than before).
    started_before = sum(1 for t in tasks(w) if t.pid)
    _kill_when(w, lambda ts: sum(1 for t in ts if t.pid) > started_before,
               "one more job started")

    # 3. Killed while finalizing: a finished job's task holds this pass's claim.
    wait_for(lambda: any(j["state"] == "succeeded" for j in host_jobs(w)), 60,
             "a job to finish")
    _kill_when(w, lambda ts: any(t.status == "running" and t.pid and t.claimed_by for t in ts),
               "a finalize claim")
    claimed = [t for t in tasks(w) if t.status == "running" and t.claimed_by]
    assert claimed, "no claim was left behind by the killed finalize"

    # The passes after the crashes put everything right.
    run_passes(w, all_final(len(numbers)), timeout=240)

    groups = by_issue(w)
    assert sorted(groups) == sorted(numbers), "an issue was lost"
    assert all(len(ts) == 1 for ts in groups.values()), "an issue got a second task"
    assert all(t.status == "succeeded" for t in tasks(w)), [(t.id, t.status, t.error)
                                                            for t in tasks(w)]
    assert_one_pr_per_issue(w, numbers)
    assert_no_orphans(w)
    # The reservations of the first killed pass were requeued because their process was
    # dead, not after the 120 s start grace.
    for t in tasks(w):
        if t.id in never_started:
            reasons = [h["reason"] for h in t.history if h["to"] == "lost"]
            if reasons:
                assert "never started" in reasons[0] and "died" in reasons[0], reasons


def test_reservation_by_an_unseen_process_is_requeued_after_the_start_grace(make_world,
                                                                           monkeypatch):
    """A task reserved by an orch process this machine cannot see (another machine
    sharing the state) that never started its job: once ORCH_START_GRACE has passed and
    its claim's lease has run out (ORCH_CLAIM_LEASE; not the defaults, 120 s and 10 min)
    the next pass requeues it, and it runs."""
    from orchestrator.store import Store, now_iso
    w = make_world(hosts=1, tests=FAST_TESTS)
    w.env_extra["ORCH_START_GRACE"] = "3s"
    w.env_extra["ORCH_CLAIM_LEASE"] = "3s"
    monkeypatch.setenv("ORCH_CLAIM_LEASE", "3s")   # the lease the reservation below gets
    n = w.issue("Orphaned reservation", "orch-standin: write o.txt o\n")
    store = Store(w.state_dir)
    t = store.create(w.repo, n, "Orphaned reservation", "general")
    root = w.fleet.workspace_root("h1")
    store.start(t.id, host="h1", branch=f"orch/{n}-orphaned-reservation",
                workspace=f"{root}/{t.id}", claimed_by="another-machine:4242",
                claimed_at=now_iso())
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    assert data["lost"] == [] and data["dispatched"] == [], "too early to judge"
    run_passes(w, all_final(1), timeout=240)
    [done] = tasks(w)
    assert done.id == t.id and done.status == "succeeded" and done.attempts == 2
    [lost] = [h for h in done.history if h["to"] == "lost"]
    assert "never started" in lost["reason"] and "no job 3s after" in lost["reason"]
    assert_one_pr_per_issue(w, [n])


def test_two_starts_racing_in_one_workspace_run_one_job(tmp_path, git_remote):
    """A start left running by a dead orch and the start of the requeued task meet in the
    same workspace: one job runs, the other start is refused (not two jobs sharing one
    status file and one checkout)."""
    import asyncio

    from orchestrator.core.models import Host
    from orchestrator.errors import WorkError
    from orchestrator.job import remote
    from orchestrator.transport.local import LocalConnection
    from tests.helpers_job import group_alive as settled_alive
    from tests.helpers_job import make_issue, make_spec, start_job

    conn = LocalConnection(Host(name="local", address="localhost", connection="local"))
    issue = make_issue("orch-standin: sleep-forever\n")
    spec = make_spec(tmp_path, git_remote.url, issue)

    async def race():
        return await asyncio.gather(*(start_job(conn, spec, issue) for _ in range(3)),
                                    return_exceptions=True)

    results = asyncio.run(race())
    started = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, WorkError)]
    assert len(started) == 1 and len(refused) == 2, results
    assert all("already running" in r.message for r in refused)
    assert asyncio.run(remote.kill(conn, spec.workspace, grace=1.0))
    assert not settled_alive(started[0])


def test_a_task_left_lost_by_a_crash_is_queued_again_by_the_next_pass(make_world):
    """A pass that died between marking a task lost and queueing it again left it `lost`
    (lost is not live: nothing else would ever pick it up). The next pass requeues it,
    its stale job is killed, and it runs to its PR."""
    from orchestrator.store import Store
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Left lost", "orch-standin: slow 0.3\norch-standin: turns 10\n"
                             "orch-standin: write l.txt l\n")
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 1, proc.stdout + proc.stderr
    [task] = tasks(w)
    wait_for(lambda: any(j["state"] == "running" and j["alive"] for j in host_jobs(w)), 30,
             "the job to run")
    Store(w.state_dir).mark_lost(task.id, "simulated: the pass died here")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert data["requeued"] == [task.id] and data["killed"] == [f"h1:{task.id}"]
    run_passes(w, all_final(1), timeout=240)
    [done] = tasks(w)
    assert done.id == task.id and done.status == "succeeded"
    assert_one_pr_per_issue(w, [n])
    assert_no_orphans(w)
