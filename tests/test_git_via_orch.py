"""Issue 12 item 3: git.via: orch. Hosts never talk to the forge: orch keeps a central
mirror, sends the base to the host's mirror over the host's SSH connection, takes the
job's branch back from it and pushes it to the forge itself.

The forge's repository is a bare repo reachable only from orch's own process: its URL,
https://forge.invalid/octo/app.git, resolves to the repository's path through git config
that only orch's environment holds (GIT_CONFIG_COUNT/KEY/VALUE: a job starts under
`env -i`, and sshd sessions do not inherit it). A host that tries to reach it gets a DNS
failure, so the same world with git.via: host fails to clone (the control).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.fleet.bootstrap import repo_targets
from orchestrator.forge.mirror import credential_helper
from tests.fixtures_git import git
from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_one_pr_per_issue,
    poll,
    read_status,
    run_passes,
    tasks,
    wait_for,
)

FORGE_URL = "https://forge.invalid/octo/app.git"


def _world(make_world, tmp_path: Path, via: str, *, hosts: int = 1,
           tests: dict | None = None, specialties: dict | None = None, **sections):
    """A world whose forge only orch can reach; its test command dumps the environment."""
    dump = tmp_path / "tests-env.txt"
    w = make_world(hosts=hosts, specialties=specialties)
    w.write_config(repo_urls={w.repo: FORGE_URL}, git={"via": via},
                   tests=tests or {"command": f"env > {dump}; python3 -m pytest -q",
                                   "max_fix_attempts": 2},
                   **sections)
    w.env_extra.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.{w.remote.url}.insteadOf",
                       GIT_CONFIG_VALUE_0=FORGE_URL)
    return w, dump


def _files_holding(root: Path, needle: str) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                if needle.encode() in (Path(dirpath) / name).read_bytes():
                    found.append(str(Path(dirpath) / name))
            except OSError:
                pass
    return found


def test_the_control_a_host_cannot_reach_the_forge(make_world, tmp_path):
    w, _ = _world(make_world, tmp_path, "host")
    n = w.issue("Add greeting", "orch-standin: write greet.txt hi\n")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["status"] == "failed", r.stdout + r.stderr
    assert "git clone failed" in data["error"], data
    assert w.github.pulls(w.repo) == []


def test_via_orch_the_pr_is_made_though_the_host_cannot_reach_the_forge(make_world, tmp_path):
    w, dump = _world(make_world, tmp_path, "orch")
    # The fix loop: the first run plants a failing test, the fix run removes it.
    n = w.issue("Add greeting", "orch-standin: write greet.txt hi\norch-standin: fail-first\n")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "succeeded" and data["tests"] == "passed"
    [pr] = w.github.pulls(w.repo)
    assert pr["head"] == data["branch"]
    assert w.remote.read(data["branch"], "greet.txt") == "hi\n"
    assert "test_orch_standin_planted.py" not in w.remote.files(data["branch"])
    assert w.remote.commit(data["branch"])["sha"] == data["commit"]

    # The host's mirror knows no forge: no remote, and the job's clone's origin is it.
    [host_mirror] = list(Path(w.fleet.workspace_root(w.fleet.names[0])).glob(".mirrors/*.git"))
    assert git("-C", str(host_mirror), "remote") == ""
    assert FORGE_URL not in (host_mirror / "config").read_text()
    # The central mirror holds the branch; the token reached no host file, nor the tests.
    central = list((w.state_dir / "mirrors").glob("*.git"))
    assert len(central) == 1
    assert git("-C", str(central[0]), "rev-parse", data["branch"]).strip() == data["commit"]
    assert _files_holding(w.fleet.root, w.token) == []
    assert w.token not in dump.read_text()

    # A second task on the same host: only what the host lacks is sent (the first PR's
    # branch, now on the forge), and it works the same.
    n2 = w.issue("Add farewell", "orch-standin: write bye.txt bye\n")
    r2 = w.orch("dispatch", f"{w.repo}#{n2}", "--json")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    d2 = json.loads(r2.stdout)
    assert w.remote.read(d2["branch"], "bye.txt") == "bye\n"
    assert len(w.github.pulls(w.repo)) == 2
    assert git("-C", str(host_mirror), "rev-parse", f"refs/heads/{data['branch']}").strip() \
        == data["commit"]


def test_bootstrap_checks_no_repository_via_orch():
    s = Settings()
    s.repos = ["octo/app"]
    s.repo_urls = {"octo/app": FORGE_URL}
    assert [t.url for t in repo_targets(s)] == [FORGE_URL]
    s.git.via = "orch"
    assert repo_targets(s) == []
    assert [t.url for t in repo_targets(s, clone_urls=["/x/y.git"])] == ["/x/y.git"]


@pytest.mark.integration      # runs git
def test_the_credential_helper_answers_with_the_token_from_memory(monkeypatch):
    monkeypatch.setenv("ORCH_TEST_FORGE_TOKEN", "ghs_relaytoken123")
    opts = credential_helper("ORCH_TEST_FORGE_TOKEN")
    assert "ghs_relaytoken123" not in " ".join(opts)       # argv holds the name only
    out = subprocess.run(["git", *opts, "credential", "fill"], capture_output=True, text=True,
                         input="protocol=https\nhost=forge.example.com\n\n",
                         env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "username=x-access-token" in out.stdout and "password=ghs_relaytoken123" in out.stdout
    monkeypatch.delenv("ORCH_TEST_FORGE_TOKEN")
    assert credential_helper("ORCH_TEST_FORGE_TOKEN") == []


def test_via_orch_a_lost_host_s_task_runs_again_elsewhere(make_world, tmp_path):
    """Lost-host requeue: the second host's mirror gets the base from orch too."""
    w, _ = _world(make_world, tmp_path, "orch", hosts=2, tests=FAST_TESTS,
                  specialties={"h1": ["backend"], "h2": ["backend"]},
                  poll={"lost_after": "3s", "max_attempts": 3})
    n = w.issue("Fix the api endpoint", "orch-standin: slow 0.3\norch-standin: turns 15\n"
                "orch-standin: write api.txt ok\n")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [task] = tasks(w)
    dead = task.host
    status = Path(task.workspace) / "status"
    wait_for(lambda: read_status(status).get("step") == "agent"
             and (Path(task.workspace) / "child.pgid").is_file(), 60, "the agent step")
    w.fleet.stop(dead)            # the machine dies: its sshd and the job's groups
    for pgid in (int(read_status(status)["pgid"]),
                 int((Path(task.workspace) / "child.pgid").read_text().strip())):
        os.killpg(pgid, signal.SIGKILL)

    run_passes(w, all_final(1), timeout=240)
    [t] = tasks(w)
    assert t.status == "succeeded" and t.host != dead and t.attempts == 2, t.error
    assert_one_pr_per_issue(w, [n])
    assert w.remote.read(t.branch, "api.txt") == "ok\n"
    w.fleet.start(dead)


