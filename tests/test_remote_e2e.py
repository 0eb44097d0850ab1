"""The remote side end to end through the real CLI: real sshd hosts, real git, the
GitHub-style server, the stand-in agent (tests/fixtures_world.py)."""

from __future__ import annotations

import json

import yaml

from tests.fixtures_world import STANDIN


def test_bootstrap_checks_the_url_dispatch_clones(make_world):
    """Issue 9 item 6: with no repo_urls, dispatch clones the forge's clone_url; bootstrap
    checks that same URL (it used to derive one from github.url, which here points at the
    API server and serves no git: every host failed bootstrap and was then refused)."""
    w = make_world(hosts=1)
    config = yaml.safe_load(w.config.read_text())
    config.pop("repo_urls")
    w.config.write_text(yaml.safe_dump(config, sort_keys=False))

    r = w.orch("bootstrap", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    [report] = json.loads(r.stdout)
    repo = next(c for c in report["checks"] if c["name"] == "repo")
    assert repo["ok"] and repo["detail"] == f"{w.repo} reachable", repo

    n = w.issue("Add a file", "orch-standin: write a.txt a\n")
    task = w.orch_json("dispatch", f"{w.repo}#{n}", timeout=240)
    assert task["status"] == "succeeded", task["error"]
    assert w.remote.read(task["branch"], "a.txt") == "a\n"


def test_an_agent_printing_spaced_json_works_end_to_end(make_world):
    """Issue 9 item 5: `{"type" : "result" , ...}` from the agent (a wrapper re-serialising
    the stream, say): the job and orch both read the result, the PR and the task carry its
    turns and cost, and `orch logs` renders the events."""
    w = make_world(hosts=1)
    w.fleet.write_inventory(w.inventory, agent=f"{STANDIN} --json-style spaced")
    n = w.issue("Add a greeting", "orch-standin: write hello.txt hi\norch-standin: cost 0.37\n")
    task = w.orch_json("dispatch", f"{w.repo}#{n}", timeout=240)
    assert task["status"] == "succeeded", task["error"]
    shown = w.orch_json("show", task["task_id"])
    assert shown["turns"] == 2 and shown["cost_usd"] == 0.37
    [pr] = w.github.pulls(w.repo)
    assert "0.37" in pr["body"]
    logs = w.orch("logs", task["task_id"])
    assert logs.returncode == 0 and '{"type" :' not in logs.stdout   # rendered, not raw JSON
    assert "hello.txt" in logs.stdout
