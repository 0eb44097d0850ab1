"""Telling the forge how a task stands: one function for the comment and labels of every
outcome (running, succeeded, failed, cancelled), whatever ended the task.

The texts are core/report.py's; here they reach the forge, always the same way: orch's
one status comment on the issue is edited in place (Task.comment_id), then the labels are
set (report.labels_for). Both are idempotent, so telling twice after a crash is harmless.
"""

from __future__ import annotations

import asyncio

from ..app import App
from ..core import report
from ..core.models import CHILD_KINDS, Task
from ..errors import OrchError
from ..forge.base import Forge
from . import answer
from .kinds import kind_of


async def tell(app: App, forge: Forge, task: Task, status: str, body: str) -> int:
    """Comment `body` on the task's issue and set the labels of `status`; the comment's
    id. Forge errors propagate. A split's part or integration tells its parent's one
    tracking comment instead (tell_split). A kind that `replies` (a follow-up) answers its
    command instead and leaves the issue's labels alone; a task a command started also
    marks the command with a reaction (lifecycle/answer.py)."""
    if task.kind in CHILD_KINDS and task.parent:
        return await tell_split(app, forge, app.store.get(task.parent))
    kind = kind_of(task)
    if getattr(kind, "replies", False):
        if status == "running" and answer.command_of(task) is not None:
            comment_id = task.comment_id or 0      # the eyes say it; the reply comes at the end
        else:
            comment_id = await answer.reply(app, forge, task, status, body)
    else:
        trigger = app.settings.trigger.label
        add, remove = report.labels_for(status, trigger)
        if not getattr(kind, "labels_outcome", True):
            add = [report.LABEL_RUNNING] if status == "running" else []
            remove = [] if status == "running" else [report.LABEL_RUNNING, report.LABEL_PLAN]
        comment_id = await asyncio.to_thread(forge.upsert_comment, task.repo, task.issue, body,
                                             task.comment_id)
        await asyncio.to_thread(forge.set_labels, task.repo, task.issue, add, remove)
    await answer.react(forge, task, status)
    return comment_id


async def tell_running(app: App, forge: Forge, task: Task) -> Task:
    """The job has started: say where. A forge hiccup here never stops a started job."""
    try:
        cid = await tell(app, forge, task, "running", report.comment_running(task))
    except OrchError:
        return task
    return app.store.update(task.id, comment_id=cid)


async def tell_finished(app: App, forge: Forge, task: Task) -> Task:
    """Tell the issue about a task that ended without finalize (cancelled, failed before
    its job ran, lost for good, no longer dispatchable), and mark it `finalized` once the
    forge has heard, if it still has that status. Forge errors propagate: the task stays
    unreported and `orch poll` tells the issue later."""
    reason = task.error or task.status
    if task.status == "failed":
        body = report.comment_failed(task, reason, "") + report.next_step(task.error_kind)
    else:
        body = report.comment_stopped(task, task.status, reason, app.settings.trigger.label)
    cid = await tell(app, forge, task, task.status, body)
    if app.store.get(task.id).status == task.status:
        return app.store.update(task.id, comment_id=cid, finalized=True)
    return app.store.update(task.id, comment_id=cid)


async def tell_finished_quietly(app: App, forge: Forge, task: Task) -> Task:
    """tell_finished, for callers whose work is done anyway: a forge that cannot hear
    now is told by a later `orch poll` (the task stays unreported until then)."""
    try:
        return await tell_finished(app, forge, task)
    except OrchError:
        return app.store.get(task.id)


async def tell_split(app: App, forge: Forge, parent: Task) -> int:
    """A running split's tracking comment, redrawn from its parts as they stand (the
    comment was made when the split began, so concurrent parts edit the same one). A
    finished split's comment is its last word: a straggler (a part that started as its
    split failed) leaves it alone."""
    if parent.status != "running":
        return parent.comment_id or 0
    children = app.store.children(parent)
    parts = len((parent.split or {}).get("plan", []))
    comment_id = await asyncio.to_thread(forge.upsert_comment, parent.repo, parent.issue,
                                         report.comment_split(parent, children, parts),
                                         parent.comment_id)
    if comment_id != parent.comment_id:
        app.store.update(parent.id, comment_id=comment_id)
    return comment_id
