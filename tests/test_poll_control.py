"""`orch cancel` and `orch retry` on tasks in every status (issue 4): each works, or says
plainly why the transition makes no sense and exits 2 changing nothing. And what a cancel
means to `orch poll`: the job's process groups are stopped, the issue is told and loses
its trigger label, so no pass takes it again until a person labels it again.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from orchestrator.store import Store
from tests.helpers_poll import FAST_TESTS, group_alive, poll, read_status, run_passes, tasks, wait_for


def _relabel(w, n: int, label: str = "orch") -> None:
    """A person puts the trigger label back on the issue (through the API)."""
    req = urllib.request.Request(f"{w.github.url}/repos/{w.repo}/issues/{n}/labels",
                                 data=json.dumps({"labels": [label]}).encode(), method="POST",
                                 headers={"Authorization": f"token {w.token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200


def _task(w, n: int):
    return next(t for t in tasks(w) if t.issue == n)     # newest task of issue n


def _refused(w, verb: str, task_id: str, *words: str) -> None:
    before = Path(w.state_dir, "state.json").read_bytes()
    r = w.orch(verb, task_id)
    assert r.returncode == 2, (verb, r.returncode, r.stdout, r.stderr)
    for word in words:
        assert word in r.stderr, (verb, word, r.stderr)
    assert Path(w.state_dir, "state.json").read_bytes() == before, "a refusal changed state"


def _ok(w, verb: str, task_id: str) -> dict:
    r = w.orch(verb, task_id, "--json")
    assert r.returncode == 0, (verb, r.stdout, r.stderr)
    return json.loads(r.stdout)


def _groups(task) -> list[int]:
    ws = Path(task.workspace)
    st = read_status(ws / "status")
    out = [int(st["pgid"])]
    child = ws / "child.pgid"
    if child.is_file() and child.read_text().strip().isdigit():
        out.append(int(child.read_text().strip()))
    return out


def test_cancel_and_retry_in_every_status(make_world):
    w = make_world(hosts=2, max_tasks=2, tests=FAST_TESTS)
    n_ok = w.issue("Works", "orch-standin: write ok.txt ok\n")
    n_fail = w.issue("Breaks", "orch-standin: is-error\n")
    n_run = w.issue("Runs", "orch-standin: sleep-forever\n")
    n_lost1 = w.issue("Lost one", "orch-standin: sleep-forever\n")
    n_lost2 = w.issue("Lost two", "orch-standin: sleep-forever\n")
    run_passes(w, lambda ts: len(ts) == 5 and _task(w, n_ok).status == "succeeded"
               and _task(w, n_fail).status == "failed"
               and all(_task(w, n).status == "running" for n in (n_run, n_lost1, n_lost2)),
               timeout=240)
    ok, failed, running = _task(w, n_ok), _task(w, n_fail), _task(w, n_run)
    wait_for(lambda: all((Path(t.workspace) / "child.pgid").is_file()
                         for t in (running, _task(w, n_lost1), _task(w, n_lost2))),
             30, "the agents to start")

    # succeeded: neither makes sense
    _refused(w, "cancel", ok.id, f"task {ok.id} is succeeded",
             "only a queued, running or lost task can be cancelled")
    _refused(w, "retry", ok.id, "succeeded", "nothing to retry", "label the issue")

    # failed: cannot be cancelled; retry queues it
    _refused(w, "cancel", failed.id, f"task {failed.id} is failed")
    assert _ok(w, "retry", failed.id)["status"] == "queued"
    # queued: retry makes no sense; cancel works
    _refused(w, "retry", failed.id, f"task {failed.id} is queued",
             "only a failed, cancelled or lost task can be queued again")
    assert _ok(w, "cancel", failed.id)["status"] == "cancelled"
    # cancelled: cancel again makes no sense; retry queues it
    _refused(w, "cancel", failed.id, f"task {failed.id} is cancelled")
    assert _ok(w, "retry", failed.id)["status"] == "queued"
    assert _ok(w, "cancel", failed.id)["status"] == "cancelled"   # leave it be

    # running: retry makes no sense; cancel stops the job's whole process groups
    _refused(w, "retry", running.id, f"task {running.id} is running", "orch cancel")
    groups = _groups(running)
    assert all(group_alive(g) for g in groups)
    c = _ok(w, "cancel", running.id)
    assert c["status"] == "cancelled" and "process group was stopped" in c["error"]
    wait_for(lambda: not any(group_alive(g) for g in groups), 10, "the job to die")
    assert read_status(Path(running.workspace) / "status")["state"] == "cancelled"
    labels = w.github.labels(w.repo, n_run)
    assert "orch" not in labels and "orch:running" not in labels
    assert "cancelled" in w.github.comments(w.repo, n_run)[-1]["body"]
    assert _task(w, n_run).finalized

    # lost (a pass that died between marking a task lost and queueing it again): both
    # work; the stale jobs are killed by the next pass.
    store = Store(w.state_dir)
    lost1, lost2 = _task(w, n_lost1), _task(w, n_lost2)
    stale = {t.id: _groups(t) for t in (lost1, lost2)}
    for t in (lost1, lost2):
        store.mark_lost(t.id, "simulated: host unreachable")
    assert _ok(w, "cancel", lost1.id)["status"] == "cancelled"
    assert _ok(w, "retry", lost2.id)["status"] == "queued"
    assert all(group_alive(g) for gs in stale.values() for g in gs), "not killed yet"

    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(data["killed"]) == sorted(f"{t.host}:{t.id}" for t in (lost1, lost2))
    wait_for(lambda: not any(group_alive(g) for gs in stale.values() for g in gs), 10,
             "the stale jobs to die")
    # the retried lost task runs again; the cancelled issues are not taken again
    assert [d["task_id"] for d in data["dispatched"]] == [lost2.id]
    assert {t.issue for t in tasks(w) if t.status == "running"} == {n_lost2}
    assert len(tasks(w)) == 5

    # A person labels the cancelled issue again: it is taken again (a new task), once the
    # label can be told apart from the one orch removed.
    _relabel(w, n_run)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _task(w, n_run).id == running.id:
        proc, data = poll(w)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    again = _task(w, n_run)
    assert again.id != running.id and again.status == "running"
    assert [t.status for t in tasks(w) if t.issue == n_run] == ["running", "cancelled"]
    for t in (again, _task(w, n_lost2)):
        assert _ok(w, "cancel", t.id)["status"] == "cancelled"
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == []
    assert all(t.status in ("succeeded", "cancelled") for t in tasks(w))
