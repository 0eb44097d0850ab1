"""`orch dispatch` end to end: real sshd hosts, real git, PyGithub against the test
GitHub server, the stand-in agent on the hosts, the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers_job import gone_soon


def _task(world, task_id):
    return world.orch_json("show", task_id)


def test_issue_becomes_one_pr_with_comment_labels_and_task(make_world):
    w = make_world(hosts=3, specialties={"h1": ["backend"], "h2": ["frontend"], "h3": ["testing"]})
    n = w.issue("Add a hello file for the UI page",
                "The frontend needs it.\n\norch-standin: write hello.txt 'hello from orch'\n")
    r = w.orch("dispatch", f"{w.repo}#{n}")
    assert r.returncode == 0, r.stdout + r.stderr
    # The live log was rendered while following: the agent's text and the final result.
    assert "hello.txt" in r.stdout
    assert "succeeded" in r.stdout

    [task] = w.tasks()
    assert task["status"] == "succeeded"
    assert task["host"] == "h2" and task["specialty"] == "frontend"
    assert task["turns"] and task["turns"] > 0
    assert task["cost_usd"] is not None and task["cost_usd"] > 0
    branch = task["branch"]
    assert branch.startswith(f"orch/{n}-add-a-hello-file")

    pulls = w.github.pulls(w.repo)
    assert len(pulls) == 1
    pr = pulls[0]
    assert pr["head"]["ref"] == branch if isinstance(pr["head"], dict) else pr["head"] == branch
    assert f"Closes #{n}" in pr["body"]
    assert task["pr_url"] and str(pr["number"]) in task["pr_url"]
    assert w.remote.read(branch, "hello.txt") == "hello from orch\n"
    commit = w.remote.commit(branch)
    assert commit["author_email"] == "orch-bot@example.com"

    labels = w.github.labels(w.repo, n)
    assert "orch:done" in labels and "orch:running" not in labels
    comments = w.github.comments(w.repo, n)
    assert len(comments) == 1, "one comment, updated in place"
    assert pr["html_url"] in comments[0]["body"]

    # The workspace is removed after success (on the host, in the background); orch kept
    # its own copy of the log.
    assert gone_soon(task["workspace"])
    logs = w.orch("logs", task["id"])
    assert logs.returncode == 0 and "hello.txt" in logs.stdout
    [copy] = (w.state_dir / "logs").glob(f"{task['id']}*.log")
    assert copy.stat().st_mode & 0o077 == 0, "the log copy is private, like state.json"


def test_dry_run_explains_and_changes_nothing(make_world):
    w = make_world(hosts=2, specialties={"h1": ["backend"], "h2": ["frontend"]})
    w.fleet.stop("h2")
    n = w.issue("Fix the react component", "css is off")
    plan = w.orch_json("dispatch", f"{w.repo}#{n}", "--dry-run")
    assert plan["specialty"] == "frontend"
    verdicts = {h["name"]: h for h in plan["hosts"]}
    assert plan["host"] is None
    assert "unreachable" in verdicts["h2"]["reason"]
    assert "lacks specialty" in verdicts["h1"]["reason"]
    assert w.tasks() == []
    assert w.github.pulls(w.repo) == []
    r = w.orch("dispatch", f"{w.repo}#{n}")
    assert r.returncode == 1
    assert "no capable host" in r.stderr


@pytest.mark.parametrize("case, expect", [
    ("closed", "closed"), ("pr", "pull request"), ("missing", "not found"), ("readonly", "mallory"),
])
def test_refusals_exit_2_and_change_nothing(make_world, case, expect):
    w = make_world(hosts=1)
    if case == "closed":
        n = w.github.add_issue(w.repo, "old", state="closed", user="alice")
    elif case == "pr":
        n = w.github.add_issue(w.repo, "a PR", pull_request=True, user="alice")
    elif case == "missing":
        n = 999
    else:
        n = w.issue("please run this", "orch-standin: write x.txt x", user="mallory")
    r = w.orch("dispatch", f"{w.repo}#{n}")
    assert r.returncode == 2, r.stdout + r.stderr
    assert expect in r.stderr.lower()
    assert w.tasks() == []
    assert w.github.pulls(w.repo) == []


def test_fix_loop_then_success(make_world):
    w = make_world(hosts=1)
    n = w.issue("Add greeting", "orch-standin: write greet.txt hi\norch-standin: fail-first\n")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert data["status"] == "succeeded" and data["tests"] == "passed"
    assert len(w.github.pulls(w.repo)) == 1
    assert "test_orch_standin_planted.py" not in w.remote.files(data["branch"])


def test_never_fixed_fails_without_pr_and_says_why(make_world):
    w = make_world(hosts=1)
    n = w.issue("Add greeting", "orch-standin: write greet.txt hi\norch-standin: never-fix\n")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 1
    assert data["status"] == "failed" and "test" in data["error"].lower()
    assert w.github.pulls(w.repo) == []
    assert "orch:failed" in w.github.labels(w.repo, n)
    [comment] = w.github.comments(w.repo, n)
    assert "could not finish" in comment["body"] and "what the log says" in comment["body"]
    assert not w.remote.has_branch(data["branch"])
    assert Path(data["workspace"]).is_dir(), "kept after failure"


def test_hostile_issue_runs_nothing_and_token_never_leaks(make_world, tmp_path):
    w = make_world(hosts=1)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("x")
    pwned = Path("/tmp/pwned-orch-e2e")
    pwned.unlink(missing_ok=True)
    title = f'$(touch {pwned}); rm -rf {canary} "\'`touch {pwned}`'
    body = ("orch-standin: write ok.txt fine\n"
            + f"`touch {pwned}` $(touch {pwned}) ; touch {pwned} | & > < \\ ' \" \n"
            + "ünïcødé ✓ 🚀 \x1b[31m\n" + ("$(x) `y` 'z' \"w\" " * 12000))
    assert len(body) > 200_000
    n = w.issue(title, body)
    proc = w.popen("dispatch", f"{w.repo}#{n}", "--json")
    seen_argv: list[str] = []
    while proc.poll() is None:      # watch every process's argv on the host while it runs
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        seen_argv.append(out)
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout + stderr
    data = json.loads(stdout)
    assert not pwned.exists()
    assert (canary / "keep").exists()
    branch = data["branch"]
    assert subprocess.run(["git", "check-ref-format", "--branch", branch]).returncode == 0
    assert w.remote.read(branch, "ok.txt") == "fine\n"
    token = w.token
    assert not any(token in argv for argv in seen_argv)
    assert token not in stdout and token not in stderr
    state = (w.state_dir / "state.json").read_text()
    assert token not in state
    for log in (w.state_dir / "logs").glob("*.log"):
        assert token not in log.read_text()
    assert token not in w.orch("logs", data["task_id"]).stdout


def test_concurrent_dispatch_of_one_issue_gives_one_task_one_pr(make_world):
    w = make_world(hosts=2)
    n = w.issue("Add a file", "orch-standin: write a.txt a\n")
    procs = [w.popen("dispatch", f"{w.repo}#{n}", "--json") for _ in range(2)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, _, err in results if rc == 2)
    assert "already has a live task" in refused
    assert len(w.tasks()) == 1
    assert len(w.github.pulls(w.repo)) == 1


def test_detach_then_logs_follow_and_cancel(make_world):
    w = make_world(hosts=1)
    n = w.issue("Slow one", "orch-standin: slow 0.5\norch-standin: turns 4\n"
                            "orch-standin: write s.txt s\n")
    started = w.orch_json("dispatch", f"{w.repo}#{n}", "--detach")
    assert started["status"] == "running"
    follow = w.orch("logs", started["task_id"], "-f")
    assert follow.returncode == 0
    assert "s.txt" in follow.stdout
    r = w.orch("poll", "--json")
    assert r.returncode == 0, r.stderr
    done = _task(w, started["task_id"])
    assert done["status"] == "succeeded"
    assert len(w.github.pulls(w.repo)) == 1

    n2 = w.issue("Forever", "orch-standin: sleep-forever\n")
    t2 = w.orch_json("dispatch", f"{w.repo}#{n2}", "--detach")
    time.sleep(1.0)
    c = w.orch_json("cancel", t2["task_id"])
    assert c["status"] == "cancelled"
    ws = t2["workspace"]
    status = Path(ws, "status").read_text()
    pgid = int(next(l.split("=", 1)[1] for l in status.splitlines() if l.startswith("pgid=")))
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    again = w.orch("cancel", t2["task_id"])
    assert again.returncode == 2 and "cancelled" in again.stderr


def test_host_failing_bootstrap_is_not_chosen_until_it_passes(make_world):
    from tests.fixtures_world import STANDIN
    w = make_world(hosts=2)
    broken = {"h1": {"agent": "/nonexistent/claude"}}
    w.fleet.write_inventory(w.inventory, agent=STANDIN, extra=broken)
    r = w.orch("bootstrap", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    reports = {h["host"]: h for h in json.loads(r.stdout)}
    assert reports["h1"]["ok"] is False and reports["h2"]["ok"] is True
    n = w.issue("Anything", "orch-standin: write a.txt a\n")
    plan = w.orch_json("dispatch", f"{w.repo}#{n}", "--dry-run", "--host", "h1")
    assert plan["host"] is None
    [h1] = [h for h in plan["hosts"] if h["name"] == "h1"]
    assert "bootstrap failed" in h1["reason"] and "agent" in h1["reason"]
    assert w.orch_json("dispatch", f"{w.repo}#{n}", "--dry-run")["host"] == "h2"

    w.fleet.write_inventory(w.inventory, agent=STANDIN)
    assert w.orch("bootstrap", "h1").returncode == 0
    assert w.orch_json("dispatch", f"{w.repo}#{n}", "--dry-run", "--host", "h1")["host"] == "h1"
