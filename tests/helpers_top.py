"""What the `orch top` tests share: a job's status file read where it really is (the
loopback hosts' workspaces are local directories), waiting, and a task caught running in
its tests step."""

from __future__ import annotations

import time
from pathlib import Path


def job_status(workspace: str) -> dict[str, str]:
    """The job's own status file as key -> value ({} while there is none)."""
    try:
        text = Path(workspace, "status").read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def wait_until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while not (value := pred()):
        assert time.monotonic() < end, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.1)
    return value


def running_in_tests_step(w, title: str = "Add a file", turns: int = 3) -> dict:
    """Dispatch (detached) an issue whose agent run records `turns` turns, and wait until
    its job sits in the tests step (the world's test command must sleep)."""
    n = w.issue(title, f"orch-standin: turns {turns}\norch-standin: write a.txt a\n")
    started = w.orch_json("dispatch", f"{w.repo}#{n}", "--detach")
    assert started["status"] == "running", started
    wait_until(lambda: job_status(started["workspace"]).get("step") == "tests", 120,
               "the job to reach its tests step")
    return started
