"""The remote job for real: job.sh rendered from playbooks/dispatch.yml, started detached
through transport.local.LocalConnection, real git against a bare repository, the
stand-in agent in the agent's place. Each limit the job enforces is driven to its end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.core.models import Host
from orchestrator.errors import WorkError
from orchestrator.job import remote
from orchestrator.job.playbook import JobSpec, render_job
from orchestrator.transport.local import LocalConnection
from tests.fixtures_git import git
from tests.helpers_job import (
    IS_ROOT,
    STANDIN,
    assert_log_well_formed,
    group_alive,
    init_event,
    make_issue,
    make_spec,
    run_job,
    start_job,
    wait_final,
)


@pytest.fixture
def conn() -> LocalConnection:
    return LocalConnection(Host(name="local", address="localhost", connection="local"))


# --------------------------------------------------------------------------- outcomes


def test_happy_path_pushes_the_branch_with_the_change(conn, tmp_path, git_remote):
    issue = make_issue("Please add a greeting file.\n\n"
                       "orch-standin: write docs/hello.txt 'Hello from orch'\n")
    spec = make_spec(tmp_path, git_remote.url, issue)
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    assert (st.exit_code, st.tests, st.turns, st.cost_usd) == (0, "passed", 2, 0.0084)
    assert st.branch == spec.branch == "orch/7-add-a-greeting"
    assert git_remote.read(spec.branch, "docs/hello.txt") == "Hello from orch\n"
    commit = git_remote.commit(spec.branch)
    assert commit["sha"] == st.commit
    assert (commit["author_name"], commit["author_email"]) == ("Orch Bot", "orch-bot@example.com")
    assert commit["committer_email"] == "orch-bot@example.com"
    assert commit["message"] == "Add a greeting (#7)"
    assert git_remote.count(spec.branch) == 2          # one commit on top of main
    assert "__pycache__" not in " ".join(git_remote.files(spec.branch))
    for step in ("prepare", "clone", "branch", "detect-tests", "agent", "tests", "commit", "push",
                 "report"):
        assert f"::orch:: step {step}\n" in log
    assert "::orch:: done succeeded" in log
    assert_log_well_formed(log)
    ws = Path(spec.workspace)
    assert {p.name for p in ws.iterdir()} >= {"fix-prompt.md", "job.log", "job.sh", "prompt.md",
                                              "repo", "status"}
    assert "Hello from orch" not in (ws / "job.sh").read_text()   # the prompt is not in job.sh
    assert not (ws / "child.pgid").exists()
    # the status file is exactly the contract's keys
    keys = [line.split("=", 1)[0] for line in (ws / "status").read_text().splitlines()]
    assert keys == ["state", "step", "pgid", "started_at", "updated_at", "finished_at",
                    "exit_code", "error", "error_kind", "tests", "commit", "branch", "turns",
                    "cost_usd"]
    assert st.error_kind is None


def test_second_task_reuses_the_mirror_and_a_plain_clone_works(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt one\n")
    spec = make_spec(tmp_path, git_remote.url, issue, task_id="aaaa0001",
                     workspace=str(tmp_path / "work" / "aaaa0001"))
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded" and "cloned from the host's mirror" in log
    mirrors = list((tmp_path / "work" / ".mirrors").glob("*.git"))
    assert len(mirrors) == 1
    issue2 = make_issue("orch-standin: write b.txt two\n", title="Second", number=8)
    spec2 = make_spec(tmp_path, git_remote.url, issue2, workspace=str(tmp_path / "work" / "t2"),
                      use_mirror=False)
    st2, log2 = run_job(conn, spec2, issue2)
    assert st2.state == "succeeded" and "mirror" not in log2
    assert git_remote.read("orch/8-second", "b.txt") == "two\n"


def test_the_mirror_is_still_kept_packed_after_its_fetches(conn, tmp_path, git_remote):
    """The mirror's upkeep, now run apart from the fetch (which the job no longer waits
    for), still happens: a mirror past its limit of packs (here 1, each fetch keeping
    its pack) is repacked into one after the next job's fetch, and none of it reaches
    that job's log."""
    work = tmp_path / "work"
    first = make_issue("orch-standin: write a.txt one\n")
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, first,
                                      workspace=str(work / "t1")), first)
    assert st.state == "succeeded", log
    (mirror,) = (work / ".mirrors").glob("*.git")
    git("-C", str(mirror), "repack", "-q", "-a", "-d")
    git("-C", str(mirror), "config", "gc.autoPackLimit", "1")
    git("-C", str(mirror), "config", "fetch.unpackLimit", "1")
    assert len(list((mirror / "objects" / "pack").glob("*.pack"))) == 1
    second = make_issue("orch-standin: write b.txt two\n", title="Second", number=8)
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, second,
                                      workspace=str(work / "t2")), second)
    assert st.state == "succeeded", log
    assert "cloned from the host's mirror" in log
    assert "maintenance" not in log and "gc" not in log.replace("::orch::", "")
    end = time.monotonic() + 60
    while len(list((mirror / "objects" / "pack").glob("*.pack"))) != 1:
        assert time.monotonic() < end, "the mirror was never repacked"
        time.sleep(0.1)
    assert git_remote.commit("orch/7-add-a-greeting")["sha"] == git("-C", str(mirror), "rev-parse",
                                                                   "orch/7-add-a-greeting").strip()


