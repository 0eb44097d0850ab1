"""Reconcile: bring every running task in line with what its host says.

One call per `orch poll` pass, before any new work is taken. For each running task
(concurrently: each costs a few SSH round trips): finished job -> finalize (exactly
once: finalize takes a claim in the store); job past its step's time limit -> kill and
fail; job dead without a final status, or never started -> lost; host unreachable for
longer than poll.lost_after -> lost. A lost task is queued again (bounded by
poll.max_attempts) or failed for good, and the issue is told. Jobs on a host that belong
to no running task there (a lost task's job on a host that came back, a cancelled
task's job) are killed.

A task another live orch process holds a claim on (it is starting or finalizing it) is
left to that process. A claim whose process died does not count (see
lifecycle/claims.py), so a pass after a crash takes over at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..app import App
from ..config.settings import PollSettings
from ..core.models import PARENT_KIND, HostFacts, Task
from ..errors import ForgeUnavailable, HostUnreachable, OrchError, UsageError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..job import remote
from ..store import now_iso, parse_time
from ..transport.base import Connection
from .claims import CLAIM_TTL, claim_held, claimant_alive
from .finalize import Verdict, finalize
from .launch import Next, again_or_give_up, lose
from .tell import tell_finished

# The forge a task names, by its kind (Task.forge): the run's forge of that kind.
ForgeFor = Callable[[str], Forge]

# A task marked running whose job has not written its status yet, reserved by a process
# we cannot see (another machine): how long to wait before deciding that process died
# between reserving the slot and starting the job (poll.start_grace). A reserving process
# of this machine is checked directly (dead: lost at once; alive: still starting the job).
START_GRACE_SECONDS = PollSettings.start_grace
START_GRACE_ENV = "ORCH_START_GRACE"      # e.g. "5s": for tests and impatient operators
# The job enforces its own time limits; orch steps in only this much later (backstop).
STEP_MARGIN_SECONDS = 60.0
CONCURRENCY = 16                           # tasks reconciled at once (per pass)


@dataclass
class ReconcileResult:
    finalized: list[Task] = field(default_factory=list)
    lost: list[Task] = field(default_factory=list)
    requeued: list[Task] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)       # "host:task-id" of stale jobs
    errors: list[str] = field(default_factory=list)
    forge_down: ForgeUnavailable | None = None            # GitHub was unavailable


def start_grace_seconds(app: App) -> float:
    """$ORCH_START_GRACE, else the config's poll.start_grace."""
    from ..config.load import parse_duration
    raw = os.environ.get(START_GRACE_ENV)
    if raw:
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise UsageError(f"${START_GRACE_ENV}: {exc}") from None
    return float(app.settings.poll.start_grace)


def _age(stamp: str | None, now: datetime) -> float:
    return (now - parse_time(stamp)).total_seconds() if stamp else 0.0


def _step_limit(app: App, step: str | None) -> float | None:
    """The wall-clock limit of a job step (None: the step has no limit of its own)."""
    s = app.settings
    if step and (step.startswith("agent") or step.startswith("fix")):
        return s.agent.timeout + STEP_MARGIN_SECONDS
    if step and step.startswith("test"):
        return s.tests.timeout + STEP_MARGIN_SECONDS
    return None


async def reconcile(app: App, fleet: Fleet, facts: dict[str, HostFacts],
                    forge_for: ForgeFor, *, start_grace: float | None = None) -> ReconcileResult:
    """Reconcile every running task; `forge_for(kind)` gives the forge to finalize with.

    Never raises for one task's trouble (it goes to `errors`); an unavailable forge is
    returned in `forge_down` after everything that needs no forge was done.
    """
    out = ReconcileResult()
    grace = start_grace if start_grace is not None else start_grace_seconds(app)
    now = datetime.now(UTC)
    # A crash between mark_lost and requeue leaves a task lost: finish that step now.
    for task in reversed(app.store.list(status="lost")):
        await _guard(app, out, task, _again_or_give_up(app, forge_for, task,
                                                       task.error or "lost", out))
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(task: Task) -> None:
        async with sem:
            await _guard(app, out, task, _one(app, fleet, facts, forge_for, task, now, grace, out))

    # a split's parent has no job of its own (lifecycle/split.py moves it on)
    await asyncio.gather(*(one(t) for t in app.store.list(status="running")
                           if t.kind != PARENT_KIND))
    await _kill_strays(app, fleet, facts, out)
    return out


