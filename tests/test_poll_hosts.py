"""Hosts that die, come back, or drop their link while a job runs (issue 4, "Host death",
"Network flap"). Real sshd processes are stopped and restarted (same key, same port);
"the machine died" is simulated by also SIGKILLing the job's process groups, whose ids
the job wrote in its workspace (`status`: pgid; `child.pgid`: the agent run's session).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from orchestrator.render.log import clean
from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_no_orphans,
    assert_one_pr_per_issue,
    group_alive,
    host_jobs,
    poll,
    read_status,
    run_passes,
    tasks,
    wait_for,
)

BACKEND = {"h1": ["backend"], "h2": ["backend"], "h3": ["frontend"]}


def _world(make_world):
    return make_world(hosts=3, specialties=BACKEND, tests=FAST_TESTS,
                      poll={"lost_after": "3s", "max_attempts": 3})


def _dispatch_backend(w, seconds: float) -> tuple[int, object]:
    """A backend issue whose agent run takes about `seconds` (18 turns; max_turns is 20)."""
    n = w.issue("Fix the api endpoint",
                f"orch-standin: slow {seconds / 18:.2f}\norch-standin: turns 18\n"
                "orch-standin: write api.txt ok\n")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [d] = data["dispatched"]
    assert d["host"] in ("h1", "h2") and d["specialty"] == "backend"
    [task] = tasks(w)
    return n, task


def _wait_agent(task) -> dict[str, str]:
    """Wait until the job is in its agent step (the clone is done); its status."""
    status = Path(task.workspace) / "status"
    wait_for(lambda: read_status(status).get("step") == "agent"
             and (Path(task.workspace) / "child.pgid").is_file(), 60, "the agent step")
    return read_status(status)


def _other(host: str) -> str:
    return "h2" if host == "h1" else "h1"


def test_host_death_loses_the_task_and_runs_it_on_another_backend_host(make_world):
    w = _world(make_world)
    n, task = _dispatch_backend(w, 5)
    dead = task.host
    st = _wait_agent(task)
    # The machine dies: its sshd and the job's process groups.
    w.fleet.stop(dead)
    child = int((Path(task.workspace) / "child.pgid").read_text().strip())
    for pgid in (int(st["pgid"]), child):
        os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not group_alive(int(st["pgid"])) and not group_alive(child), 10,
             "the job's process groups to die")

    proc, data = poll(w)          # first sight: unreachable, not yet lost
    assert proc.returncode == 0, proc.stderr
    assert data["lost"] == [] and tasks(w)[0].status == "running"
    assert tasks(w)[0].unreachable_since

    results = run_passes(w, all_final(1), timeout=240)
    [t] = tasks(w)
    assert t.status == "succeeded" and t.host == _other(dead) and t.specialty == "backend"
    assert t.attempts == 2
    lost = [h for h in t.history if h["to"] == "lost"]
    assert len(lost) == 1 and f"host {dead} unreachable" in lost[0]["reason"]
    assert lost[0]["host"] == dead
    # Lost, requeued and dispatched again within one pass.
    [lost_pass] = [r for r in results if r["lost"]]
    assert lost_pass["requeued"] == [t.id] and [d["host"] for d in lost_pass["dispatched"]] == \
        [_other(dead)]
    assert_one_pr_per_issue(w, [n])
    w.fleet.start(dead)
    proc, data = poll(w)
    assert proc.returncode == 0 and data["killed"] == [] and data["dispatched"] == []
    assert_no_orphans(w)


def _job_groups(task) -> list[int]:
    ws = Path(task.workspace)
    return [int(read_status(ws / "status")["pgid"]), int((ws / "child.pgid").read_text())]


def _signal(groups: list[int], sig: int) -> None:
    for g in groups:
        os.killpg(g, sig)


def test_host_back_with_its_stale_job_alive_gets_that_job_killed(make_world):
    w = _world(make_world)
    n, task = _dispatch_backend(w, 5)
    away = task.host
    _wait_agent(task)
    stale = _job_groups(task)
    w.fleet.stop(away)            # only the link: the job keeps running there
    # Hold the stale job still (SIGSTOP) while orch notices and moves the task, so that
    # it is surely alive when its host comes back, however slow the passes are.
    _signal(stale, signal.SIGSTOP)

    run_passes(w, lambda ts: ts[0].status == "running" and ts[0].host == _other(away),
               timeout=240)
    _signal(stale, signal.SIGCONT)
    assert all(group_alive(g) for g in stale), "the stale job runs on the unreachable host"
    w.fleet.start(away)
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    assert data["killed"] == [f"{away}:{task.id}"]
    wait_for(lambda: not any(group_alive(g) for g in stale), 10, "the stale job to die")
    status = read_status(Path(task.workspace) / "status")
    assert status["state"] == "cancelled" and data["errors"] == []

    run_passes(w, all_final(1), timeout=240)
    [t] = tasks(w)
    assert t.status == "succeeded" and t.host == _other(away)
    assert_one_pr_per_issue(w, [n])
    assert_no_orphans(w)


def test_rerun_pushes_over_the_branch_a_stale_job_pushed_meanwhile(make_world):
    w = _world(make_world)
    n, task = _dispatch_backend(w, 4)
    away = task.host
    _wait_agent(task)
    stale = _job_groups(task)
    w.fleet.stop(away)            # the job goes on, unseen
    _signal(stale, signal.SIGSTOP)

    run_passes(w, lambda ts: ts[0].status == "running" and ts[0].host == _other(away),
               timeout=240)
    rerun = tasks(w)[0]
    _wait_agent(rerun)            # the re-run has cloned (no branch on the remote yet)
    assert not w.remote.has_branch(task.branch)
    # Now the order that broke it: the stale job finishes and pushes orch's branch while
    # the re-run is still at work (held still), and only then the re-run pushes.
    fresh = _job_groups(rerun)
    _signal(fresh, signal.SIGSTOP)
    _signal(stale, signal.SIGCONT)
    wait_for(lambda: w.remote.has_branch(task.branch), 120, "the stale job's push")
    stale_commit = w.remote.commit(task.branch)["sha"]
    _signal(fresh, signal.SIGCONT)
    w.fleet.start(away)

    run_passes(w, all_final(1), timeout=240)
    [t] = tasks(w)
    assert t.status == "succeeded", t.error
    assert t.host == _other(away)
    assert_one_pr_per_issue(w, [n])
    # The branch (and the PR) carry the re-run's commit, not the stale one.
    [pr] = w.github.pulls(w.repo)
    assert pr["commit"] == t.commit
    assert stale_commit != t.commit and w.remote.commit(t.branch)["sha"] == t.commit
    assert_no_orphans(w)


def test_network_flap_job_goes_on_and_logs_follow_resumes_exactly(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Long one", "orch-standin: slow 0.3\norch-standin: turns 18\n"
                            "orch-standin: write flap.txt ok\n")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    [task] = tasks(w)
    follower = w.popen("logs", task.id, "-f", "--raw")
    lines: list[str] = []
    notices: list[str] = []
    readers = [threading.Thread(target=lambda: [lines.append(l.rstrip("\n"))
                                                for l in follower.stdout], daemon=True),
               threading.Thread(target=lambda: [notices.append(l) for l in follower.stderr],
                                daemon=True)]
    for r in readers:
        r.start()
    wait_for(lambda: sum('"type":"user"' in l for l in lines) >= 3, 60, "a few agent turns")

    w.fleet.stop("h1")            # the link drops: every session of the host is cut
    wait_for(lambda: any("lost the link" in l for l in notices), 20, "the follower to notice")
    seen_during_flap = len(lines)
    time.sleep(1.0)               # stay down across one of the follower's retries
    w.fleet.start("h1")

    assert follower.wait(timeout=90) == 0, "".join(notices)
    for r in readers:
        r.join(timeout=10)
    status = read_status(Path(task.workspace) / "status")
    assert status["state"] == "succeeded", status     # the job never noticed
    assert len(lines) > seen_during_flap

    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    [done] = data["finalized"]
    assert done["status"] == "succeeded"
    # What `orch logs -f` printed across the flap is exactly the job's log: no line
    # repeated, none lost (orch's copy of job.log, fetched when it finalized the task).
    [t] = tasks(w)
    copy = Path(t.log_path).read_text().splitlines()
    assert lines == [clean(l) for l in copy]
    assert any("resuming at byte" in l for l in notices)
    assert_one_pr_per_issue(w, [n])
    assert_no_orphans(w)
    assert [j for j in host_jobs(w) if j["state"] == "running"] == []