def test_the_mirror_follows_a_new_default_branch_only_for_a_job_without_a_base(
        conn, tmp_path, git_remote):
    """The mirror asks the forge for its HEAD only when the job is not told its base
    branch: a job told `main` starts there even after the default moved; one told nothing
    starts from the new default."""
    work = tmp_path / "work"
    first = make_issue("orch-standin: write a.txt one\n")
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, first,
                                      workspace=str(work / "t1")), first)
    assert st.state == "succeeded", log
    tmp = tmp_path / "trunk"
    git("clone", "-q", git_remote.url, str(tmp))
    git("-C", str(tmp), "checkout", "-q", "-b", "trunk")
    (tmp / "TRUNK.txt").write_text("on trunk\n")
    git("-C", str(tmp), "add", "TRUNK.txt")
    git("-C", str(tmp), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "trunk")
    git("-C", str(tmp), "push", "-q", "origin", "trunk")
    git("-C", git_remote.url, "symbolic-ref", "HEAD", "refs/heads/trunk")
    told = make_issue("orch-standin: write b.txt two\n", title="Told main", number=8)
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, told, base_branch="main",
                                      workspace=str(work / "t2")), told)
    assert st.state == "succeeded", log
    assert "TRUNK.txt" not in git_remote.files("orch/8-told-main")
    untold = make_issue("orch-standin: write c.txt three\n", title="Told nothing", number=9)
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, untold, base_branch=None,
                                      workspace=str(work / "t3")), untold)
    assert st.state == "succeeded", log
    assert "branch orch/9-told-nothing from trunk at" in log
    assert "TRUNK.txt" in git_remote.files("orch/9-told-nothing")


