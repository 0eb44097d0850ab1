"""A person's commands on one task: cancel and retry; and telling the forge how a task
ended when finalize did not (cancelled, failed before its job ran, lost for good).

The store refuses transitions that make no sense (cancelling a succeeded task,
retrying a running one) with a message that says what would (exit 2); here we add what
touches hosts and the forge.

The trigger label: orch takes it off an issue whenever it is done with the issue
(finalize, a cancel, a task given up), and marks the task `finalized` once the forge
has heard. So a finished, finalized task whose issue carries the label again was
re-labelled by a person, and `orch poll` takes the issue again.
"""

from __future__ import annotations

import asyncio

from ..app import App
from ..core.models import Task
from ..errors import HostUnreachable, OrchError, UsageError, WorkError
from ..forge.base import Forge
from . import claims


async def report_finished(app: App, forge: Forge, task: Task, *, status: str | None = None,
                          reason: str | None = None) -> Task:
    """Comment on the issue and set its labels for a task that ends `status` (default:
    its status now) without finalize: orch:failed for a failure, orch:running and the
    trigger label off. Marks the task finalized when the task has that status already.
    Forge errors propagate (the task then stays unreported; `orch poll` reports it later).
    """
    from ..core import report
    status = status or task.status
    reason = reason or task.error or status
    trigger = app.settings.trigger.label
    if status == "failed":
        body = report.comment_failed(task, reason, "")
        add, remove = [report.LABEL_FAILED], [report.LABEL_RUNNING, report.LABEL_DONE, trigger]
    else:
        body = report.comment_stopped(task, status, reason, trigger)
        add, remove = [], [report.LABEL_RUNNING, trigger]
    cid = await asyncio.to_thread(forge.upsert_comment, task.repo, task.issue, body,
                                  task.comment_id)
    await asyncio.to_thread(forge.set_labels, task.repo, task.issue, add, remove)
    current = app.store.get(task.id)
    if current.status == status:
        return app.store.update(task.id, comment_id=cid, finalized=True)
    return app.store.update(task.id, comment_id=cid)


async def cancel_task(app: App, task_id: str) -> Task:
    """Stop the job's whole process group (if it runs) and mark the task cancelled.

    If the host cannot be reached the task is still marked cancelled: the next
    `orch poll` kills any job of a task that is no longer running when the host is back.
    A task another orch process is starting or finalizing right now is refused (exit 1):
    cancelling under its feet would leave a job started after the cancel, or a PR opened
    for a cancelled task.
    """
    task = app.store.get(task_id)
    if task.status not in ("queued", "running", "lost"):
        return app.store.cancel(task.id)   # raises InvalidTransition with the reason
    if task.status in ("queued", "lost"):
        with app.store.locked():
            task = app.store.get(task.id)
            if task.status in ("queued", "lost"):
                task = app.store.cancel(task.id, "cancelled by user", error="cancelled by user")
        if task.status == "cancelled":
            return await _report_quietly(app, task)
    # running: take the finalize claim, so no other orch process finalizes it meanwhile
    claimed = claims.take(app, task.id)
    if claimed is None:
        task = app.store.get(task.id)
        if task.status != "running":
            return app.store.cancel(task.id)   # finished meanwhile: the store says why not
        raise WorkError(f"task {task.id} is being started or finalized by another orch "
                        f"process ({task.claimed_by}); nothing was changed",
                        hint="try again in a moment")
    note = "cancelled by user"
    try:
        if claimed.host and claimed.workspace:
            note = await _stop_job(app, claimed)
        task = app.store.cancel(task.id, note, error=note, claimed_by=None, claimed_at=None)
    except BaseException:
        claims.release(app, task.id)
        raise
    return await _report_quietly(app, task)


async def _stop_job(app: App, task: Task) -> str:
    from ..fleet.pool import Fleet
    from ..job import remote
    async with Fleet(app.hosts, app.settings) as fleet:
        try:
            conn = await fleet.connection(task.host or "")
            stopped = await remote.kill(conn, task.workspace or "")
        except HostUnreachable as exc:
            return (f"cancelled by user; {task.host} is unreachable ({exc.detail}), "
                    f"the job will be stopped when the host is back")
    if stopped:
        return "cancelled by user; the job's process group was stopped"
    return "cancelled by user (its job was not running)"


async def _report_quietly(app: App, task: Task) -> Task:
    """Tell the forge; if it cannot hear now, `orch poll` tells it later."""
    try:
        return await report_finished(app, app.forge(task.forge), task)
    except OrchError:
        return app.store.get(task.id)


async def retry_task(app: App, task_id: str, *, now: bool = False) -> Task:
    """Queue a failed, cancelled or lost task again (attempts start over)."""
    task = app.store.get(task_id)
    if task.status == "succeeded":
        raise UsageError(f"task {task.id} succeeded ({task.pr_url or 'no PR'}); there is "
                         f"nothing to retry",
                         hint=f"label the issue `{app.settings.trigger.label}` again, or "
                              f"`orch dispatch {task.repo}#{task.issue}`, to run it once more"
                              if task.forge == "github" else None)
    if task.status in ("queued", "running"):
        hint = (f"`orch cancel {task.id}` first to run it again from the start"
                if task.status == "running" else "the next `orch poll` dispatches it")
        raise UsageError(f"task {task.id} is {task.status}; only a failed, cancelled or lost "
                         f"task can be queued again", hint=hint)
    task = app.store.requeue(task.id, "retried by user", reset_attempts=True)
    if not now:
        return task
    from ..fleet.pool import Fleet
    from .dispatch import notify_running
    from .launch import launch_queued, probe
    forge = app.forge(task.forge)
    async with Fleet(app.hosts, app.settings) as fleet:
        launched = await launch_queued(app, fleet, forge, task, await probe(fleet))
        if launched is None or launched.task.status != "running":
            return app.store.get(task.id)
        return await notify_running(app, forge, launched.task)
