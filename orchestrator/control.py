"""A person's commands on one task: cancel and retry.

The store refuses transitions that make no sense (cancelling a succeeded task,
retrying a running one) with a message that says what would; here we add what
touches hosts and the forge.
"""

from __future__ import annotations

import asyncio

from .app import App
from .errors import HostUnreachable, OrchError, UsageError
from .models import Task


async def cancel_task(app: App, task_id: str) -> Task:
    """Stop the job's whole process group (if it runs) and mark the task cancelled.

    If the host cannot be reached the task is still marked cancelled: the next
    `orch poll` kills any job of a task that is no longer running when the host is back.
    """
    from .fleet import Fleet
    from .job import remote
    task = app.store.get(task_id)
    if task.status not in ("queued", "running", "lost"):
        return app.store.cancel(task.id)   # raises InvalidTransition with the reason
    note = "cancelled by user"
    if task.status == "running" and task.host and task.workspace:
        async with Fleet(app.hosts, app.settings) as fleet:
            try:
                conn = await fleet.connection(task.host)
                await remote.kill(conn, task.workspace)
                note = "cancelled by user; the job's process group was stopped"
            except HostUnreachable as exc:
                note = (f"cancelled by user; {task.host} is unreachable ({exc.detail}), "
                        f"the job will be stopped when the host is back")
    task = app.store.cancel(task.id, note)
    await _tell_forge(app, task, f"orch task `{task.id}` was cancelled.")
    return task


async def retry_task(app: App, task_id: str, *, now: bool = False) -> Task:
    """Queue a failed, cancelled or lost task again (attempts start over)."""
    task = app.store.get(task_id)
    if task.status == "succeeded":
        raise UsageError(f"task {task.id} succeeded ({task.pr_url or 'no PR'}); there is "
                         f"nothing to retry",
                         hint=f"dispatch the issue again with `orch dispatch {task.repo}#{task.issue}`"
                              if task.forge == "github" else None)
    task = app.store.requeue(task.id, "retried by user", reset_attempts=True)
    if not now:
        return task
    from .fleet import Fleet
    from .pipeline import notify_running
    from .pipeline.launch import launch_queued, probe
    forge = app.forge(task.forge)
    async with Fleet(app.hosts, app.settings) as fleet:
        launched = await launch_queued(app, fleet, forge, task, await probe(fleet))
        if launched is None or launched.task.status != "running":
            return app.store.get(task.id)
        return await notify_running(app, forge, launched.task)


async def _tell_forge(app: App, task: Task, text: str) -> None:
    from .pipeline import report
    try:
        forge = app.forge(task.forge)
        await asyncio.to_thread(forge.set_labels, task.repo, task.issue, [],
                                [report.LABEL_RUNNING])
        await asyncio.to_thread(forge.upsert_comment, task.repo, task.issue,
                                f"{report.MARKER}\n{text}", task.comment_id)
    except OrchError:
        pass   # the cancel itself stands; the forge hears of it on the next finalize
