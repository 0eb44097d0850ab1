"""What one `orch dispatch` costs, counted on real parts (issue 10 item 3): the SSH
sessions the host's sshd opened, the requests the GitHub-style server answered, and the
state writes; and that each cut keeps what it replaced (the log copy, the comment, the
labels, the PR).

The dispatch is the real CLI as a subprocess (tests/fixtures_world.py) on one sshd host,
the stand-in agent, tests `true`. The figures are upper bounds: a later change that
brings a round trip or a request back fails here, with the count in the message.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.app import App
from orchestrator.lifecycle.dispatch import dispatch
from tests.ghserver import Fault
from tests.helpers_job import gone_soon

REPO = "octo/app"


def _sessions(host) -> int:
    """Sessions sshd started (LogLevel VERBOSE): one per command orch ran on the host."""
    return len(re.findall(r"Starting session: ", host.log_path.read_text(errors="replace")))


@pytest.fixture
def one_host(make_world):
    w = make_world(hosts=1, tests={"command": "true", "max_fix_attempts": 0})
    return w, w.fleet.host(w.fleet.names[0])


def _dispatch(w, host, title: str, body: str = "orch-standin: write a.txt a\n"):
    n = w.issue(title, body)
    sessions, requests = _sessions(host), len(w.github.requests_matching())
    out = w.orch_json("dispatch", f"{REPO}#{n}")
    # sshd logs a session as it starts, before the command's answer reaches orch.
    ssh = _sessions(host) - sessions
    gh = Counter(f"{r.method} {re.sub(r'/[0-9]+', '/N', r.path)}"
                 for r in w.github.requests_matching()[requests:])
    return n, w.orch_json("show", out["task_id"]), ssh, gh


def test_a_dispatch_reads_the_log_once_while_following(one_host):
    w, host = one_host
    _n, task, ssh, _gh = _dispatch(w, host, "Count the round trips")
    assert task["status"] == "succeeded", task
    # probe, start, follow, the final status, the workspace removal: the log the follow
    # delivered from byte 0 is the copy orch keeps (no second read of job.log).
    assert ssh <= 5, f"{ssh} SSH sessions for one dispatch"
    [copy] = (w.state_dir / "logs").glob(f"{task['id']}*.log")
    text = copy.read_text()
    assert text.startswith("::orch:: start ") and "::orch:: done succeeded" in text
    assert "a.txt" in text                       # the agent's own lines are in it
    assert gone_soon(task["workspace"])


def test_a_dispatch_deletes_only_labels_the_issue_has(one_host):
    w, host = one_host
    n, task, _ssh, gh = _dispatch(w, host, "Count the requests")
    assert task["status"] == "succeeded", task
    deletes = {k: v for k, v in gh.items() if k.startswith("DELETE ")}
    # Running: orch:done and orch:failed are not on the issue; at the end orch:running
    # and the trigger label are, orch:failed is not.
    assert deletes == {f"DELETE /repos/{REPO}/issues/N/labels/orch%3Arunning": 1,
                       f"DELETE /repos/{REPO}/issues/N/labels/orch": 1}, deletes
    assert w.github.labels(REPO, n) == ["orch:done"]
    [comment] = w.github.comments(REPO, n)
    assert task["pr_url"] and task["pr_url"] in comment["body"]



def test_a_dispatch_writes_the_state_file_five_times(one_host, monkeypatch):
    """reserve (create + start: one write), the job's process group, the running
    comment's id, finalize's claim with what the job reported, and the outcome. The
    dispatch runs in this process here, so that the hot file's writes can be counted
    (each one still made: the count wraps the real write)."""
    from orchestrator.store import hotfile
    w, _host = one_host
    writes: list[int] = []
    real = hotfile.HotStorage.write_file

    def counted(self, data):
        writes.append(1)
        return real(self, data)
    monkeypatch.setattr(hotfile.HotStorage, "write_file", counted)
    app = _app(w, monkeypatch)
    n = w.issue("Count the writes", "orch-standin: write a.txt a\n")
    out = asyncio.run(dispatch(app, app.forge("github"), REPO, n))
    task = out.task
    assert task is not None and task.status == "succeeded", task
    assert task.pr_url and task.cost_usd and task.turns and task.commit
    assert task.finalized and task.claimed_by is None and task.comment_id
    assert app.store.get(task.id) == task
    assert len(writes) <= 5, f"{len(writes)} state writes for one dispatch"


def _app(w, monkeypatch) -> App:
    """The world's orch, in this process (its environment: the token, no ORCH_*)."""
    for key, value in w.env().items():
        monkeypatch.setenv(key, value)
    return App(config_path=str(w.config), inventory_path=str(w.inventory),
               state_dir=str(w.state_dir))


