"""The one lifecycle (lifecycle/admit.py, launch.py, tell.py, finalize.py, kinds.py) on real
parts, in process: the GitHub-style server through PyGithub, a real git remote, a
`connection: local` host running the stand-in agent, the real store.

What is pinned here: every entry point takes work through admission and gets a
reservation or a typed refusal (a code, never an exit code); the one-live-task rule is
the store's alone and holds through both entry points (dispatch, poll) even when another
process creates the live task while the entry point is reading the forge (issue 16 item 6);
a kind plugs in in one place; failures carry an error_kind that decisions use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from orchestrator.app import App
from orchestrator.core.models import Host, Issue, RepoFacts, Task
from orchestrator.errors import UsageError
from orchestrator.lifecycle import admit, kinds
from orchestrator.lifecycle.dispatch import dispatch
from orchestrator.lifecycle.poll import run_pass
from orchestrator.lifecycle.refusals import Refusal, Refused
from orchestrator.store import DuplicateTask
from tests.fixtures_world import STANDIN
from tests.ghserver import Fault

REPO = "octo/app"


class Life:
    def __init__(self, root: Path, github, remote) -> None:
        self.root, self.github, self.remote = root, github, remote
        github.add_repo(REPO, clone_url=remote.url, default_branch=remote.default_branch)
        github.set_permission(REPO, "alice", "write")
        github.set_permission(REPO, "mallory", "read")
        self.config = root / "orch.yml"
        self.inventory = root / "hosts.yml"
        self.state = root / "state"
        self.write_config()
        self.inventory.write_text(
            f"hosts:\n  here:\n    connection: local\n    max_tasks: 4\n"
            f"    workspace_root: {root / 'work'}\n"
            f"    specialties: [backend, frontend, testing, devops, general]\n")

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            f"github: {{url: '{self.github.url}', timeout: 5, retries: 2}}\n"
            f"repos: [{REPO}]\n"
            f"repo_urls: {{{REPO}: '{self.remote.url}'}}\n"
            f"agent: {{command: '{STANDIN}', timeout: 2m, allow_root: {str(os.geteuid() == 0).lower()}}}\n"
            f"tests: {{command: 'true'}}\n"
            # These GitHub issues run on a `connection: local` host: the operator's opt-in.
            f"allow_local_github: true\n" + extra)

    def app(self) -> App:
        return App(config_path=str(self.config), inventory_path=str(self.inventory),
                   state_dir=str(self.state))

    def issue(self, title: str, body: str = "orch-standin: write a.txt a\n", *,
              user: str = "alice", labels: tuple[str, ...] = ("orch",)) -> int:
        return self.github.add_issue(REPO, title, body=body, labels=list(labels), user=user)


@pytest.fixture
def life(tmp_path, github_server, github_token, git_remote) -> Life:
    return Life(tmp_path, github_server, git_remote)


def _race(life: Life, n: int) -> tuple[list[Task], threading.Thread]:
    """Another orch process creates a live task for issue `n` while the entry point
    reads the issue from the forge."""
    theirs: list[Task] = []
    watcher = _while_reading(life.github, f"/repos/{REPO}/issues/{n}",
                             lambda: theirs.append(life.app().store.create(
                                 REPO, n, "theirs", "general", forge="github")))
    return theirs, watcher


def _while_reading(github, path: str, action) -> threading.Thread:
    """Run `action` (another orch process's move) while the entry point is reading
    `path` from the forge: the server holds that answer until the action is done."""
    github.inject(Fault(delay=1.5, method="GET", path=path))
    seen = len(github.requests_matching("GET", path))

    def watch() -> None:
        end = time.monotonic() + 30
        while len(github.requests_matching("GET", path)) <= seen and time.monotonic() < end:
            time.sleep(0.01)
        action()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


# -- the one-live-task rule: one owner, both entry points (issue 16 item 6) ---------------

def test_the_store_owns_the_rule(life):
    store = life.app().store
    t = store.create(REPO, 1, "x", "general", forge="github")
    with pytest.raises(DuplicateTask):
        store.create(REPO, 1, "x again", "general", forge="github")
    with pytest.raises(DuplicateTask):
        store.refuse_duplicate(REPO, 1)
    store.refuse_duplicate(REPO, 1, t.id)          # the live task itself is not a duplicate
    store.refuse_duplicate(REPO, 2)
    old = store.cancel(t.id, "cancelled by user")
    other = store.create(REPO, 1, "x once more", "general", forge="github")
    with pytest.raises(DuplicateTask):              # requeue applies it too
        store.requeue(old.id, "retried by user")
    assert [x.id for x in store.list(status="queued")] == [other.id]


def test_dispatch_refuses_when_another_process_took_the_issue_meanwhile(life):
    """The live task appears after dispatch read the issue: the store's rule, applied
    under its lock at reservation, refuses; nothing is created or started."""
    app = life.app()
    n = life.issue("Raced by dispatch")
    theirs, watcher = _race(life, n)
    with pytest.raises(Refused) as info:
        asyncio.run(dispatch(app, app.forge("github"), REPO, n, detach=True))
    watcher.join(30)
    assert info.value.code is Refusal.DUPLICATE and info.value.exit_code == 2
    assert "already has a live task" in info.value.message
    assert info.value.task is not None and info.value.task.id == theirs[0].id
    assert [t.id for t in app.store.list()] == [theirs[0].id]
    assert theirs[0].status == app.store.get(theirs[0].id).status == "queued"
    assert life.github.comments(REPO, n) == []       # the forge was not told anything


def test_poll_skips_when_another_process_took_the_issue_meanwhile(life):
    """The same race through `orch poll`: its early look at the store found nothing, the
    store's rule at reservation refuses, the pass skips the issue with the code."""
    app = life.app()
    n = life.issue("Raced by poll")
    theirs, watcher = _race(life, n)
    out = asyncio.run(run_pass(app, [REPO]))
    watcher.join(30)
    assert out.dispatched == [] and out.errors == []
    [skip] = [s for s in out.skipped if s["issue"] == n]
    assert skip["code"] == "duplicate" and "already has a live task" in skip["reason"]
    assert [t.id for t in app.store.list()] == [theirs[0].id]


def test_poll_and_dispatch_keep_no_rule_of_their_own(life, monkeypatch):
    """With the store's rule switched off, both entry points make a second live task for
    an issue that has one: what refuses them above is the store, and nothing else."""
    from orchestrator.lifecycle import claims
    from orchestrator.store import Store
    app = life.app()
    by_dispatch = life.issue("Twice by dispatch", labels=())   # poll does not look at it
    by_poll = life.issue("Twice by poll")
    for n in (by_dispatch, by_poll):
        first = app.store.create(REPO, n, "first", "general", forge="github")
        # running on `here`, reserved by this (live) process: every pass leaves it alone
        app.store.start(first.id, host="here", branch=f"orch/{n}-first",
                        workspace=str(life.root / "work" / first.id), **claims.mine())
    monkeypatch.setattr(Store, "refuse_duplicate", lambda self, repo, issue, task_id=None: None)
    facts = _facts(app)
    r = asyncio.run(admit.admit_issue(app, app.forge("github"), facts, REPO, by_dispatch))
    assert r.task.status == "running"
    out = asyncio.run(run_pass(app, [REPO]))
    assert [t.issue for t in out.dispatched] == [by_poll], out
    for n in (by_dispatch, by_poll):
        assert [t.status for t in app.store.for_issue(REPO, n)] == ["running", "running"]


def _facts(app: App):
    async def go():
        async with app.fleet() as fleet:
            return await admit.probe(fleet)
    return asyncio.run(go())


# -- refusals are typed -------------------------------------------------------------------

def test_refusals_carry_codes_and_change_nothing(life):
    app = life.app()
    forge = app.forge("github")
    facts = _facts(app)
    closed = life.issue("Closed one")
    life.github.close_issue(REPO, closed)
    cases = {
        closed: Refusal.CLOSED,
        life.issue("By a reader", user="mallory"): Refusal.UNAUTHORISED,
        9999: Refusal.NOT_FOUND,
    }
    for number, code in cases.items():
        with pytest.raises(Refused) as info:
            asyncio.run(admit.admit_issue(app, forge, facts, REPO, number))
        assert info.value.code is code and info.value.code.final
        assert info.value.exit_code == 2
    n = life.issue("No label", labels=())
    with pytest.raises(Refused) as info:
        asyncio.run(admit.admit_issue(app, forge, facts, REPO, n, label="orch"))
    assert info.value.code is Refusal.LABEL_REMOVED and not info.value.code.final
    assert app.store.list() == []


def test_no_capacity_is_a_refusal_with_its_own_exit_code(life):
    app = life.app()
    n = life.issue("Needs a host")
    facts = _facts(app)
    facts["here"].running_tasks = 4           # the host says it is full
    with pytest.raises(Refused) as info:
        asyncio.run(admit.admit_issue(app, app.forge("github"), facts, REPO, n))
    assert info.value.code is Refusal.NO_CAPACITY and info.value.exit_code == 1
    assert "full" in info.value.message and app.store.list() == []


def test_a_queued_task_whose_issue_closed_is_failed_not_dispatchable(life):
    app = life.app()
    n = life.issue("Closed after queueing")
    task = app.store.create(REPO, n, "t", "general", forge="github")
    life.github.close_issue(REPO, n)
    out = asyncio.run(run_pass(app, []))
    [skip] = out.skipped
    assert skip["code"] == "closed" and "no longer" not in skip["reason"]
    failed = app.store.get(task.id)
    assert failed.status == "failed" and failed.error_kind == "not_dispatchable"
    assert failed.error.startswith("no longer dispatchable: ")


def test_a_bad_token_never_fails_queued_tasks(life, monkeypatch):
    """A configuration mistake (GitHub refuses the token) is not the issue's fault: the
    queued task stays queued and the pass says why. (The previous version decided on the
    exit code of the error and failed the task for good as "no longer dispatchable".)"""
    app = life.app()
    n = life.issue("Queued")
    task = app.store.create(REPO, n, "t", "general", forge="github")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_the_right_one")
    out = asyncio.run(run_pass(app, []))
    assert app.store.get(task.id).status == "queued"
    assert any("rejected the token" in e for e in out.errors), out.errors


# -- kinds: the one place a kind plugs in ---------------------------------------------------

def test_the_issue_kind_builds_its_job_from_the_settings_alone(life):
    from orchestrator.job.playbook import JobSpec
    app = life.app()
    s = app.settings
    s.agent.model, s.tests.timeout, s.agent.max_turns = "m-1", 77.0, 9
    host = Host(name="h", address="a", agent="/opt/agent", workspace_root="/w")
    task = Task(id="abcd1234", repo=REPO, issue=3, title="T", specialty="backend",
                branch="orch/3-t", workspace="/w/abcd1234")
    issue = Issue(repo=REPO, number=3, title="T")
    spec = kinds.kind_of(task).job(s, host, task, issue, RepoFacts("u.git", "dev"))
    assert spec == JobSpec.from_settings(
        s, task_id=task.id, workspace=task.workspace, clone_url="u.git", branch="orch/3-t",
        base_branch="dev", agent_command="/opt/agent", commit_message=spec.commit_message)
    assert (spec.model, spec.test_timeout, spec.max_turns) == ("m-1", 77.0, 9)
    assert kinds.kind_of(task).branch(task, issue) == "orch/3-t"


def test_job_spec_defaults_are_the_settings_defaults():
    import dataclasses

    from orchestrator.config.settings import Settings
    from orchestrator.job.playbook import JobSpec
    s = Settings()
    by_hand = JobSpec(task_id="t", workspace="/w/t", clone_url="u", branch="b",
                      commit_message="m")
    built = JobSpec.from_settings(s, task_id="t", workspace="/w/t", clone_url="u",
                                  branch="b", commit_message="m")
    assert dataclasses.asdict(by_hand) == dataclasses.asdict(built)


def test_an_unknown_kind_is_said_not_guessed():
    task = Task(id="abcd1234", repo=REPO, issue=1, title="t", specialty="general",
                kind="from-the-future")
    with pytest.raises(UsageError, match="unknown task kind 'from-the-future'") as info:
        kinds.kind_of(task)
    assert "abcd1234" in str(info.value) and "issue" in str(info.value)


def test_a_new_kind_plugs_in_through_the_registry(life, monkeypatch):
    """A kind is a row of KINDS: admission creates its task, launch asks it for the job
    and prompts, finalize for what to deliver. Here a kind that works like an issue but
    delivers a comment instead of a PR, registered in the one place."""
    class NoteKind(kinds.IssueKind):
        name = "note"

        def branch(self, task, issue):
            return f"orch/note-{issue.number}"

        async def deliver(self, forge, task, summary):
            return kinds.Delivery(None, f"<!-- orch -->\nnote for task `{task.id}`")

    monkeypatch.setitem(kinds.KINDS, "note", NoteKind())
    app = life.app()
    forge = app.forge("github")
    n = life.issue("A note")
    facts = _facts(app)
    prepared = asyncio.run(admit.prepare(forge, REPO, n, app.settings))
    r = admit.reserve_new(app, prepared, facts, kind="note", parent="0000beef")
    assert (r.task.kind, r.task.parent, r.task.branch) == ("note", "0000beef", f"orch/note-{n}")

    from orchestrator.fleet.pool import Fleet
    from orchestrator.lifecycle.finalize import finalize
    from orchestrator.lifecycle.follow import follow
    from orchestrator.lifecycle.launch import start

    async def run():
        async with Fleet(app.hosts, app.settings) as fleet:
            task = await start(app, fleet, r)
            await follow(fleet, task, lambda _l: None)
            return await finalize(app, fleet, forge, task)
    done = asyncio.run(run())
    assert done.status == "succeeded" and done.pr_url is None
    assert life.github.pulls(REPO) == []
    assert any(f"note for task `{done.id}`" in c["body"] for c in life.github.comments(REPO, n))
    assert life.remote.read(f"orch/note-{n}", "a.txt") == "a\n"


# -- outcomes: error kinds, session, the forge told once per outcome ------------------------

def test_a_finished_job_records_its_kind_and_session(life):
    app = life.app()
    n = life.issue("Too many turns", "orch-standin: turns 30\n")
    app.settings.agent.max_turns = 3
    out = asyncio.run(dispatch(app, app.forge("github"), REPO, n))
    task = out.task
    assert task is not None and task.status == "failed"
    assert task.error_kind == "max_turns"
    log = Path(task.log_path).read_text()
    assert task.session_id and f'"session_id":"{task.session_id}"' in log.replace(" ", "")
    assert oct(os.stat(task.log_path).st_mode & 0o777) == "0o600"


def test_decisions_use_the_kind_the_job_wrote_not_its_words(life):
    """A status file whose error_kind says one thing and whose message another: the task
    gets the kind (what metrics and poll use)."""
    from orchestrator.fleet.pool import Fleet
    from orchestrator.lifecycle.finalize import finalize
    app = life.app()
    n = life.issue("Misleading words")
    forge = app.forge("github")
    prepared = asyncio.run(admit.prepare(forge, REPO, n, app.settings))
    r = admit.reserve_new(app, prepared, _facts(app))
    ws = Path(r.task.workspace)
    ws.mkdir(parents=True)
    (ws / "job.log").write_text("::orch:: done failed\n")
    (ws / "status").write_text("state=failed\nerror=timeout: tests failed, max turns\n"
                               "error_kind=budget\nexit_code=1\n")

    async def run():
        async with Fleet(app.hosts, app.settings) as fleet:
            return await finalize(app, fleet, forge, app.store.get(r.task.id))
    done = asyncio.run(run())
    assert done.status == "failed" and done.error_kind == "budget"
    assert "orch:failed" in life.github.labels(REPO, n)
    # The report says what to do about the kind, not about the words.
    [body] = [c["body"] for c in life.github.comments(REPO, n)]
    advice = body.split("**What to do**: ", 1)[1]
    assert "agent.max_cost_usd" in advice and "timeout" not in advice


def _hosts(life: Life, **roots: Path) -> None:
    life.inventory.write_text("hosts:\n" + "".join(
        f"  {name}:\n    connection: local\n    max_tasks: 2\n    workspace_root: {root}\n"
        f"    specialties: [backend, frontend, testing, devops, general]\n"
        for name, root in roots.items()))


def test_a_failed_start_is_queued_again_away_from_its_host_then_given_up(life):
    broken = life.root / "not-a-dir"
    broken.write_text("a file where the workspace root should be\n")
    _hosts(life, bad=broken)
    n = life.issue("Starts badly")
    out = asyncio.run(run_pass(life.app(), [REPO]))
    [task] = life.app().store.list()
    assert task.status == "queued" and task.avoid_hosts == ["bad"]
    [skip] = [s for s in out.skipped if s["issue"] == n]
    assert skip["code"] == "start_failed" and "attempt 1 of 3" in skip["reason"]
    assert "could not start the job on bad" in skip["reason"]
    # A second host appears: the queued task goes there, not back to `bad`, although
    # `bad` has room too.
    _hosts(life, bad=broken, good=life.root / "work")
    out = asyncio.run(run_pass(life.app(), [REPO]))
    [started] = out.dispatched
    assert started.id == task.id and started.host == "good" and started.error_kind is None
    # Out of attempts: failed for good, with its kind, and the issue is told.
    life.write_config("poll: {max_attempts: 1}\n")
    _hosts(life, bad=broken)
    m = life.issue("Starts badly, once")
    out = asyncio.run(run_pass(life.app(), [REPO]))
    failed = life.app().store.for_issue(REPO, m)[0]
    assert failed.status == "failed" and failed.error_kind == "start_failed"
    assert any("given up" in e for e in out.errors), out.errors
    assert "orch:failed" in life.github.labels(REPO, m) and "orch" not in life.github.labels(REPO, m)
