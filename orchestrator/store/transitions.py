"""The rules of a task's life, the same for every backend (pure: no files, no database).

A backend reads the task under its own lock (the file lock; a row lock in PostgreSQL),
asks these functions what the task becomes (or which error refuses the change), and
writes the result in the same critical section. So TinyDB and PostgreSQL refuse the same
transitions with the same messages, and take claims with the same fence semantics:

- a claim (`claimed_by` set) raises the task's `fence` by one and gives it a lease
  (`lease_until`, from the backend's clock: the database's in PostgreSQL);
- a write made with a fence (`fence=N`) is refused with FenceLost unless N is still the
  task's fence and its lease has not run out (a paused orchestrator that comes back after
  another took the task over can change nothing);
- a claim is won only if the task is running and nobody else holds an unexpired lease.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from ..core.models import FINISHED_STATUSES, Task
from ..errors import UsageError
from .errors import FenceLost, InvalidTransition

TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    # action: (statuses it may start from, status it leads to)
    "start": (("queued",), "running"),
    "succeed": (("running",), "succeeded"),
    "fail": (("queued", "running", "lost"), "failed"),
    "cancel": (("queued", "running", "lost"), "cancelled"),
    "mark_lost": (("running",), "lost"),
    "requeue": (("lost", "failed", "cancelled"), "queued"),
}
PARTICIPLE = {"start": "started", "succeed": "marked succeeded", "fail": "marked failed",
              "cancel": "cancelled", "mark_lost": "marked lost", "requeue": "queued again"}
NOT_UPDATABLE = {"id", "status", "history", "fence", "lease_until"}
FIELDS = set(Task.__dataclass_fields__)

DEFAULT_LEASE = timedelta(minutes=10)
LEASE_ENV = "ORCH_CLAIM_LEASE"       # e.g. "5s": for tests and impatient operators


def lease() -> timedelta:
    """How long a claim lasts without renewal: $ORCH_CLAIM_LEASE, else 10 minutes."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return DEFAULT_LEASE
    from ..config.load import parse_duration
    try:
        return timedelta(seconds=parse_duration(raw))
    except ValueError as exc:
        raise UsageError(f"${LEASE_ENV}: {exc}") from None


def check_fields(fields: dict[str, Any], what: str) -> None:
    """Refuse fields a caller may not set directly (ValueError) or that no task has."""
    bad = sorted(set(fields) & NOT_UPDATABLE)
    if bad:
        raise ValueError(f"{what} cannot change {', '.join(bad)}: status changes only "
                         f"through the named transitions, claims through claim/renew")
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise TypeError(f"Task has no field(s) {', '.join(unknown)}")


def lease_expired(task: Task, now: datetime, length: timedelta = DEFAULT_LEASE) -> bool:
    """Whether `task`'s claim has run out. A claim written by the previous version has no
    lease: it runs `length` from its `claimed_at` (what that version's CLAIM_TTL meant)."""
    from .clock import parse_time
    if task.lease_until:
        return parse_time(task.lease_until) <= now
    if task.claimed_by and task.claimed_at:
        return parse_time(task.claimed_at) + length <= now
    return True


def check_fence(task: Task, fence: int | None, now: datetime) -> None:
    """FenceLost unless `fence` (when given) is the task's current, unexpired claim."""
    if fence is None:
        return
    if task.fence != fence or not task.claimed_by or lease_expired(task, now):
        raise FenceLost(task, fence)


def renewed(task: Task, fence: int, now: datetime, length: timedelta) -> bool:
    """Check claim `fence` (FenceLost if it is not current) and extend its lease when less
    than half of it is left; True when it changed (a write is due). A claim with more
    than half its lease left is only checked: the store is not written for nothing."""
    check_fence(task, fence, now)
    from .clock import parse_time
    if task.lease_until and parse_time(task.lease_until) - now > length / 2:
        return False
    task.lease_until = iso(now + length)
    return True


def may_claim(task: Task, owner: str, now: datetime, take_from: str | None,
              length: timedelta = DEFAULT_LEASE) -> bool:
    """Whether `owner` wins a claim on running `task` now: nobody holds it, or it is
    `owner`'s own, or its lease ran out, or its holder is `take_from` (a process of this
    machine the caller saw dead)."""
    return task.status == "running" and free_for(task, owner, now, take_from, length)


