"""Where a follow ends, over real OpenSSH (lifecycle/follow.py): at the job's done line
once its status is final, not when the host's `tail --pid` sees the process gone; and a
done line in the output while the job still runs is only a line.

The jobs here are small sh scripts started with remote.start, so that the test decides
exactly when the done line, the final status and the process's end happen.
"""

from __future__ import annotations

import asyncio

from orchestrator.core.models import Task
from orchestrator.fleet.pool import Fleet
from orchestrator.job import remote
from orchestrator.lifecycle.follow import follow

# A status as job.sh writes it (status.tmp + mv), with the process group of this shell.
_STATUS = """status() {
  printf 'state=%s\\npgid=%s\\nstarted_at=%s\\n' "$1" "$$" "$(date +%s)" > status.tmp
  mv -f status.tmp status
}
status running
"""

# Ends like job.sh (done line, then the final status), then its process stays: what an
# unreaped zombie looks like to `kill -0` on a host whose init reaps late.
LINGERS = _STATUS + """sleep 1   # the follow is under way (it tails a running job)
echo working
echo '::orch:: done succeeded turns=1 cost_usd=0 tests=none commit=-'
status succeeded
exec sleep 60
"""

# The final status comes a moment after the done line (a loaded host), then the process
# stays, as above.
LATE_STATUS = _STATUS + """sleep 1
echo working
echo '::orch:: done succeeded turns=1 cost_usd=0 tests=none commit=-'
sleep 0.5
status succeeded
exec sleep 60
"""

# Test output that looks like the done line, while the job still runs.
FAKE_DONE = _STATUS + """sleep 1
echo 'tests say:'
echo '::orch:: done succeeded turns=9 cost_usd=0 tests=passed commit=-'
sleep 1
echo 'the real work goes on'
echo '::orch:: done failed turns=1 cost_usd=0 tests=none commit=-'
status failed
"""


def _run(fleet, job_sh: str, ws_name: str):
    [host] = fleet.inventory()
    settings = fleet.settings(connect_timeout=5)
    ws = f"{host.workspace_root}/{ws_name}"
    task = Task(id=ws_name, repo="acme/calc", issue=1, title="t", specialty="general",
                status="running", host=host.name, workspace=ws)

    async def go():
        async with Fleet([host], settings) as pool:
            conn = await pool.connection(host.name)
            pgid = await remote.start(conn, ws, job_sh, "prompt\n", "fix\n")
            lines: list[str] = []
            try:
                followed = await asyncio.wait_for(follow(pool, task, lines.append), 30)
                after = await remote.read_status(conn, ws)
            finally:
                await conn.run(f"kill -KILL -{pgid} 2>/dev/null; true")
            return followed, after, lines
    return asyncio.run(go())


def test_follow_ends_at_the_final_status_without_waiting_for_the_process(make_ssh_fleet):
    followed, after, lines = _run(make_ssh_fleet(1, prefix="fend"), LINGERS, "fend0001")
    assert lines[-2:] == ["working", "::orch:: done succeeded turns=1 cost_usd=0 tests=none "
                                     "commit=-"]
    assert followed.status is not None and followed.status.state == "succeeded"
    # The follow returned while the job's process was still there: it ended on the
    # status, not on the process (the old follow waited for `tail --pid`, here 60 s).
    assert after is not None and after.alive


def test_a_final_status_a_moment_after_the_done_line_still_ends_the_follow(make_ssh_fleet):
    followed, after, lines = _run(make_ssh_fleet(1, prefix="late"), LATE_STATUS, "late0001")
    assert lines[-1].startswith("::orch:: done succeeded")
    assert followed.status is not None and followed.status.state == "succeeded"
    assert after is not None and after.alive      # again: not by the process's end


def test_a_done_line_in_the_output_does_not_end_the_follow(make_ssh_fleet):
    followed, _after, lines = _run(make_ssh_fleet(1, prefix="fake"), FAKE_DONE, "fake0001")
    assert lines == ["tests say:",
                     "::orch:: done succeeded turns=9 cost_usd=0 tests=passed commit=-",
                     "the real work goes on",
                     "::orch:: done failed turns=1 cost_usd=0 tests=none commit=-"]
    assert followed.status is not None and followed.status.state == "failed"


# Output full of done lines: each costs the follower a status read at most twice.
FAKE_MANY = _STATUS + """sleep 1
for i in 1 2 3 4 5; do echo "::orch:: done succeeded fake $i"; sleep 0.2; done
echo 'the end'
status failed
"""


def test_many_done_lines_in_the_output_lose_and_repeat_no_line(make_ssh_fleet):
    followed, _after, lines = _run(make_ssh_fleet(1, prefix="many"), FAKE_MANY, "many0001")
    assert lines == [f"::orch:: done succeeded fake {i}" for i in range(1, 6)] + ["the end"]
    # After MAX_FALSE_DONE of them the follow ends as before, by the process's end, and
    # leaves the status to its caller.
    assert followed.status is None


# The done line, then the job dies without its final status (SIGKILL, a host going down).
DIES = _STATUS + """sleep 1
echo '::orch:: done succeeded turns=1 cost_usd=0 tests=none commit=-'
kill -KILL $$
"""


def test_a_job_that_dies_after_its_done_line_ends_the_follow_without_a_status(make_ssh_fleet):
    followed, after, lines = _run(make_ssh_fleet(1, prefix="dies"), DIES, "dies0001")
    assert lines[-1].startswith("::orch:: done succeeded")
    # No final status: nothing is believed, the caller reads the status (reconcile then
    # decides between lost and failed), as for any job that vanished.
    assert followed.status is None and followed.log is None
    assert after is not None and after.vanished