def test_via_orch_a_commit_pushed_to_the_branch_meanwhile_fails_the_task_not_the_person(
        make_world, tmp_path):
    w, _ = _world(make_world, tmp_path, "orch", tests=FAST_TESTS)
    n = w.issue("Add greeting", "orch-standin: slow 0.3\norch-standin: turns 10\n"
                "orch-standin: write greet.txt hi\n")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--detach", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    [task] = tasks(w)
    status = Path(task.workspace) / "status"
    wait_for(lambda: read_status(status).get("step") == "agent", 60, "the agent step")
    # A person pushes to orch's branch on the forge while the job works.
    person = tmp_path / "person"
    git("clone", "-q", w.remote.url, str(person))
    (person / "theirs.txt").write_text("theirs\n")
    git("add", "-A", cwd=person)
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", "theirs", cwd=person)
    git("push", "-q", "origin", f"HEAD:refs/heads/{task.branch}", cwd=person)
    theirs = git("rev-parse", "HEAD", cwd=person).strip()

    run_passes(w, all_final(1), timeout=240)
    [t] = tasks(w)
    assert t.status == "failed" and t.error_kind == "push_failed", (t.status, t.error)
    assert "someone pushed to" in t.error
    assert w.remote.commit(task.branch)["sha"] == theirs
    assert w.github.pulls(w.repo) == []
    assert any("someone pushed to" in c["body"] for c in w.github.comments(w.repo, n))
