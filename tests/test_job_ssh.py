"""The remote job over real OpenSSH: it outlives the SSH link, and a follower that lost
the link resumes from its byte offset without repeating or losing a line."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from pathlib import Path

from orchestrator.core import shell
from orchestrator.core.models import Issue
from orchestrator.core.prompts import render_fix_prompt, render_prompt
from orchestrator.errors import HostUnreachable
from orchestrator.job import remote
from orchestrator.job.playbook import JobSpec, render_job
from orchestrator.transport import connect

STANDIN = f"{shlex.quote(sys.executable)} -m orchestrator.demo.standin_agent"


def test_job_survives_a_dropped_link_and_follow_resumes(make_ssh_fleet, git_remote):
    fleet = make_ssh_fleet(1, prefix="job")
    [host] = fleet.inventory()
    settings = fleet.settings(connect_timeout=3)
    issue = Issue(repo="acme/calc", number=3, title="Slow work",
                  body="orch-standin: write slow.txt done\norch-standin: turns 12\n"
                       "orch-standin: slow 0.3\n")
    ws = f"{host.workspace_root}/sshjob01"
    spec = JobSpec(task_id="sshjob01", workspace=ws, clone_url=git_remote.url,
                   branch=shell.branch_name(issue.number, issue.title),
                   commit_message="Slow work (#3)\n", agent_command=STANDIN, allow_root=True,
                   test_command=f"{shlex.quote(sys.executable)} -m pytest -q", kill_grace=1)
    prompt = render_prompt("general", issue=issue, repo=issue.repo, branch=spec.branch,
                           test_command=spec.test_command)
    fix = render_fix_prompt(issue=issue, repo=issue.repo, branch=spec.branch,
                            test_command=spec.test_command)

    async def go():
        conn = await connect(host, settings.ssh)
        pgid = await remote.start(conn, ws, render_job(spec), prompt, fix)
        got: list[tuple[int, str]] = []
        try:
            async for item in remote.follow(conn, ws, 0):
                got.append(item)
                if len(got) == 14:
                    fleet.stop(host.name, drop_sessions=True)    # the link drops mid-stream
        except HostUnreachable:
            pass
        dropped_at = len(got)
        await asyncio.sleep(1.0)
        fleet.start(host.name)
        conn = await connect(host, settings.ssh)
        st = await remote.read_status(conn, ws)
        assert st is not None and st.pgid == pgid
        still_running = st.state == "running"
        async for item in remote.follow(conn, ws, got[-1][0]):
            got.append(item)
        st = await remote.read_status(conn, ws)
        deadline = time.monotonic() + 30
        while st.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            st = await remote.read_status(conn, ws)
        await conn.close()
        return got, dropped_at, still_running, st

    got, dropped_at, still_running, st = asyncio.run(go())
    assert st.state == "succeeded", st.error
    assert still_running and dropped_at >= 14            # the job outlived the link
    data = (Path(ws) / "job.log").read_bytes()
    assert [line for _, line in got] == data.decode().split("\n")[:-1]
    assert got[-1][0] == len(data)
    assert git_remote.read(spec.branch, "slow.txt") == "done\n"


def test_kill_over_ssh(make_ssh_fleet, git_remote):
    fleet = make_ssh_fleet(1, prefix="kil")
    [host] = fleet.inventory()
    settings = fleet.settings(connect_timeout=3)
    issue = Issue(repo="acme/calc", number=4, title="Hang", body="orch-standin: sleep-forever\n")
    ws = f"{host.workspace_root}/sshkill1"
    spec = JobSpec(task_id="sshkill1", workspace=ws, clone_url=git_remote.url, branch="orch/4-hang",
                   commit_message="x\n", agent_command=STANDIN, allow_root=True, kill_grace=1)
    prompt = render_prompt("general", issue=issue, repo=issue.repo, branch=spec.branch,
                           test_command=None)

    async def go():
        conn = await connect(host, settings.ssh)
        pgid = await remote.start(conn, ws, render_job(spec), prompt, prompt)
        for _ in range(100):
            st = await remote.read_status(conn, ws)
            if st.step == "agent" and '"subtype":"init"' in await remote.log_tail(conn, ws, 5):
                break
            await asyncio.sleep(0.1)
        killed = await remote.kill(conn, ws, grace=1)
        st = await remote.read_status(conn, ws)
        await remote.remove(conn, ws)
        gone = await remote.read_status(conn, ws)
        await conn.close()
        return pgid, killed, st, gone

    pgid, killed, st, gone = asyncio.run(go())
    assert killed and st.state == "cancelled" and gone is None