async def _guard(app: App, out: ReconcileResult, task: Task, work: Awaitable[None]) -> None:
    """Run one task's reconcile step; its failure is recorded, not raised.

    Anything else that goes wrong for one task (a bug, or something hostile on its host
    that orch did not foresee) is recorded on that task and in `errors`, and the pass
    goes on with the other tasks: one bad task must never stop every `orch poll`.
    """
    try:
        await work
    except ForgeUnavailable as exc:
        out.forge_down = out.forge_down or exc
    except OrchError as exc:
        out.errors.append(f"task {task.id}: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - recorded on the task, see the docstring
        what = f"reconcile failed at {now_iso()}: {type(exc).__name__}: {exc}"[:500]
        out.errors.append(f"task {task.id}: {what}")
        try:
            app.store.update(task.id, error=what)
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            pass


async def _one(app: App, fleet: Fleet, facts: dict[str, HostFacts], forge_for: ForgeFor,
               task: Task, now: datetime, grace: float, out: ReconcileResult) -> None:
    # Another live orch process holds the task (it is starting, finalizing or cancelling
    # it): leave it to that process, unless it was to start the job and has not, for
    # longer than the start grace.
    held = claim_held(task)
    f = facts.get(task.host or "")
    if held and (f is None or not f.reachable):
        return
    if f is None or not f.reachable:
        await _unreachable(app, forge_for, task, f.error if f else "not in the inventory",
                           now, out)
        return
    if task.unreachable_since:
        task = app.store.update(task.id, unreachable_since=None)
    try:
        conn = await fleet.connection(task.host or "")
        status = await remote.read_status(conn, task.workspace or "")
    except HostUnreachable as exc:
        await _unreachable(app, forge_for, task, exc.detail, now, out)
        return
    if status is None:
        starter = claimant_alive(task.claimed_by)
        if held and starter is None and _age(task.started_at, now) <= CLAIM_TTL.total_seconds():
            return   # another machine's claim whose lease runs: it may still start the job
        if starter is False or (starter is not True and _age(task.started_at, now) > grace) \
                or _age(task.started_at, now) > max(grace, CLAIM_TTL.total_seconds()):
            who = "the orch process that reserved it died" if starter is False else \
                f"no job {grace:.0f}s after it was reserved"
            await _lose(app, forge_for, task, f"the job never started ({who})", out)
        return
    if held:
        return
    if status.state == "running":
        if not status.alive:
            await _lose(app, forge_for, task,
                        "the job died without finishing (host rebooted or job killed)", out)
            return
        limit = _step_limit(app, status.step)
        since = float(status.updated_at or 0)
        if limit is not None and since and now.timestamp() - since > limit:
            await _timeout(app, fleet, forge_for, task, conn, status, limit, out)
        return
    done = await finalize(app, fleet, forge_for(task.forge), task, status)
    if done.status != "running":
        out.finalized.append(done)


async def _timeout(app: App, fleet: Fleet, forge_for: ForgeFor, task: Task, conn: Connection,
                   status: remote.JobStatus, limit: float, out: ReconcileResult) -> None:
    """The backstop: the job did not stop itself in time. Kill its process groups, then
    finalize it as failed (comment, labels), like a job that timed out on its own."""
    await remote.kill(conn, task.workspace or "")
    reason = (f"timeout: step {status.step} ran over {limit:.0f}s; the job's process "
              f"group was killed by orch")
    done = await finalize(app, fleet, forge_for(task.forge), task, status,
                          verdict=Verdict("failed", reason, "timeout"))
    if done.status != "running":
        out.finalized.append(done)


async def _unreachable(app: App, forge_for: ForgeFor, task: Task, why: str | None,
                       now: datetime, out: ReconcileResult) -> None:
    if not task.unreachable_since:
        app.store.update(task.id, unreachable_since=now_iso())
        return
    if _age(task.unreachable_since, now) >= app.settings.poll.lost_after:
        await _lose(app, forge_for, task,
                    f"host {task.host} unreachable since {task.unreachable_since}: {why}", out)


async def _lose(app: App, forge_for: ForgeFor, task: Task, reason: str,
                out: ReconcileResult) -> None:
    lost = lose(app, task, reason)
    if lost is None:
        return   # finished or cancelled meanwhile by another orch process
    out.lost.append(lost)
    await _again_or_give_up(app, forge_for, lost, reason, out)


async def _again_or_give_up(app: App, forge_for: ForgeFor, task: Task, reason: str,
                            out: ReconcileResult) -> None:
    """lost -> queued (to be placed again, on another host if one can take it), or, out
    of attempts, lost -> failed and the issue is told."""
    after, nxt = again_or_give_up(app, task, f"lost: {reason}")
    if nxt is Next.QUEUED:
        out.requeued.append(after)
    elif nxt in (Next.GIVEN_UP, Next.SUPERSEDED):
        out.errors.append(f"task {task.id}: {after.error}")
        if nxt is Next.GIVEN_UP:
            await tell_finished(app, forge_for(after.forge), after)


async def _kill_strays(app: App, fleet: Fleet, facts: dict[str, HostFacts],
                       out: ReconcileResult) -> None:
    """Kill jobs running on a host for a task that is not running there any more."""
    jobs: list[tuple[str, str]] = []
    for name, f in facts.items():
        if not f.reachable:
            continue
        for task_id in f.running_task_ids:
            try:
                task = app.store.get(task_id)
            except OrchError:
                continue   # a job of another orch state dir: not ours to judge
            if task.id != task_id:
                continue   # only a prefix matched: not one of ours
            if task.status == "running" and task.host == name:
                continue
            jobs.append((name, task_id))

    async def kill(name: str, task_id: str) -> None:
        host = fleet.host(name)
        # Judge again right before killing: the task may have been placed on this very
        # host since the probe (then the job is its own, and start refuses to run twice).
        task = app.store.get(task_id)
        if task.status == "running" and task.host == name:
            return
        try:
            conn = await fleet.connection(name)
            if await remote.kill(conn, f"{host.workspace_root.rstrip('/')}/{task_id}"):
                out.killed.append(f"{name}:{task_id}")
        except OrchError as exc:
            out.errors.append(f"{name}: could not stop stale job {task_id}: {exc.message}")

    await asyncio.gather(*(kill(n, t) for n, t in jobs))
