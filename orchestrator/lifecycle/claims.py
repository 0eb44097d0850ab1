"""Claims: which orch process has the right to act on a running task right now.

A task carries `claimed_by` ("hostname:pid"), a `fence` and a lease (`lease_until`) while
one process starts, finalizes or cancels it; every other process leaves it alone. The
store takes a claim in one atomic operation (Store.claim: it raises the fence) and
refuses a write made with a fence that is no longer current (FenceLost), so a process
paused past its lease can change nothing once another took over. A claim whose process
died (SIGKILL, OOM, reboot) does not count for a process of this machine, so the next
pass takes over at once; a claim of another machine counts until its lease runs out
(10 minutes; $ORCH_CLAIM_LEASE).
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
# The machine name a claim carries (default: the hostname). Orchestrators that share a
# database and a hostname (containers) must each have their own, or each would judge
# the other's claims by its own process table.
NODE_ENV = "ORCH_NODE"


def node() -> str:
    return os.environ.get(NODE_ENV) or socket.gethostname()


def me() -> str:
    """This orch process, as a claim names it: "hostname:pid"."""
    return f"{node()}:{os.getpid()}"


def claimant_alive(claimed_by: str | None) -> bool | None:
    """Whether the orch process named by a claim still runs: True/False for a process of
    this machine, None when it cannot be told (another machine, or no claim)."""
    if not claimed_by:
        return None
    host, _, pid = claimed_by.rpartition(":")
    if host != node() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_held(task: Task) -> bool:
    """True while another live orch process holds `task`'s claim (a hint for what to
    leave alone; Store.claim is what decides)."""
    if not task.claimed_by or task.claimed_by == me():
        return False
    if claimant_alive(task.claimed_by) is False:
        return False
    if task.lease_until:
        return datetime.now(UTC) < parse_time(task.lease_until)
    if not task.claimed_at:   # a claim written before leases: claimed_at + the TTL
        return False
    return datetime.now(UTC) - parse_time(task.claimed_at) < CLAIM_TTL


def mine() -> dict[str, str]:
    """The claim fields for a transition that takes the task for this process."""
    return {"claimed_by": me(), "claimed_at": now_iso()}


def take(app: App, task_id: str, **fields: Any) -> Task | None:
    """Take the right to act on running task `task_id`, recording `fields` (Store.update's)
    in the same write: the task with its new fence (every later write passes
    `fence=task.fence`), or None if it is not running or another live process holds an
    unexpired claim."""
    task = app.store.get(task_id)
    dead = task.claimed_by if claimant_alive(task.claimed_by) is False else None
    return app.store.claim(task.id, me(), take_from=dead, **fields)


def release(app: App, task_id: str, fence: int | None = None) -> None:
    """Give the claim back (after a failure: the next pass may try again at once); a
    claim another process took over meanwhile (`fence` not current) is left alone."""
    app.store.release(task_id, fence)