def free_for(task: Task, owner: str, now: datetime, take_from: str | None,
             length: timedelta = DEFAULT_LEASE) -> bool:
    """Nobody but `owner` (or `take_from`, seen dead) holds an unexpired claim on `task`."""
    return (not task.claimed_by or task.claimed_by == owner
            or lease_expired(task, now, length)
            or (take_from is not None and task.claimed_by == take_from))


def check_free(task: Task, owner: str | None, now: datetime, take_from: str | None,
               length: timedelta) -> None:
    """InvalidTransition when another process holds an unexpired claim on `task` (a task
    being started or finalized is not lost; its claimant decides). No `owner`: no check."""
    if owner is None or free_for(task, owner, now, take_from, length):
        return
    raise InvalidTransition(task, "marked lost", (), detail=(
        f"task {task.id} is held by {task.claimed_by} until {task.lease_until or 'its claim runs out'}; "
        f"it was not marked lost"))


def set_claim(task: Task, fields: dict[str, Any], now: datetime, length: timedelta) -> None:
    """Apply `fields` to `task`; setting `claimed_by` is a claim (fence + 1, new lease),
    clearing it gives the claim back (no lease)."""
    for k, v in fields.items():
        setattr(task, k, v)
    if "claimed_by" in fields:
        if fields["claimed_by"]:
            task.fence += 1
            task.lease_until = iso(now + length)
            task.claimed_at = iso(now)
        else:
            task.lease_until = None
            task.claimed_at = None


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def transition(task: Task, action: str, reason: str, fields: dict[str, Any], now: datetime,
               length: timedelta, *, attempt: bool = False,
               previous: dict[str, Any] | None = None) -> Task:
    """`task` after `action` (InvalidTransition if its status does not allow it)."""
    allowed, target = TRANSITIONS[action]
    check_fields(fields, "a transition")
    if task.status not in allowed:
        raise InvalidTransition(task, PARTICIPLE[action], allowed)
    stamp = iso(now)
    entry: dict[str, Any] = {"at": stamp, "from": task.status, "to": target, "reason": reason}
    set_claim(task, fields, now, length)
    host = task.host or (previous or {}).get("host")
    if host:
        entry["host"] = host
    if previous and any(previous.values()):
        entry["previous"] = previous
    if attempt:
        task.attempts += 1
    if target in FINISHED_STATUSES:
        task.finished_at = stamp
    task.status = target
    task.history = [*task.history, entry]
    return task


def requeue_fields(task: Task, max_attempts: int | None,
                   reset_attempts: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checks of `requeue` before the one-live-task rule, and what it sets:
    (fields, previous). InvalidTransition when the task may not be queued again."""
    allowed, _ = TRANSITIONS["requeue"]
    if task.status not in allowed:
        raise InvalidTransition(task, PARTICIPLE["requeue"], allowed)
    if (task.status == "lost" and max_attempts is not None and not reset_attempts
            and task.attempts >= max_attempts):
        raise InvalidTransition(
            task, "queued again", ("lost", "failed", "cancelled"),
            detail=(f"task {task.id} is lost after {task.attempts} of {max_attempts} "
                    f"attempts; it will not be queued again automatically"))
    previous = {"host": task.host, "pid": task.pid, "workspace": task.workspace}
    fields: dict[str, Any] = dict(host=None, pid=None, workspace=None, error=None,
                                  error_kind=None, finished_at=None, unreachable_since=None,
                                  finalized=False, claimed_by=None)
    if reset_attempts:
        fields["attempts"] = 0
    return fields, previous


def new_task(task_id: str, repo: str, issue: int, title: str, specialty: str, forge: str,
             now: datetime, fields: dict[str, Any]) -> Task:
    """A queued task as `create` records it."""
    bad = sorted(set(fields) & (NOT_UPDATABLE | {"created_at"}))
    if bad:
        raise ValueError(f"Store.create cannot set {', '.join(bad)}")
    stamp = iso(now)
    return Task(id=task_id, repo=repo, issue=int(issue), title=title, specialty=specialty,
                forge=forge, created_at=stamp, **fields,
                history=[{"at": stamp, "from": None, "to": "queued",
                          "reason": f"created (specialty {specialty})"}])