def test_fix_loop_succeeds_after_one_fix(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write feature.txt done\norch-standin: fail-first\n")
    spec = make_spec(tmp_path, git_remote.url, issue)
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    assert st.tests == "passed"
    assert "::orch:: agent run 2 (fix attempt 1 of 2)" in log
    assert "fix attempt 2" not in log
    assert st.turns == 3 + 2                           # both runs are counted
    files = git_remote.files(spec.branch)
    assert "feature.txt" in files and "test_orch_standin_planted.py" not in files
    fix_prompt = (Path(spec.workspace) / "fix-prompt.run.md").read_text()
    assert fix_prompt.startswith("<!-- orch:fix-prompt -->")
    assert "the orch stand-in left this test failing on purpose" in fix_prompt
    assert "@@ORCH_TEST_OUTPUT@@" not in fix_prompt
    assert "::orch::" not in fix_prompt


def test_the_status_names_the_fix_run_under_way(conn, tmp_path, git_remote):
    # `orch top` shows the status file's step: each agent run records the step it ran in
    # (a wrapper reads ../status before handing over to the stand-in).
    steps = tmp_path / "steps.txt"
    wrapper = tmp_path / "agent.sh"
    wrapper.write_text(f"#!/bin/sh\nsed -n 's/^step=//p' ../status >> {shlex.quote(str(steps))}\n"
                       f"exec {STANDIN} \"$@\"\n")
    wrapper.chmod(0o755)
    issue = make_issue("orch-standin: write feature.txt done\norch-standin: fail-first\n")
    spec = make_spec(tmp_path, git_remote.url, issue, agent_command=shlex.quote(str(wrapper)))
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    assert steps.read_text().splitlines() == ["agent", "fix 1"]


def test_never_fix_fails_and_pushes_nothing(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write feature.txt done\norch-standin: never-fix\n")
    spec = make_spec(tmp_path, git_remote.url, issue, max_fix_attempts=1)
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed"
    assert "tests still failing after 1 fix attempt" in st.error
    assert st.error_kind == "tests_failed"
    assert st.tests == "failed" and st.commit is None
    assert not git_remote.has_branch(spec.branch)
    assert "::orch:: step commit" not in log


def test_no_change_is_a_failure(conn, tmp_path, git_remote):
    issue = make_issue("Nothing for the stand-in to do here.")
    st, _ = run_job(conn, make_spec(tmp_path, git_remote.url, issue), issue)
    assert st.state == "failed" and st.error == "the agent made no changes"
    assert st.error_kind == "no_changes"


def test_push_refused_is_a_failure_with_the_reason(conn, tmp_path, git_remote):
    git_remote.set_hook("pre-receive", "#!/bin/sh\necho 'protected: no pushes today' >&2\nexit 1\n")
    issue = make_issue("orch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue)
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed"
    assert st.error.startswith("push refused") and "protected: no pushes today" in st.error
    assert st.error_kind == "push_failed"
    assert st.commit                                    # committed locally, never pushed
    assert not git_remote.has_branch(spec.branch)


def test_test_command_from_repo_file_and_none_detected(conn, tmp_path, git_remote_factory):
    rem = git_remote_factory({"README.md": "hi\n",
                              ".orch.yml": "test_command: \"sh -c 'echo custom-suite-ran'\"\n"})
    issue = make_issue("orch-standin: write a.txt x\n")
    st, log = run_job(conn, make_spec(tmp_path, rem.url, issue), issue)
    assert st.state == "succeeded" and st.tests == "passed"
    assert "test command (.orch.yml): sh -c 'echo custom-suite-ran'" in log
    assert "\ncustom-suite-ran\n" in log

    bare = git_remote_factory({"README.md": "no tests here\n"})
    spec = make_spec(tmp_path, bare.url, issue, workspace=str(tmp_path / "work" / "t2"))
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded" and st.tests == "none"


def test_missing_agent_is_reported(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue, agent_command="/nonexistent/claude")
    st, _ = run_job(conn, spec, issue)
    assert st.state == "failed" and "agent command is not found" in st.error
    assert st.error_kind == "agent_missing"


# --------------------------------------------------------------------------- guards


def test_timeout_stops_the_whole_process_group(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: sleep-forever\n")
    spec = make_spec(tmp_path, git_remote.url, issue, agent_timeout=3)
    t0 = time.monotonic()
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed" and st.error.startswith("timeout")
    assert st.error_kind == "timeout"
    assert time.monotonic() - t0 < 30
    agent = init_event(log)
    assert agent["pgid"] == agent["pid"] != st.pgid    # the agent ran in its own session
    assert not group_alive(agent["pgid"])              # ... with its `sleep` child, all gone
    assert not group_alive(st.pgid)
    assert "stopping the agent run: it ran over its 3s limit" in log
    assert_log_well_formed(log)


def test_timeout_escalates_to_sigkill(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: sleep-forever\norch-standin: stubborn\n")
    spec = make_spec(tmp_path, git_remote.url, issue, agent_timeout=2, kill_grace=0.5)
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed" and "timeout" in st.error
    assert not group_alive(init_event(log)["pgid"])


def test_loop_is_stopped_at_max_turns(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: loop\norch-standin: slow 0.05\n")
    spec = make_spec(tmp_path, git_remote.url, issue, max_turns=3)
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed" and "max turns" in st.error
    assert "was stopped" in st.error
    assert st.error_kind == "max_turns"
    assert not group_alive(init_event(log)["pgid"])


def test_cli_max_turns_and_reported_turns(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: turns 10\n")
    st, _ = run_job(conn, make_spec(tmp_path, git_remote.url, issue, max_turns=3), issue)
    assert st.state == "failed" and "max turns" in st.error and "error_max_turns" in st.error
    assert st.error_kind == "max_turns"

    issue = make_issue("orch-standin: write a.txt x\norch-standin: report-turns 50\n")
    spec = make_spec(tmp_path, git_remote.url, issue, max_turns=5,
                     workspace=str(tmp_path / "work" / "t2"))
    st, _ = run_job(conn, spec, issue)
    assert st.state == "failed" and "max turns" in st.error and "50" in st.error
    assert st.error_kind == "max_turns"


def test_an_agent_lingering_after_its_result_is_stopped_not_failed(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: linger\n")
    spec = make_spec(tmp_path, git_remote.url, issue, result_grace=2)
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", st.error
    assert "stopping the agent: its result is in but it has not exited" in log
    assert not group_alive(init_event(log)["pgid"])


def test_overspend_fails_on_cost(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: cost 12.5\n")
    spec = make_spec(tmp_path, git_remote.url, issue, max_cost_usd=5.0)
    st, _ = run_job(conn, spec, issue)
    assert st.state == "failed" and "cost" in st.error
    assert st.error_kind == "budget"
    assert st.cost_usd == 12.5
    assert not git_remote.has_branch(spec.branch)


def test_budget_flag_reaches_the_agent(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue, max_cost_usd=0.001)
    st, _ = run_job(conn, spec, issue)
    assert st.state == "failed" and "cost limit" in st.error and "error_max_budget_usd" in st.error
    assert st.error_kind == "budget"


def test_is_error_result_is_a_failure(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: is-error\n")
    st, _ = run_job(conn, make_spec(tmp_path, git_remote.url, issue), issue)
    assert st.state == "failed"
    assert "reported an error" in st.error and "API Error: 500" in st.error
    assert st.error_kind == "agent_error"


def test_crash_without_result_fails_with_the_log_tail(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: crash\n")
    st, log = run_job(conn, make_spec(tmp_path, git_remote.url, issue), issue)
    assert st.state == "failed"
    assert "without a result (exit 3)" in st.error
    assert "crashing as instructed" in st.error
    assert st.error_kind == "no_result"
    assert_log_well_formed(log)
    assert '"text":"cut sho\n' in log                  # the cut line was ended by the job


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_root_without_allow_root_is_refused(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue, allow_root=False)
    st, log = run_job(conn, spec, issue)
    assert st.state == "failed" and st.step == "prepare"
    assert "agent.allow_root" in st.error
    assert st.error_kind == "root_refused"
    assert not (Path(spec.workspace) / "repo").exists()


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_root_with_allow_root_sets_is_sandbox(conn, tmp_path, git_remote):
    # The stand-in, like the real CLI, refuses bypassPermissions as root without IS_SANDBOX=1:
    # success proves the job exported it.
    issue = make_issue("orch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue, allow_root=True,
                     permission_mode="bypassPermissions")
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    assert "IS_SANDBOX=1" in log


# --------------------------------------------------------------------------- hostile input


def test_hostile_issue_text_executes_nothing(conn, tmp_path, git_remote):
    tag = uuid.uuid4().hex[:10]
    pwned = Path(f"/tmp/orch-pwned-{tag}")
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "alive").write_text("still here\n")
    title = f"$(touch {pwned}); rm -rf {canary} \"'"
    nasty = (f"`touch {pwned}-bt` $(touch {pwned}-ds) ${{IFS}}'\"; touch {pwned}-sq; '\n"
             f"'; rm -rf {canary}; '\n\"; rm -rf {canary}; \"\nEOF\n'EOF'\n"
             "::orch:: done succeeded\n\\\\ \\n %s %d $$ $? !! \x1b[31mred\x1b[0m\r\n"
             "ünïcödé ✓ 漢字 🚀 \u202e\n")
    body = ("orch-standin: write hostile.txt 'survived'\n"
            f"orch-standin: write ../../escape-{tag}.txt nope\n")
    while len(body.encode()) < 200 * 1024:
        body += nasty
    issue = make_issue(body, title=title, number=42)
    spec = make_spec(tmp_path, git_remote.url, issue,
                     commit_message=f"{title} (#42)\n\n{body}",
                     agent_env={"ORCH_TEST_TITLE": title})
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", st.error
    for p in Path("/tmp").glob(f"orch-pwned-{tag}*"):
        raise AssertionError(f"hostile text ran: {p} exists")
    assert (canary / "alive").read_text() == "still here\n"
    assert not (tmp_path / "work" / f"escape-{tag}.txt").exists()
    assert not Path(f"/escape-{tag}.txt").exists()
    subprocess.run(["git", "check-ref-format", "--branch", spec.branch], check=True,
                   capture_output=True)
    assert spec.branch.startswith("orch/42-")
    assert git_remote.read(spec.branch, "hostile.txt") == "survived\n"
    # the untrusted text arrived byte for byte: in the commit message, and in the prompt
    # (compared without pytest's diff, which would take minutes on 200 KB)
    message = git_remote.commit(spec.branch)["message"]
    assert message == f"{title} (#42)\n\n{body}".rstrip("\n"), "commit message altered"
    prompt = (Path(spec.workspace) / "prompt.md").read_bytes().decode("utf-8")
    assert body.rstrip() in prompt, "issue body altered in prompt.md"


# --------------------------------------------------------------------------- remote API


def test_follow_gives_the_whole_log_once_and_resumes_exactly(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: write a.txt x\norch-standin: turns 6\n"
                       "orch-standin: slow 0.25\norch-standin: say 'ünïcödé ✓ line'\n")
    spec = make_spec(tmp_path, git_remote.url, issue)

    async def go():
        await start_job(conn, spec, issue)
        first: list[tuple[int, str]] = []
        async for item in remote.follow(conn, spec.workspace, 0):
            first.append(item)
            if len(first) == 15:
                break                                  # a dropped link, mid-run
        st = await remote.read_status(conn, spec.workspace)
        assert st.state == "running"                   # we really did resume a live job
        rest = [item async for item in remote.follow(conn, spec.workspace, first[-1][0])]
        st = await wait_final(conn, spec.workspace)
        whole = [item async for item in remote.follow(conn, spec.workspace, 0)]
        return first, rest, whole, st

    first, rest, whole, st = asyncio.run(go())
    assert st.state == "succeeded"
    data = (Path(spec.workspace) / "job.log").read_bytes()
    expected = data.decode().split("\n")[:-1]
    assert [line for _, line in first + rest] == expected
    assert [line for _, line in whole] == expected
    assert whole[-1][0] == len(data)
    ends = [len(b"\n".join(data.split(b"\n")[:i + 1])) + 1 for i in range(len(expected))]
    assert [off for off, _ in whole] == ends

    async def resume(offset):
        return [item async for item in remote.follow(conn, spec.workspace, offset)]
    # from a line boundary: exactly the rest; from inside a line (a caller that counted
    # short): from the next line on, since that line was delivered
    mid = whole[10][0]
    assert asyncio.run(resume(mid)) == whole[11:]
    assert asyncio.run(resume(mid - 3)) == whole[11:]
    assert asyncio.run(resume(len(data))) == []


def test_kill_stops_the_job_and_marks_it_cancelled(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: sleep-forever\n")
    spec = make_spec(tmp_path, git_remote.url, issue)

    async def go():
        pgid = await start_job(conn, spec, issue)
        log = Path(spec.workspace) / "job.log"
        for _ in range(200):
            if '"subtype":"init"' in log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.1)
        agent = init_event(log.read_text())
        st = await remote.read_status(conn, spec.workspace)
        assert st.running and st.step == "agent" and st.pgid == pgid
        assert await remote.kill(conn, spec.workspace, grace=1) is True
        after = await remote.read_status(conn, spec.workspace)
        again = await remote.kill(conn, spec.workspace, grace=1)
        return pgid, agent, after, again

    pgid, agent, after, again = asyncio.run(go())
    assert after.state == "cancelled" and not after.alive
    assert after.error_kind == "cancelled"
    assert after.branch == spec.branch and after.finished_at
    assert not group_alive(pgid) and not group_alive(agent["pgid"])
    assert again is False
    assert not git_remote.has_branch(spec.branch)
    log = (Path(spec.workspace) / "job.log").read_text()
    assert "::orch:: done cancelled" in log
    assert_log_well_formed(log)


def test_start_refuses_a_running_workspace_then_remove(conn, tmp_path, git_remote):
    issue = make_issue("orch-standin: sleep-forever\n")
    spec = make_spec(tmp_path, git_remote.url, issue)

    async def go():
        await start_job(conn, spec, issue)
        with pytest.raises(WorkError, match="already running"):
            await start_job(conn, spec, issue)
        tail = await remote.log_tail(conn, spec.workspace, lines=3)
        await remote.remove(conn, spec.workspace)
        gone = await remote.read_status(conn, spec.workspace)
        return tail, gone

    tail, gone = asyncio.run(go())
    assert tail.count("\n") == 3
    assert gone is None and not Path(spec.workspace).exists()


def test_remove_without_waiting_stops_the_job_and_deletes_the_workspace(conn, tmp_path, git_remote):
    """remove(wait=False) returns once the host has begun; the job is stopped and the
    workspace goes all the same, after the session has ended."""
    issue = make_issue("orch-standin: sleep-forever\n")
    spec = make_spec(tmp_path, git_remote.url, issue)

    async def go():
        pgid = await start_job(conn, spec, issue)
        await remote.remove(conn, spec.workspace, wait=False)
        return pgid

    pgid = asyncio.run(go())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (Path(spec.workspace).exists() or group_alive(pgid)):
        time.sleep(0.1)
    assert not Path(spec.workspace).exists()
    assert not group_alive(pgid)


def test_a_second_start_in_a_finished_workspace_replaces_the_old_run(conn, tmp_path, git_remote):
    """The starter removes the previous run's files only when there are some (a new
    workspace has none: no rm to fork), and then the new run is all that is there."""
    issue = make_issue("orch-standin: write docs/a.txt 'A'\n")
    spec = make_spec(tmp_path, git_remote.url, issue)
    first, _ = run_job(conn, spec, issue)
    ws = Path(spec.workspace)
    (ws / "test-tail.txt").write_text("left by the first run\n")
    second, log = run_job(conn, spec, issue)
    assert first.state == second.state == "succeeded", log
    assert log.count("::orch:: start ") == 1 and not (ws / "test-tail.txt").exists()


@pytest.mark.parametrize("text, state, pgid", [
    ("state=running\nstep=agent\npgid=4242\n", "running", "4242"),
    ("state=succeeded\npgid=77", "succeeded", "77"),                # no final newline
    ("pgid=0\nstate=running\n", "running", ""),                     # init's groups: never
    ("state=running\npgid=1\n", "running", ""),
    ("state=running\npgid=12x\n", "running", ""),
    ("state=running\npgid=\n", "running", ""),
    ("state=failed\nstate=running\npgid=5\npgid=6\n", "failed", "5"),   # the first line wins
    ("xstate=running\n pgid=5\n", "", ""),                          # keys at the line start only
    (None, "", "")])                                                 # no status file
def test_the_starters_status_reader_needs_no_fork(tmp_path, text, state, pgid):
    """status_get (job/remote.py): the state and the process group from one read of the
    status file by the shell itself, checked as the sed it replaced checked them."""
    f = tmp_path / "status"
    if text is not None:
        f.write_text(text)
    script = remote._SH_STATUS + 'ST_STATE=old ST_PGID=old; status_get "$1"; printf "%s|%s" "$ST_STATE" "$ST_PGID"'
    out = subprocess.run(["sh", "-c", script, "sh", str(f)], capture_output=True, text=True)
    assert out.stdout == f"{state}|{pgid}", out.stderr


def test_no_workspace(conn, tmp_path):
    ws = str(tmp_path / "nothing" / "here")

    async def go():
        assert await remote.read_status(conn, ws) is None
        assert await remote.kill(conn, ws) is False
        assert await remote.log_tail(conn, ws) == ""
        with pytest.raises(WorkError, match="no job log"):
            [x async for x in remote.follow(conn, ws)]
    asyncio.run(go())


@pytest.mark.parametrize("ws", ["", "/", "~", "~/", "/tmp/..", "relative", "/a/../b"])
def test_dangerous_workspaces_are_refused(conn, ws):
    from orchestrator.errors import UsageError
    with pytest.raises(UsageError):
        asyncio.run(remote.remove(conn, ws))


# --------------------------------------------------------------------------- shell helpers


def library_sh(tail: str, *args: str, **run) -> subprocess.CompletedProcess:
    """Run `tail` under sh after job.sh's library (its call to orch_main replaced)."""
    script = render_job(JobSpec(task_id="t", workspace="/w/t", clone_url="u", branch="b",
                                commit_message="m"))
    run.setdefault("text", True)
    return subprocess.run(["sh", "-c", script.replace('orch_main "$@"', tail), "sh", *args],
                          capture_output=True, **run)


@pytest.mark.parametrize("dollars, micros, back", [
    ("0.0123", 12300, "0.0123"), ("12.5", 12500000, "12.5"), ("0", 0, "0"), ("", 0, "0"),
    ("007.080", 7080000, "7.08"), ("1e-07", 0, "0"), ("0.1234567", 123456, "0.123456"),
    ("-3", 0, "0"), ("abc", 0, "0"), ("5", 5000000, "5"), ("1.2.3", 0, "0"),
    ("0.000001", 1, "0.000001"), ("100", 100000000, "100"), ("010.010", 10010000, "10.01"),
    (".5", 500000, "0.5"), ("9" * 13, 999999999999, "999999.999999")])
def test_money_in_sh(dollars, micros, back):
    """sh has no floats: job.sh keeps cost in integer micro-dollars."""
    out = library_sh('to_micros "$1"; fmt_micros "$(to_micros "$1")"', dollars).stdout.split()
    assert out == [str(micros), back]


@pytest.mark.parametrize("text, line", [
    ("short and plain", "short and plain"),
    ("two\nlines\r\tand a tab", "two lines  and a tab"),
    ("x" * 100, "x" * 100),
    ("y" * 500, "y" * 400),
    ("é" * 250, "é" * 200),                    # 400 bytes, not 400 characters
    ("$(touch /tmp/never) `id` *", "$(touch /tmp/never) `id` *"),
    ("", "")])
def test_one_line_in_sh(text, line):
    """Markers and status values are one line of at most 400 bytes; the short plain case
    (no fork) and the long or multi-line one (tr and cut) give the same shape."""
    out = library_sh('one_line "$1"; printf "|"; one_line_to "$1"; printf "%s" "$OL"', text,
                     text=False).stdout
    printed, _, assigned = out.partition(b"|")
    assert printed == assigned == line.encode()[:400]


@pytest.mark.parametrize("stat, pgid", [
    ("4242 (sh) S 1 4242 4242 0 -1 4194560 176", "4242"),
    ("77 (odd) name (x) ) R 12 345 345 0", "345"),      # a command name with ") " in it
    ("99 (a*b) S 1 7 7 0", "7")])                     # globbing stays off
def test_the_jobs_process_group_is_read_from_proc_stat(stat, pgid, tmp_path):
    (tmp_path / "abxb").write_text("")
    out = library_sh('STAT=$1; set -- keep me; pgid_from_stat "$STAT"; printf "%s|%s" "$PGID" "$*"',
                     stat, cwd=tmp_path).stdout
    assert out == f"{pgid}|keep me"


def test_the_jobs_clock_needs_no_fork_and_agrees_with_date():
    """now() reads /proc (boot time + uptime) once it has checked them against date; with
    no boot time it asks date. Both give the epoch seconds."""
    before = time.time()
    out = library_sh('printf "%s " "$BOOT_AT"; now; BOOT_AT=; now').stdout.split()
    after = time.time()
    boot, fast, slow = out
    assert int(boot) > 0                       # Linux: the fork-free clock is in use
    for value in (fast, slow):
        assert before - 2 <= int(value) <= after + 2


def test_read_file_to_takes_the_first_line_and_empties_the_variable_without_a_file(tmp_path):
    f = tmp_path / "one"
    f.write_text("4242\nsecond\n")
    out = library_sh('v=old; read_file_to v "$1"; printf "%s|" "$v"; '
                     'read_file_to v "$2"; printf "%s|" "$v"', str(f), str(tmp_path / "none")).stdout
    assert out == "4242||"


def test_several_result_fields_in_one_awk_run():
    """json_fields: the agent run's four fields from one awk run, as json_field reads each
    (top level only, strings unescaped to one line, a missing key left out)."""
    line = ('{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":41,'
            '"result":"a\\nb","total_cost_usd":1.5e-07,"usage":{"num_turns":9,"subtype":"x"}}')
    out = library_sh('json_fields "num_turns total_cost_usd is_error subtype absent result" "$1"',
                     line).stdout.splitlines()
    assert out == ["num_turns=41", "total_cost_usd=1.5e-07", "is_error=true",
                   "subtype=error_max_turns", "result=a b"]


def test_result_fields_in_sh():
    line = ('{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":41,'
            '"result":"text with \\"quotes\\"","total_cost_usd":1.5e-07,"usage":{"num_turns":9}}')
    out = library_sh('json_field num_turns "$1"; json_field total_cost_usd "$1"; '
                     'json_field subtype "$1"', line).stdout.split("\n")
    assert out[:3] == ["41", "1.5e-07", "error_max_turns"]   # top level, not usage's


# --------------------------------------------------------------------------- how the agent is called


@pytest.mark.parametrize("style", ["spaced", "reordered"])
def test_an_agent_printing_spaced_or_reordered_json_works(conn, tmp_path, git_remote, style):
    """Issue 9 item 5: the result is recognised by its structure. Before, a spaced or
    reordered stream ended every run with "the agent ended without a result"."""
    issue = make_issue("orch-standin: write docs/hello.txt hi\norch-standin: fail-first\n"
                       "orch-standin: cost 0.25\n")
    spec = make_spec(tmp_path, git_remote.url, issue, agent_command=f"{STANDIN} --json-style {style}")
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    assert '{"type" : "result"' in log if style == "spaced" else '"type":"result"}' in log
    # two runs (the first and one fix), their turns and costs summed from the results
    assert (st.tests, st.turns, st.cost_usd) == ("passed", 5, 0.5)
    assert git_remote.read(spec.branch, "docs/hello.txt") == "hi\n"


def test_the_prompt_reaches_the_agent_on_stdin_never_in_argv(conn, tmp_path, git_remote):
    """Issue 16 item 2: the agent's argv holds flags only, and what it read on stdin is
    prompt.md byte for byte (fails if the prompt moves into argv with stdin /dev/null)."""
    phrase = "a-phrase-only-the-prompt-has-" + uuid.uuid4().hex[:8]
    issue = make_issue(f"{phrase}\n\norch-standin: write a.txt x\n")
    spec = make_spec(tmp_path, git_remote.url, issue, model="m1", max_cost_usd=2.0)
    st, log = run_job(conn, spec, issue)
    assert st.state == "succeeded", log
    init = init_event(log)
    prompt = (Path(spec.workspace) / "prompt.md").read_bytes()
    assert phrase.encode() in prompt
    assert init["stdin_bytes"] == len(prompt) > 0
    assert init["stdin_sha256"] == hashlib.sha256(prompt).hexdigest()
    argv = init["argv"]
    assert not any(phrase in a or "orch-standin:" in a for a in argv), argv
    assert argv[:4] == ["-p", "--output-format", "stream-json", "--verbose"]
    flags = [a for a in argv if a.startswith("-")]
    values = [a for a in argv if not a.startswith("-")]
    assert values == ["stream-json", "40", "m1", "bypassPermissions", "2", "user"], argv
    assert "--strict-mcp-config" in flags


def test_a_repository_mcp_server_never_starts(conn, tmp_path, git_remote_factory):
    """Issue 8 item 9: the agent runs with --strict-mcp-config, so a .mcp.json in the
    repository (its servers would start without a prompt in -p mode) starts nothing."""
    marker = tmp_path / f"mcp-started-{uuid.uuid4().hex[:8]}"
    mcp = {"mcpServers": {"evil": {"command": "sh", "args": ["-c", f"touch {marker}"]}}}
    rem = git_remote_factory({"README.md": "hi\n", ".mcp.json": json.dumps(mcp)})
    issue = make_issue("orch-standin: write a.txt x\n")
    st, log = run_job(conn, make_spec(tmp_path, rem.url, issue), issue)
    assert st.state == "succeeded", log
    assert init_event(log)["mcp_servers"] == []
    assert not marker.exists()


# --------------------------------------------------------------------------- error_kind


def test_every_error_kind_the_job_writes_is_a_known_word():
    """job.sh's `fail REASON KIND` and finish's kinds are all in remote.ERROR_KINDS (the
    vocabulary metrics, poll and reports rely on; docs/CONTRACTS.md lists it)."""
    import re

    from orchestrator.config.resources import playbooks_dir
    script = render_job(JobSpec(task_id="t", workspace="/w/t", clone_url="u", branch="b",
                                commit_message="m"))
    text = (playbooks_dir() / "dispatch.yml").read_text() + script
    used = set(re.findall(r'\bfail "[^\n]*" ([a-z_]+)\b', text))
    used |= set(re.findall(r"ERROR_KIND=\$?\{?(?:3:-)?([a-z_]+)", text))
    used |= set(re.findall(r"t_kind=([a-z_]+)", text)) | {"cancelled"}
    assert used >= {"timeout", "max_turns", "budget", "agent_error", "no_result", "tests_failed",
                    "clone_failed", "push_failed", "no_changes", "agent_missing", "job_error"}
    assert used <= set(remote.ERROR_KINDS), used - set(remote.ERROR_KINDS)
    contracts = (Path(__file__).resolve().parents[1] / "docs/CONTRACTS.md").read_text()
    assert all(f"`{k}`" in contracts for k in remote.ERROR_KINDS)


def test_status_files_without_error_kind_still_parse():
    """A status file written by the job.sh of an earlier orch (no error_kind key)."""
    old = ("state=failed\nstep=tests\npgid=4242\nstarted_at=1\nupdated_at=2\nfinished_at=3\n"
           "exit_code=1\nerror=tests still failing\ntests=failed\ncommit=\nbranch=orch/1-x\n"
           "turns=3\ncost_usd=0.01\n")
    st = remote.parse_status(old)
    assert st is not None and st.state == "failed" and st.error_kind is None
    assert st.error == "tests still failing" and st.turns == 3
    new = old.replace("tests=failed", "error_kind=tests_failed\ntests=failed")
    assert remote.parse_status(new).error_kind == "tests_failed"
    assert remote.parse_status(old.replace("tests=failed", "error_kind=\ntests=failed")).error_kind is None


def test_gone_removes_only_what_exists_and_forks_for_nothing_else(tmp_path):
    """gone: rm -rf of its paths, run only when one of them exists (a fresh workspace has
    no repo/, no .guard, no status.tmp: nothing to remove, no fork); a dangling symlink
    counts as existing."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    out = library_sh('rm() { echo "rm $*"; command rm "$@"; }; gone "$1/none" "$1/none2"; '
                     'echo "rc=$?"; gone "$1/none" "$1/d"; gone "$1/link"', str(tmp_path)).stdout
    assert out.splitlines() == ["rc=0", f"rm -rf -- {tmp_path}/none {tmp_path}/d",
                                f"rm -rf -- {tmp_path}/link"]
    assert not (tmp_path / "d").exists() and not (tmp_path / "link").is_symlink()


def test_the_effective_uid_is_read_from_proc_status_else_id(tmp_path):
    """euid_to: the Uid line's second field (effective, what `id -u` prints), the job's own
    in /proc/self/status; id -u only where there is no such line."""
    status = tmp_path / "status"
    status.write_text("Name:\tsh\nUmask:\t0077\nUid:\t1000\t4242\t1000\t1000\nGid:\t1\t1\t1\t1\n")
    other = tmp_path / "other"
    other.write_text("Name:\tsh\n")
    out = library_sh('id() { echo "id $*" >&2; command id "$@"; }; euid_to /proc/self/status; '
                     'printf "%s|" "$EU"; '
                     'euid_to "$1"; printf "%s|" "$EU"; euid_to "$2"; printf "%s" "$EU"',
                     str(status), str(other))
    assert out.stdout == f"{os.geteuid()}|4242|{os.geteuid()}"
    assert out.stderr == "id -u\n"


def test_head_is_read_from_the_loose_ref_else_asked_of_git(tmp_path):
    """head_to: HEAD's commit from the branch's loose ref (what checkout -B and commit
    write) without running git; packed refs and a detached HEAD ask git rev-parse."""
    repo = tmp_path / "repo"
    git("init", "-q", "-b", "orch/7-x", str(repo))
    git("-C", str(repo), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q",
        "--allow-empty", "-m", "one")
    sha = git("-C", str(repo), "rev-parse", "HEAD").strip()
    tail = ('git() { echo "git $*" >&2; command git "$@"; }; REPO=$1; head_to; printf "%s|" "$HS"; '
            'command git -C "$REPO" pack-refs --all; head_to; printf "%s|" "$HS"; '
            'command git -C "$REPO" checkout -q --detach; head_to; printf "%s" "$HS"')
    out = library_sh(tail, str(repo))
    assert out.stdout == f"{sha}|{sha}|{sha}", out.stderr
    assert out.stderr.splitlines() == [f"git -C {repo} rev-parse HEAD"] * 2
