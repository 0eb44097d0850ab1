"""Helpers for the remote-job tests (tests/test_job_*.py and the poll tests that start a
job by hand): a JobSpec for a task, an issue, start a job and wait for its end. Not a test
module: pytest does not collect it."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from orchestrator.core import shell
from orchestrator.core.models import Issue
from orchestrator.core.prompts import render_fix_prompt, render_prompt
from orchestrator.job import remote
from orchestrator.job.playbook import JobSpec, render_job
from orchestrator.transport.base import Connection

STANDIN = f"{shlex.quote(sys.executable)} -m orchestrator.demo.standin_agent"
IS_ROOT = os.geteuid() == 0
AUTHOR = "Orch Bot <orch-bot@example.com>"


def make_spec(tmp_path: Path, remote_url: str, issue: Issue, **kw) -> JobSpec:
    values = dict(task_id=uuid.uuid4().hex[:8], workspace=str(tmp_path / "work" / "task"),
                  clone_url=remote_url, branch=shell.branch_name(issue.number, issue.title),
                  commit_message=f"{issue.title} (#{issue.number})\n", agent_command=STANDIN,
                  allow_root=IS_ROOT, git_author=AUTHOR, agent_timeout=60, test_timeout=120,
                  kill_grace=1.0, max_fix_attempts=2)
    values.update(kw)
    return JobSpec(**values)


def make_issue(body: str, title: str = "Add a greeting", number: int = 7) -> Issue:
    return Issue(repo="acme/calc", number=number, title=title, body=body, labels=("orch",))


async def start_job(conn: Connection, spec: JobSpec, issue: Issue) -> int:
    prompt = render_prompt("general", issue=issue, repo=issue.repo, branch=spec.branch,
                           test_command=spec.test_command)
    fix = render_fix_prompt(issue=issue, repo=issue.repo, branch=spec.branch,
                            test_command=spec.test_command)
    return await remote.start(conn, spec.workspace, render_job(spec), prompt, fix)


async def wait_final(conn: Connection, workspace: str, deadline: float = 90) -> remote.JobStatus:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        st = await remote.read_status(conn, workspace)
        if st is not None and st.final and not st.alive:
            return st
        await asyncio.sleep(0.2)
    raise AssertionError(f"job in {workspace} did not finish: {st}")


def run_job(conn: Connection, spec: JobSpec, issue: Issue, deadline: float = 90) -> tuple[remote.JobStatus, str]:
    async def go():
        await start_job(conn, spec, issue)
        return await wait_final(conn, spec.workspace, deadline)
    st = asyncio.run(go())
    log = (Path(spec.workspace) / "job.log").read_text(encoding="utf-8", errors="replace")
    return st, log


def group_alive(pgid: int, settle: float = 5.0) -> bool:
    """Whether any process of the group is left, allowing `settle` seconds for init to
    reap orphaned zombies (some inits, this VM's included, do it lazily)."""
    end = time.monotonic() + settle
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if time.monotonic() > end:
            return True
        time.sleep(0.1)


def init_event(log: str) -> dict:
    for line in log.splitlines():
        if line.startswith('{"type":"system","subtype":"init"'):
            return json.loads(line)
    raise AssertionError("no init event in the log")


def assert_log_well_formed(log: str) -> None:
    assert log.endswith("\n"), "every line of job.log must end with a newline"
    assert "Terminated" not in log


def gone_soon(path: str | Path, within: float = 30.0) -> bool:
    """Whether `path` is gone within `within` seconds: finalize removes a remote host's
    workspace in the background (job/remote.py remove(wait=False))."""
    end = time.monotonic() + within
    while Path(path).exists() and time.monotonic() < end:
        time.sleep(0.05)
    return not Path(path).exists()