def test_the_log_is_followed_while_the_issue_hears_running(one_host, monkeypatch):
    """The running comment (a slow forge here: its POST answers after 3 s) does not hold
    up the follow; finalize still edits that one comment."""
    w, _host = one_host
    app = _app(w, monkeypatch)
    n = w.issue("Follow while telling", "orch-standin: write a.txt a\n")
    w.github.inject(Fault(delay=3.0, method="POST", path=f"/issues/{n}/comments"))
    comments_at_first_line: list[int] = []

    def on_line(_line: str) -> None:
        if not comments_at_first_line:
            comments_at_first_line.append(len(w.github.comments(REPO, n)))
    out = asyncio.run(dispatch(app, app.forge("github"), REPO, n, on_line=on_line))
    assert comments_at_first_line == [0], "the follow waited for the running comment"
    task = out.task
    assert task is not None and task.status == "succeeded", task
    [comment] = w.github.comments(REPO, n)
    assert task.comment_id == comment["id"] and task.pr_url in comment["body"]


def test_a_dispatch_makes_at_most_12_github_requests(one_host):
    """Read: the repository, the issue, who wrote what (GraphQL), the author's permission
    (orch's own login only when the issue has comments to tell apart). Running: the
    comment (the issue's last comment is known from the read: no listing), the label list
    (once), the label. Done: the PR (looked up only when GitHub says it exists), the
    comment edited, the label, two labels off. The hand-written baseline: 4."""
    w, host = one_host
    _dispatch(w, host, "Warm up: the labels are created on first use")
    _n, task, _ssh, gh = _dispatch(w, host, "Count every request")
    assert task["status"] == "succeeded", task
    assert f"GET /repos/{REPO}/issues/N/comments" not in gh, gh
    assert "GET /user" not in gh, gh
    assert f"GET /repos/{REPO}/pulls" not in gh, gh
    assert sum(gh.values()) <= 12, gh


def test_an_issue_with_comments_still_leaves_orchs_own_out(make_world):
    """With comments to tell apart, orch asks who it is, and a comment by its own account
    (even without orch's marker) never reaches the prompt; the author's does."""
    w = make_world(hosts=1, tests={"command": "true", "max_fix_attempts": 0},
                   workspace={"keep_on_success": True})
    n = w.issue("Comments to tell apart", "orch-standin: write a.txt a\n")
    w.github.add_comment(REPO, n, "a note by orch's own account", user=w.github.user)
    w.github.add_comment(REPO, n, "please name it a.txt", user="alice")
    requests = len(w.github.requests_matching())
    out = w.orch_json("dispatch", f"{REPO}#{n}")
    gh = [f"{r.method} {r.path}" for r in w.github.requests_matching()[requests:]]
    assert "GET /user" in gh, gh
    task = w.orch_json("show", out["task_id"])
    assert task["status"] == "succeeded", task
    prompt = (Path(task["workspace"]) / "prompt.md").read_text()
    assert "please name it a.txt" in prompt and "by @alice" in prompt
    assert "orch's own account" not in prompt
