"""Claims: which orch process has the right to act on a running task right now.

A task carries `claimed_by` ("hostname:pid") and `claimed_at` while one process starts,
finalizes or cancels it; every other process leaves it alone. A claim is taken and
released under the store lock. A claim whose process died (SIGKILL, OOM, reboot) does not
count, so the next pass takes over at once; a claim of another machine counts for
CLAIM_TTL.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from ..app import App
from ..core.models import Task
from ..store import now_iso, parse_time

CLAIM_TTL = timedelta(minutes=10)


def me() -> str:
    """This orch process, as a claim names it: "hostname:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claimant_alive(claimed_by: str | None) -> bool | None:
    """Whether the orch process named by a claim still runs: True/False for a process of
    this machine, None when it cannot be told (another machine, or no claim)."""
    if not claimed_by:
        return None
    host, _, pid = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_held(task: Task) -> bool:
    """True while another live orch process holds `task`'s claim."""
    if not task.claimed_by or task.claimed_by == me():
        return False
    if claimant_alive(task.claimed_by) is False:
        return False
    if not task.claimed_at:
        return False
    return datetime.now(UTC) - parse_time(task.claimed_at) < CLAIM_TTL


def mine() -> dict[str, str]:
    """The claim fields for a transition that takes the task for this process."""
    return {"claimed_by": me(), "claimed_at": now_iso()}


def take(app: App, task_id: str, **fields: Any) -> Task | None:
    """Take the right to act on running task `task_id`, recording `fields` (Store.update's)
    in the same write; None if it is not running or another live process has it."""
    with app.store.locked():
        task = app.store.get(task_id)
        if task.status != "running" or claim_held(task):
            return None
        return app.store.update(task_id, **mine(), **fields)


def release(app: App, task_id: str) -> None:
    """Give the claim back (after a failure: the next pass may try again at once)."""
    with app.store.locked():
        task = app.store.get(task_id)
        if task.claimed_by:
            app.store.update(task_id, claimed_by=None, claimed_at=None)
