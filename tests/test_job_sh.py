"""The library of job.sh (the prelude of playbooks/dispatch.yml), driven directly under dash.

Each test renders the real job.sh, replaces its last line (`orch_main "$@"`) by a few
lines that call the functions under test, and runs it with dash, the /bin/sh of Debian
hosts. No host, no agent: the functions are what is tested.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.job.playbook import JobSpec, render_job

DASH = shutil.which("dash")
pytestmark = pytest.mark.skipif(DASH is None, reason="dash is the hosts' /bin/sh; not installed")


def job_library(ws: Path, **spec_values) -> str:
    """job.sh without its call to orch_main, its workspace at `ws`."""
    values = dict(task_id="t1", workspace=str(ws), clone_url="u", branch="b", commit_message="m")
    values.update(spec_values)
    script = render_job(JobSpec(**values))
    assert script.rstrip().endswith('orch_main "$@"')
    return script.rstrip()[:-len('orch_main "$@"')]


def run_dash(script: str, *, timeout: float = 60, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DASH, "-c", script], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def group_members(pgid: int) -> list[str]:
    """The live processes of a process group (zombies are dead: this VM's init reaps lazily)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)], capture_output=True,
                         text=True)
    return [line.strip() for line in out.stdout.splitlines()
            if line.strip() and not line.split()[1].startswith("Z")]


# --------------------------------------------------------------------------- the watchdog


def test_a_guarded_command_that_exits_at_once_never_waits_for_the_watchdog(tmp_path):
    """Issue 16 item 1: the stop of the watchdog must not depend on a trap it may not have
    installed yet. Under the job's own TERM trap (as in a real job), 1000 guarded runs of
    `true` each end well within a second; before the fix one in a few dozen lost the
    stop and hung for the whole limit (here 30 s, the test's `tests.timeout`)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    harness = """
LOG="$WS/job.log"; : > "$LOG"
trap 'on_signal TERM' TERM
i=0
while [ "$i" -lt 1000 ]; do
  t0=$(date +%s%N)
  guarded tests 30 1 /dev/null true
  t1=$(date +%s%N)
  [ "$GUARD_RC" -eq 0 ] || { echo "run $i: rc $GUARD_RC"; exit 1; }
  if [ $((t1 - t0)) -ge 1000000000 ]; then echo "run $i took $(((t1 - t0) / 1000000)) ms"; exit 1; fi
  i=$((i + 1))
done
trap - TERM
echo "all $i fast"
"""
    proc = subprocess.Popen([DASH, "-c", job_library(ws) + harness], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    left = group_members(proc.pid)      # right away: an orphaned `sleep 1` would still be there
    assert out.strip().endswith("all 1000 fast"), out[-2000:] + err[-2000:]
    assert not (ws / "status").exists(), "no signal reached the job: it must not have finished"
    assert left == [], f"the stopped watchdogs left processes in the job's group: {left}"
