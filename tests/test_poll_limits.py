"""What bounds a pass (issue 4): the agent timeout (enforced by the job itself, seen
through `orch poll`), the fleet's daily budget, and the Prometheus textfile a pass writes.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers_poll import (
    FAST_TESTS,
    group_alive,
    poll,
    processes_under,
    read_status,
    run_passes,
    tasks,
    wait_for,
)


def test_job_past_agent_timeout_is_killed_whole_and_failed_timeout(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS, agent={"timeout": "3s"})
    n = w.issue("Never ends", "orch-standin: sleep-forever\n")
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 1, proc.stdout + proc.stderr
    [task] = tasks(w)
    ws = Path(task.workspace)
    wait_for(lambda: (ws / "child.pgid").is_file(), 30, "the agent to start")
    groups = [int(read_status(ws / "status")["pgid"]), int((ws / "child.pgid").read_text())]
    # the stand-in's own child (`sleep 86400`) is part of what must be stopped
    wait_for(lambda: any("sleep 86400" in cmd for _, cmd in processes_under(str(ws))), 10,
             "the agent's child process")

    results = run_passes(w, lambda ts: ts[0].status != "running", timeout=240)
    [t] = tasks(w)
    assert t.status == "failed"
    assert t.error.startswith("timeout:") and "agent.timeout (3s)" in t.error
    assert results[-1]["finalized"][0]["status"] == "failed"
    wait_for(lambda: not any(group_alive(g) for g in groups), 10, "the process groups to die")
    assert processes_under(str(ws)) == [], "nothing of the job is left running"
    assert "orch:failed" in w.github.labels(w.repo, n)
    assert "timeout" in w.github.comments(w.repo, n)[-1]["body"]
    assert w.github.pulls(w.repo) == []


def test_daily_budget_spent_dispatches_nothing_and_says_why(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS, agent={"daily_budget_usd": 0.5})
    w.issue("Expensive", "orch-standin: cost 0.75\norch-standin: write e.txt e\n")
    run_passes(w, lambda ts: ts and ts[0].status == "succeeded", timeout=240)
    assert tasks(w)[0].cost_usd == 0.75
    n = w.issue("Next", "orch-standin: write n.txt n\n")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    assert data["dispatched"] == []
    [skip] = data["skipped"]
    assert skip["repo"] is None and "daily budget spent: $0.75 of" in skip["reason"]
    assert len(tasks(w)) == 1
    text = w.orch("poll")
    assert text.returncode == 0 and "daily budget spent" in text.stdout
    assert "nothing is dispatched until tomorrow" in text.stdout
    assert all(t.issue != n for t in tasks(w))


def test_pass_writes_a_prometheus_textfile_that_parses(make_world):
    from prometheus_client.parser import text_string_to_metric_families
    w = make_world(hosts=2, tests=FAST_TESTS)
    prom = w.root / "orch.prom"
    w.write_config(tests=FAST_TESTS, metrics={"textfile": str(prom)})
    w.issue("Measured", "orch-standin: write m.txt m\n")
    w.issue("Failing", "orch-standin: is-error\n")
    run_passes(w, lambda ts: len(ts) == 2 and all(t.status != "running" for t in ts),
               timeout=240)
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    for name in ("orch_task_execution_seconds", "orch_tasks_completed", "orch_tasks",
                 "orch_agent_current_tasks", "orch_claude_code_errors", "orch_host_up"):
        assert name in families, sorted(families)

    def value(family: str, sample: str, **labels: str) -> float:
        return next(s.value for s in families[family].samples
                    if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))

    assert value("orch_tasks_completed", "orch_tasks_completed_total", status="succeeded") == 1
    assert value("orch_tasks_completed", "orch_tasks_completed_total", status="failed") == 1
    assert value("orch_task_execution_seconds", "orch_task_execution_seconds_count") == 2
    assert value("orch_claude_code_errors", "orch_claude_code_errors_total",
                 error_type="agent_error") == 1
    assert value("orch_host_up", "orch_host_up", host="h1") == 1
    assert {s.labels["agent_id"] for s in families["orch_agent_current_tasks"].samples} == \
        {"h1", "h2"}


def test_reconcile_is_the_backstop_for_a_job_that_overran_its_step(make_world):
    """A job whose own watchdog failed (simulated: its status says the agent step began
    two hours ago, past agent.timeout + margin) is killed by the next pass and failed."""
    w = make_world(hosts=1, tests=FAST_TESTS, agent={"timeout": "30m"})
    n = w.issue("Stuck", "orch-standin: sleep-forever\n")
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 1, proc.stdout + proc.stderr
    [task] = tasks(w)
    ws = Path(task.workspace)
    wait_for(lambda: (ws / "child.pgid").is_file(), 30, "the agent to start")
    status = read_status(ws / "status")
    groups = [int(status["pgid"]), int((ws / "child.pgid").read_text())]
    status["updated_at"] = str(int(status["updated_at"]) - 7200)
    (ws / "status.t").write_text("".join(f"{k}={v}\n" for k, v in status.items()))
    (ws / "status.t").replace(ws / "status")

    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [t] = data["finalized"]
    assert t["status"] == "failed" and t["error"].startswith("timeout: step agent ran over 1860s")
    wait_for(lambda: not any(group_alive(g) for g in groups), 10, "the process groups to die")
    assert processes_under(str(ws)) == []
    assert "orch:failed" in w.github.labels(w.repo, n) and "orch" not in w.github.labels(w.repo, n)
