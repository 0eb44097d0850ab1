"""Reconcile: bring every running task in line with what its host says.

One call per `orch poll` pass, before any new work is taken. For each running task:
finished job -> finalize (exactly once); job past its step's time limit -> kill and
fail; job dead without a final status, or never started -> lost; host unreachable for
longer than poll.lost_after -> lost. A lost task is queued again (bounded by
poll.max_attempts) or failed for good. Jobs on a host that belong to no running task
there (a lost task's job on a host that came back, a cancelled task's job) are killed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from .app import App
from .errors import HostUnreachable, OrchError
from .fleet import Fleet
from .job import remote
from .models import HostFacts, Task
from .store import InvalidTransition, now_iso, parse_time

# A task marked running whose job has not written its status yet: how long to wait
# before deciding the orchestrator died between reserving the slot and starting the job.
START_GRACE_SECONDS = 120.0


@dataclass
class ReconcileResult:
    finalized: list[Task] = field(default_factory=list)
    lost: list[Task] = field(default_factory=list)
    requeued: list[Task] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)       # "host:task-id" of stale jobs
    errors: list[str] = field(default_factory=list)


def _age(stamp: str | None, now: datetime) -> float:
    return (now - parse_time(stamp)).total_seconds() if stamp else 0.0


def _step_limit(app: App, step: str | None) -> float | None:
    """The wall-clock limit of a job step (None: the step has no limit of its own)."""
    s = app.settings
    margin = 60.0   # the job enforces the limit itself; orch is the backstop
    if step and (step.startswith("agent") or step.startswith("fix")):
        return s.agent.timeout + margin
    if step and step.startswith("test"):
        return s.tests.timeout + margin
    return None


async def reconcile(app: App, fleet: Fleet, facts: dict[str, HostFacts],
                    forge_for, *, start_grace: float = START_GRACE_SECONDS) -> ReconcileResult:
    """Reconcile every running task; `forge_for(kind)` gives the forge to finalize with."""
    out = ReconcileResult()
    now = datetime.now(timezone.utc)
    for task in app.store.list(status="running"):
        try:
            await _one(app, fleet, facts, forge_for, task, now, start_grace, out)
        except OrchError as exc:
            out.errors.append(f"task {task.id}: {exc.message}")
    await _kill_strays(app, fleet, facts, out)
    return out


async def _one(app: App, fleet: Fleet, facts: dict[str, HostFacts], forge_for, task: Task,
               now: datetime, start_grace: float, out: ReconcileResult) -> None:
    f = facts.get(task.host or "")
    if f is None or not f.reachable:
        await _unreachable(app, task, f.error if f else "not in the inventory", now, out)
        return
    if task.unreachable_since:
        task = app.store.update(task.id, unreachable_since=None)
    try:
        conn = await fleet.connection(task.host or "")
        status = await remote.read_status(conn, task.workspace or "")
    except HostUnreachable as exc:
        await _unreachable(app, task, exc.detail, now, out)
        return
    if status is None:
        if _age(task.started_at, now) > start_grace:
            _lose(app, task, "the job never started (orch stopped before starting it)", out)
        return
    if status.state == "running":
        if not status.alive:
            _lose(app, task, "the job died without finishing (host rebooted or job killed)", out)
            return
        limit = _step_limit(app, status.step)
        since = float(status.updated_at or 0)
        if limit is not None and since and now.timestamp() - since > limit:
            await remote.kill(conn, task.workspace or "")
            app.store.fail(task.id, f"timeout: step {status.step} ran over {limit:.0f}s; "
                                    f"the job's process group was killed")
        return
    from .pipeline.finalize import finalize
    done = await finalize(app, fleet, forge_for(task.forge), task)
    if done.status != "running":
        out.finalized.append(done)


async def _unreachable(app: App, task: Task, why: str | None, now: datetime,
                       out: ReconcileResult) -> None:
    if not task.unreachable_since:
        app.store.update(task.id, unreachable_since=now_iso())
        return
    if _age(task.unreachable_since, now) >= app.settings.poll.lost_after:
        _lose(app, task, f"host {task.host} unreachable since {task.unreachable_since}: {why}", out)


def _lose(app: App, task: Task, reason: str, out: ReconcileResult) -> None:
    lost = app.store.mark_lost(task.id, reason)
    out.lost.append(lost)
    try:
        out.requeued.append(app.store.requeue(task.id, f"lost: {reason}",
                                              max_attempts=app.settings.poll.max_attempts))
    except InvalidTransition as exc:
        app.store.fail(task.id, f"lost and out of attempts: {exc.message}")


async def _kill_strays(app: App, fleet: Fleet, facts: dict[str, HostFacts],
                       out: ReconcileResult) -> None:
    """Kill jobs running on a host for a task that is not running there any more."""
    for name, f in facts.items():
        if not f.reachable or not f.running_task_ids:
            continue
        host = fleet.host(name)
        for task_id in f.running_task_ids:
            try:
                task = app.store.get(task_id)
                keep = task.status == "running" and task.host == name
            except OrchError:
                keep = False   # a job of another orch state dir: not ours to judge
                continue
            if keep:
                continue
            try:
                conn = await fleet.connection(name)
                await remote.kill(conn, f"{host.workspace_root.rstrip('/')}/{task_id}")
                out.killed.append(f"{name}:{task_id}")
            except OrchError as exc:
                out.errors.append(f"{name}: could not stop stale job {task_id}: {exc.message}")
