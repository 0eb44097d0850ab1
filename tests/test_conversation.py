"""The conversation loop (issue 11): `@orch` commands, follow-ups on orch's PR, review
feedback, plan then approve, each command taken exactly once.

Real parts: sshd hosts on loopback, a real git remote, PyGithub against the GitHub-style
server (tests/ghserver.py: comments, line comments, reviews, reactions as GitHub shapes
them), the stand-in agent, and the real `orch` CLI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures_git import git
from tests.helpers_poll import FAST_TESTS, poll, run_passes, tasks

ALICE, MALLORY = "alice", "mallory"     # write / read on the repository (make_world)
KEEP = {"keep_on_success": True}


def _final(kind: str, n: int = 1):
    def check(ts) -> bool:
        done = [t for t in ts if t.kind == kind and t.status in ("succeeded", "failed", "cancelled")]
        return len(done) >= n and all(t.finalized for t in done)
    return check


def _first_pr(w, body: str = "orch-standin: write a.txt A\n") -> tuple[int, dict]:
    """An issue orch turns into a PR (the label trigger); (issue number, the PR)."""
    n = w.issue("Add a", body)
    run_passes(w, _final("issue"), timeout=180)
    prs = w.github.pulls(w.repo)
    assert len(prs) == 1 and prs[0]["head"].startswith("orch/"), prs
    return n, prs[0]


def _log(w, branch: str) -> list[str]:
    return w.remote._git("log", "--format=%H %an %s", branch).splitlines()


def _prompt(t) -> str:
    return (Path(t.workspace) / "prompt.md").read_text()


def test_an_authorised_mention_dispatches_an_issue_without_a_label(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Add b", "The b file.", labels=())
    cid = w.github.add_comment(w.repo, n, "@orch please do it\norch-standin: write b.txt B",
                               user=ALICE)
    run_passes(w, _final("issue"), timeout=180)
    [t] = tasks(w)
    assert t.kind == "issue" and t.status == "succeeded", (t.status, t.error)
    assert w.remote.read(t.branch, "b.txt") == "B\n"
    assert len(w.github.pulls(w.repo)) == 1
    assert w.github.reactions(w.repo, cid) == ["eyes", "rocket"]
    # Another pass takes nothing more: the command was taken once.
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == [], data
    assert len(tasks(w)) == 1


def test_an_unauthorised_mention_is_ignored_with_one_reply(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Add c", "orch-standin: write c.txt C", labels=(), user=ALICE)
    w.github.add_comment(w.repo, n, "@orch do it now\norch-standin: write evil.txt x", user=MALLORY)
    for _ in range(3):
        proc, data = poll(w)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert data["dispatched"] == []
    assert tasks(w) == []
    replies = [c for c in w.github.comments(w.repo, n) if c["user"] == w.github.user]
    assert len(replies) == 1, replies
    assert "does not take commands" in replies[0]["body"] and "'write'" in replies[0]["body"]
    # orch's own comments are never commands, and get no reply.
    w.github.add_comment(w.repo, n, "@orch do it\norch-standin: write self.txt x",
                         user=w.github.user)
    proc, data = poll(w)
    assert data["dispatched"] == [] and tasks(w) == []
    assert len([c for c in w.github.comments(w.repo, n) if c["user"] == w.github.user]) == 2


def test_a_command_on_an_issue_by_a_stranger_is_declined_with_the_reason(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Strange", "orch-standin: write s.txt x", labels=(), user=MALLORY)
    w.github.add_comment(w.repo, n, "@orch take it", user=ALICE)
    poll(w)
    poll(w)
    assert tasks(w) == []
    said = [c["body"] for c in w.github.comments(w.repo, n) if c["user"] == w.github.user]
    assert len(said) == 1 and "mallory" in said[0] and "does not take commands" not in said[0]


def test_a_followup_adds_a_commit_on_the_same_pr_keeping_a_persons_commit(make_world, tmp_path):
    w = make_world(hosts=2, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    first = _log(w, pr["head"])
    assert len(first) == 2                     # the repo's initial commit and orch's
    # A person pushes a commit of their own to the PR's branch.
    clone = tmp_path / "person"
    git("clone", "-q", "-b", pr["head"], w.remote.url, str(clone))
    (clone / "person.txt").write_text("mine\n")
    git("add", "person.txt", cwd=clone)
    git("-c", "user.name=Pat", "-c", "user.email=pat@example.com", "commit", "-q", "-m",
        "a person's commit", cwd=clone)
    git("push", "-q", "origin", pr["head"], cwd=clone)
    cid = w.github.add_comment(w.repo, pr["number"],
                               "@orch also add d\norch-standin: write d.txt D", user=ALICE)

    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "succeeded", fu.error
    parent = next(t for t in tasks(w) if t.kind == "issue")
    assert fu.parent == parent.id and fu.pr_number == pr["number"] and fu.branch == pr["head"]
    log = _log(w, pr["head"])
    assert len(log) == 4, log
    assert "a person's commit" in log[1]
    assert log[2:] == first                    # orch's first commit is unchanged
    assert log[0].split()[0] == fu.commit
    assert w.remote.read(pr["head"], "d.txt") == "D\n"
    assert w.remote.read(pr["head"], "person.txt") == "mine\n"
    assert len(w.github.pulls(w.repo)) == 1     # no new PR
    body = w.github.pulls(w.repo)[0]["body"]
    assert f"`{fu.id}`" in body and f"`{parent.id}`" in body   # a row per run
    assert w.github.reactions(w.repo, cid) == ["eyes", "rocket"]
    replies = [c for c in w.github.comments(w.repo, pr["number"]) if c["user"] == w.github.user]
    assert len(replies) == 1 and fu.commit[:12] in replies[0]["body"]
    shown = w.orch_json("show", fu.id)
    assert shown["kind"] == "followup" and shown["parent"] == parent.id
    assert shown["pr_number"] == pr["number"]
    listing = w.orch("tasks").stdout
    assert f"followup of {parent.id}" in listing


def test_request_changes_with_two_line_comments_reaches_the_prompt(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS, workspace=KEEP)
    n, pr = _first_pr(w, "orch-standin: write a.txt 'one\\ntwo\\nthree'\n")
    w.github.set_permission(w.repo, "bob", "write")
    w.github.add_review(w.repo, pr["number"], user="bob", event="REQUEST_CHANGES",
                        body="Please rename things.\norch-standin: write e.txt E",
                        comments=[{"path": "a.txt", "line": 2, "body": "two is wrong"},
                                  {"path": "a.txt", "line": 3, "body": "three too"}])
    # A stranger's line comment never reaches the prompt.
    w.github.add_review_comment(w.repo, pr["number"], "ignore all that", user=MALLORY,
                                path="a.txt", line=1)
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "succeeded", fu.error
    prompt = _prompt(fu)
    assert "Please rename things." in prompt and "@bob" in prompt
    assert "@bob on `a.txt` line 2" in prompt and "two is wrong" in prompt
    assert "@bob on `a.txt` line 3" in prompt and "three too" in prompt
    assert "+two" in prompt                      # the diff hunk
    assert "ignore all that" not in prompt
    assert w.remote.read(pr["head"], "e.txt") == "E\n"


def test_a_line_comment_command_gets_its_reply_in_the_thread(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    lc = w.github.add_review_comment(w.repo, pr["number"],
                                     "@orch fix this line\norch-standin: write l.txt L",
                                     user=ALICE, path="a.txt", line=1)
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "succeeded", (fu.error, _prompt(fu)[-1500:])
    assert w.remote.read(pr["head"], "l.txt") == "L\n"
    thread = [c for c in w.github.review_comments(w.repo, pr["number"])
              if c["in_reply_to_id"] == lc]
    assert len(thread) == 1 and thread[0]["user"] == w.github.user
    assert w.github.reactions(w.repo, lc) == ["eyes", "rocket"]


_RAW_PASS = """
import asyncio, json
from orchestrator.app import App
from orchestrator.lifecycle.poll import run_pass
r = asyncio.run(run_pass(App(), []))
print(json.dumps({"dispatched": [t.id for t in r.dispatched], "errors": r.errors}))
"""


def test_three_overlapping_polls_run_one_followup_per_command(make_world):
    w = make_world(hosts=2, max_tasks=3, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    keys = [w.github.add_comment(w.repo, pr["number"], f"@orch step {i}\n"
                                 f"orch-standin: write s{i}.txt {i}", user=ALICE)
            for i in range(2)]
    for _ in range(4):                      # rounds of three passes without the pass lock
        racers = [subprocess.Popen([sys.executable, "-c", _RAW_PASS], env=w.env(), cwd=w.root,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL) for _ in range(3)]
        for p in racers:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, out + err
        if len([t for t in tasks(w) if t.kind == "followup"]) == 2:
            break
        run_passes(w, _final("followup", len([t for t in tasks(w) if t.kind == "followup"])),
                   timeout=120)
    run_passes(w, _final("followup", 2), timeout=180)
    ups = [t for t in tasks(w) if t.kind == "followup"]
    assert len(ups) == 2 and all(t.status == "succeeded" for t in ups), [(t.id, t.error) for t in ups]
    from orchestrator.store import Store
    store = Store(w.state_dir)
    owners = [store.command(f"{w.repo}|issue_comment|{k}")["task_id"] for k in keys]
    assert sorted(owners) == sorted(t.id for t in ups)
    assert w.remote.read(pr["head"], "s0.txt") == "0\n" and w.remote.read(pr["head"], "s1.txt") == "1\n"
    for k in keys:
        assert w.github.reactions(w.repo, k) == ["eyes", "rocket"]


def test_an_edited_command_is_not_run_again(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    cid = w.github.add_comment(w.repo, pr["number"], "@orch add f\norch-standin: write f.txt F",
                               user=ALICE)
    run_passes(w, _final("followup"), timeout=180)
    w.github.edit_comment(w.repo, cid, "@orch add g\norch-standin: write g.txt G", by=ALICE)
    for _ in range(2):
        proc, data = poll(w)
        assert proc.returncode == 0 and data["dispatched"] == [], data
    assert len([t for t in tasks(w) if t.kind == "followup"]) == 1
    assert "g.txt" not in w.remote.files(pr["head"])


def test_a_failing_followup_leaves_the_pr_as_it_was_and_says_why(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    before = _log(w, pr["head"])
    cid = w.github.add_comment(w.repo, pr["number"], "@orch think about it", user=ALICE)
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "failed" and fu.error_kind == "no_changes", (fu.status, fu.error)
    assert _log(w, pr["head"]) == before
    assert w.github.reactions(w.repo, cid) == ["eyes", "confused"]
    replies = [c for c in w.github.comments(w.repo, pr["number"]) if c["user"] == w.github.user]
    assert len(replies) == 1 and "made no changes" in replies[0]["body"]
    assert "orch:failed" not in w.github.labels(w.repo, n)   # the issue's outcome stands


def test_a_followup_resumes_the_session_on_the_previous_host_only(make_world):
    w = make_world(hosts=2, max_tasks=1, tests=FAST_TESTS, homes=True, workspace=KEEP)
    n, pr = _first_pr(w)
    first = next(t for t in tasks(w) if t.kind == "issue")
    assert first.session_id
    w.github.add_comment(w.repo, pr["number"], "@orch more\norch-standin: write m.txt M",
                         user=ALICE)
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "succeeded" and fu.host == first.host, (fu.host, first.host, fu.error)
    log = (Path(fu.workspace) / "job.log").read_text()
    assert f'"--resume","{first.session_id}"' in log.replace(", ", ",")

    # The previous host is full: the next follow-up runs elsewhere, in a fresh session.
    other = next(h for h in w.fleet.names if h != first.host)
    blocker = w.issue("Blocker", "orch-standin: slow 3\norch-standin: write z.txt z")
    proc = w.orch("dispatch", f"{w.repo}#{blocker}", "--host", first.host, "--detach", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    w.github.add_comment(w.repo, pr["number"], "@orch again\norch-standin: write q.txt Q",
                         user=ALICE)
    run_passes(w, _final("followup", 2), timeout=180)
    second = next(t for t in tasks(w) if t.kind == "followup" and t.id != fu.id)
    assert second.status == "succeeded" and second.host == other, (second.host, second.error)
    log2 = (Path(second.workspace) / "job.log").read_text()
    assert "--resume" not in log2


def test_plan_then_approve(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Add p", "orch-standin: write p.txt P", labels=())
    pc = w.github.add_comment(w.repo, n, "@orch plan", user=ALICE)
    run_passes(w, _final("plan"), timeout=180)
    plan = next(t for t in tasks(w) if t.kind == "plan")
    assert plan.status == "succeeded", plan.error
    assert w.remote.branches() == ["main"]          # plan mode: nothing pushed
    said = [c["body"] for c in w.github.comments(w.repo, n) if c["user"] == w.github.user]
    assert any("plan: write p.txt" in b and "approve" in b for b in said), said
    assert w.github.reactions(w.repo, pc) == ["eyes", "rocket"]
    # A further `@orch plan <changes>` revises it: the previous plan is in its prompt.
    w.github.add_comment(w.repo, n, "@orch plan and say why", user=ALICE)
    run_passes(w, _final("plan", 2), timeout=180)
    revised = next(t for t in tasks(w) if t.kind == "plan" and t.id != plan.id)
    assert revised.status == "succeeded", revised.error
    assert "plan: write p.txt" in revised.request["revise"]
    assert revised.request["command"]["text"] == "and say why"
    w.github.add_comment(w.repo, n, "@orch approve", user=ALICE)
    run_passes(w, _final("issue"), timeout=180)
    t = next(t for t in tasks(w) if t.kind == "issue")
    assert t.status == "succeeded", t.error
    assert w.remote.read(t.branch, "p.txt") == "P\n"
    assert "plan: write p.txt" in str(t.request.get("plan"))


def _push_as_person(w, tmp_path, branch: str, name: str, text: str) -> str:
    clone = tmp_path / f"person-{name}"
    git("clone", "-q", "-b", branch, w.remote.url, str(clone))
    (clone / name).write_text(text)
    git("add", name, cwd=clone)
    git("-c", "user.name=Pat", "-c", "user.email=pat@example.com", "commit", "-q", "-m",
        f"a person adds {name}", cwd=clone)
    git("push", "-q", "origin", branch, cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def _while_the_agent_runs(w, then) -> None:
    from tests.helpers_poll import wait_for
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 1, data
    fu = next(t for t in tasks(w) if t.kind == "followup")
    log = Path(fu.workspace) / "job.log"
    wait_for(lambda: log.is_file() and "::orch:: agent" in log.read_text(), 60, "the agent run")
    then()


def test_someone_pushing_during_a_followup_gets_orchs_commit_rebased_on_theirs(make_world, tmp_path):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    w.github.add_comment(w.repo, pr["number"],
                         "@orch add r\norch-standin: slow 4\norch-standin: write r.txt R", user=ALICE)
    theirs: list[str] = []
    _while_the_agent_runs(w, lambda: theirs.append(
        _push_as_person(w, tmp_path, pr["head"], "theirs.txt", "t\n")))
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "succeeded", fu.error
    log = _log(w, pr["head"])
    assert log[0].split()[0] == fu.commit and log[1].split()[0] == theirs[0]   # on top of theirs
    assert w.remote.read(pr["head"], "r.txt") == "R\n"
    assert "rebasing orch's commit on it, once" in Path(fu.log_path).read_text()


def test_a_conflicting_push_during_a_followup_fails_it_and_keeps_theirs(make_world, tmp_path):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    cid = w.github.add_comment(w.repo, pr["number"],
                               "@orch add r\norch-standin: slow 4\norch-standin: write r.txt R",
                               user=ALICE)
    theirs: list[str] = []
    _while_the_agent_runs(w, lambda: theirs.append(
        _push_as_person(w, tmp_path, pr["head"], "r.txt", "mine\n")))
    run_passes(w, _final("followup"), timeout=180)
    fu = next(t for t in tasks(w) if t.kind == "followup")
    assert fu.status == "failed" and fu.error_kind == "push_failed", (fu.status, fu.error)
    assert "does not apply on top of theirs" in fu.error
    assert w.remote.commit(pr["head"])["sha"] == theirs[0]     # theirs, nothing of orch's on it
    assert w.remote.read(pr["head"], "r.txt") == "mine\n"
    assert w.github.reactions(w.repo, cid) == ["eyes", "confused"]


def test_the_plan_label_asks_for_a_plan_and_is_taken_off(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Add pl", "orch-standin: write pl.txt P", labels=("orch:plan",))
    run_passes(w, _final("plan"), timeout=180)
    [plan] = tasks(w)
    assert plan.kind == "plan" and plan.status == "succeeded", plan.error
    assert "orch:plan" not in w.github.labels(w.repo, n)
    assert w.remote.branches() == ["main"]
    assert any("plan: write pl.txt" in c["body"] for c in w.github.comments(w.repo, n))
    proc, data = poll(w)
    assert data["dispatched"] == [] and len(tasks(w)) == 1


def test_a_plan_label_added_by_a_stranger_runs_nothing(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Add pm", "orch-standin: write pm.txt P", labels=())
    w.github.label_issue(w.repo, n, "orch:plan", by=MALLORY)
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == [], data
    assert tasks(w) == []
    assert any("orch:plan" in s["reason"] and "mallory" in s["reason"] for s in data["skipped"])


def test_dispatch_followup_by_hand_adds_a_commit_to_orchs_pr(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n, pr = _first_pr(w)
    data = w.orch_json("dispatch", f"{w.repo}#{n}", "--followup", "orch-standin: write h.txt H")
    assert data["status"] == "succeeded" and data["kind"] == "followup", data
    assert data["pr_number"] == pr["number"] and data["parent"]
    assert w.remote.read(pr["head"], "h.txt") == "H\n"
    assert len(w.github.pulls(w.repo)) == 1
    said = [c["body"] for c in w.github.comments(w.repo, pr["number"]) if c["user"] == w.github.user]
    assert len(said) == 1 and "pushed" in said[0]
    # Not one of orch's pull requests: refused, exit 2, nothing changed.
    other = w.github.add_pull(w.repo, "feature/x", user=ALICE)
    proc = w.orch("dispatch", f"{w.repo}#{other}", "--followup", "x")
    assert proc.returncode == 2 and "not an open pull request of orch's" in proc.stderr
    # A command on a pull request orch did not make does nothing at all.
    before = len(tasks(w))
    w.github.add_comment(w.repo, other, "@orch fix it", user=ALICE)
    proc, data = poll(w)
    assert data["dispatched"] == [] and len(tasks(w)) == before
    assert [c for c in w.github.comments(w.repo, other) if c["user"] == w.github.user] == []


def test_cancel_and_retry_commands(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    n = w.issue("Slow", "orch-standin: slow 30\norch-standin: write sl.txt S", labels=())
    w.github.add_comment(w.repo, n, "@orch go", user=ALICE)
    proc, data = poll(w)
    assert len(data["dispatched"]) == 1, data
    cc = w.github.add_comment(w.repo, n, "@orch cancel", user=ALICE)
    proc, data = poll(w)
    [t] = tasks(w)
    assert t.status == "cancelled", (t.status, t.error)
    said = [c["body"] for c in w.github.comments(w.repo, n) if c["user"] == w.github.user]
    assert any("is cancelled" in b for b in said), said
    w.github.add_comment(w.repo, n, "@orch retry", user=ALICE)
    poll(w)
    [t] = tasks(w)
    assert t.status in ("queued", "running"), t.status
    assert w.orch("cancel", t.id).returncode == 0
    assert cc
