"""A person's commands on one task: cancel and retry.

The store refuses transitions that make no sense (cancelling a succeeded task,
retrying a running one) with a message that says what would (exit 2); here we add what
touches hosts (the job's process groups) and the forge (lifecycle/tell.py). `retry --now`
takes the same way in as `orch poll` does for a queued task (admit.admit_queued).

The trigger label: orch takes it off an issue whenever it is done with the issue
(finalize, a cancel, a task given up), and marks the task `finalized` once the forge
has heard. So a finished, finalized task whose issue carries the label again was
re-labelled by a person, and `orch poll` takes the issue again.
"""

from __future__ import annotations

from ..app import App
from ..core.models import Task
from ..errors import HostUnreachable, UsageError, WorkError
from . import claims, split
from .admit import admit_queued, probe
from .launch import start
from .refusals import Refused
from .tell import tell_finished_quietly, tell_running

CANCELLED = "cancelled by user"


async def cancel_task(app: App, task_id: str) -> Task:
    """Stop the job's whole process group (if it runs) and mark the task cancelled.

    If the host cannot be reached the task is still marked cancelled: the next
    `orch poll` kills any job of a task that is no longer running when the host is back.
    A task another orch process is starting or finalizing right now is refused (exit 1):
    cancelling under its feet would leave a job started after the cancel, or a PR opened
    for a cancelled task.
    """
    task = app.store.get(task_id)
    if task.kind == split.PARENT_KIND and task.status == "running":
        return await split.cancel(app, task, CANCELLED)
    if task.status not in ("queued", "running", "lost"):
        return app.store.cancel(task.id)   # raises InvalidTransition with the reason
    if task.status in ("queued", "lost"):
        with app.store.locked():
            task = app.store.get(task.id)
            if task.status in ("queued", "lost"):
                task = app.store.cancel(task.id, CANCELLED, error=CANCELLED,
                                        error_kind="cancelled")
        if task.status == "cancelled":
            return await tell_finished_quietly(app, app.forge(task.forge), task)
    # running: take the finalize claim, so no other orch process finalizes it meanwhile
    claimed = claims.take(app, task.id)
    if claimed is None:
        task = app.store.get(task.id)
        if task.status != "running":
            return app.store.cancel(task.id)   # finished meanwhile: the store says why not
        raise WorkError(f"task {task.id} is being started or finalized by another orch "
                        f"process ({task.claimed_by}); nothing was changed",
                        hint="try again in a moment")
    note = CANCELLED
    try:
        if claimed.host and claimed.workspace:
            note = await _stop_job(app, claimed)
        task = app.store.cancel(task.id, note, error=note, error_kind="cancelled",
                                claimed_by=None, claimed_at=None, fence=claimed.fence)
    except BaseException:
        claims.release(app, task.id, claimed.fence)
        raise
    return await tell_finished_quietly(app, app.forge(task.forge), task)


async def _stop_job(app: App, task: Task) -> str:
    from ..job import remote
    async with app.fleet() as fleet:
        try:
            conn = await fleet.connection(task.host or "")
            stopped = await remote.kill(conn, task.workspace or "")
        except HostUnreachable as exc:
            return (f"{CANCELLED}; {task.host} is unreachable ({exc.detail}), "
                    f"the job will be stopped when the host is back")
    if stopped:
        return f"{CANCELLED}; the job's process group was stopped"
    return f"{CANCELLED} (its job was not running)"


async def retry_task(app: App, task_id: str, *, now: bool = False) -> Task:
    """Queue a failed, cancelled or lost task again (attempts start over); with `now`,
    place and start it at once (if no host has room, it stays queued for `orch poll`)."""
    task = app.store.get(task_id)
    if task.kind in split.CHILD_KINDS and task.parent:
        raise UsageError(f"task {task.id} is a {task.kind} of split {task.parent}; a split is "
                         f"retried as a whole (its failed parts run again, the others are kept)",
                         hint=f"orch retry {task.parent}")
    if task.status == "succeeded":
        raise UsageError(f"task {task.id} succeeded ({task.pr_url or 'no PR'}); there is "
                         f"nothing to retry",
                         hint=f"label the issue `{app.settings.trigger.label}` again, or "
                              f"`orch dispatch {task.repo}#{task.issue}`, to run it once more")
    if task.status in ("queued", "running"):
        hint = (f"`orch cancel {task.id}` first to run it again from the start"
                if task.status == "running" else "the next `orch poll` dispatches it")
        raise UsageError(f"task {task.id} is {task.status}; only a failed, cancelled or lost "
                         f"task can be queued again", hint=hint)
    if task.kind == split.PARENT_KIND:
        parent = split.retry(app, task)   # its failed parts queued again
        if now:
            await _start_now(app, [c for c in app.store.children(parent) if c.status == "queued"])
        return app.store.get(parent.id)
    task = app.store.requeue(task.id, "retried by user", reset_attempts=True)
    if now:
        await _start_now(app, [task])
    return app.store.get(task.id)


async def _start_now(app: App, tasks: list[Task]) -> None:
    """Place and start queued `tasks` at once, each the way `orch poll` takes a queued
    task; one with no room (or that can no longer run) stays as it stands, for the next
    pass. One probe for all: the store's reserved tasks count on their hosts."""
    if not tasks:
        return
    async with app.fleet() as fleet:
        facts = await probe(fleet)
        for task in tasks:
            forge = app.forge(task.forge)
            try:
                reservation = await admit_queued(app, forge, facts, task)
            except Refused:
                continue
            started = await start(app, fleet, reservation)
            await tell_running(app, forge, started)
