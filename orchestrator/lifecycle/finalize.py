"""Finalize: a finished remote job becomes a PR (or a failure report), exactly once.

Order matters for crash safety: the forge side effects come first (each idempotent:
the PR is found by its head branch, the comment is edited in place, labels are a set),
then the store transition. A crash in between leaves the task running, and the next
finalize repeats the side effects harmlessly. A claim in the store keeps two live
orch processes (a following `orch dispatch` and a cron `orch poll`) from racing.
"""

from __future__ import annotations

import asyncio
import os

from ..app import App
from ..core import report
from ..core.events import last_result
from ..core.models import Task
from ..errors import OrchError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..job import remote
from ..transport.base import Connection
from . import claims


async def fetch_log(app: App, conn: Connection, task: Task) -> str:
    """Copy the job log into the state dir (the workspace may be removed) and return it."""
    text = await remote.read_log(conn, task.workspace or "") or ""
    path = app.task_log_path(task.id)
    if text:
        # 0600 like state.json: a log holds the issue text and the agent's output.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
    return text


async def finalize(app: App, fleet: Fleet, forge: Forge, task: Task,
                   status: remote.JobStatus | None = None) -> Task:
    """Finish `task` if its job has ended; return it as it stands afterwards.

    A job still running is left alone; a job that died without a final status is left
    to reconcile (which decides between lost and failed). `status`: the job status the
    caller has just read (saves a round trip), else it is read here.
    """
    conn = await fleet.connection(task.host or "")
    if status is None:
        status = await remote.read_status(conn, task.workspace or "")
    if status is None or status.state == "running":
        return task
    claimed = claims.take(app, task.id)
    if claimed is None:
        return app.store.get(task.id)
    try:
        return await _finish(app, conn, forge, claimed, status)
    except BaseException:
        claims.release(app, task.id)
        raise


async def _finish(app: App, conn: Connection, forge: Forge, task: Task,
                  status: remote.JobStatus) -> Task:
    s = app.settings
    status = remote.validate_status(status, branch=task.branch)   # the host is untrusted
    log = await fetch_log(app, conn, task)
    result = last_result(log.splitlines())
    fields = dict(cost_usd=status.cost_usd, turns=status.turns, tests=status.tests,
                  commit=status.commit)
    task = app.store.update(task.id, **{k: v for k, v in fields.items() if v is not None})
    labels_off = [report.LABEL_RUNNING, s.trigger.label]

    if status.state == "cancelled":
        # Stopped on the host (a signal to the job): say so on the issue and take the
        # trigger label off, as for any outcome, so that `orch poll` does not take the
        # issue again unless a person labels it again.
        reason = status.error or "cancelled on the host"
        comment_id = await asyncio.to_thread(
            forge.upsert_comment, task.repo, task.issue, report.comment_cancelled(task, reason),
            task.comment_id)
        await asyncio.to_thread(forge.set_labels, task.repo, task.issue, [], labels_off)
        return app.store.cancel(task.id, reason, comment_id=comment_id, finalized=True,
                                claimed_by=None, claimed_at=None)

    if status.state == "succeeded":
        issue_title = task.title
        pr_url = await asyncio.to_thread(
            forge.open_pull_request, task.repo, head=task.branch or "",
            base=await asyncio.to_thread(forge.default_branch, task.repo),
            title=report.pr_title(issue_title),
            body=report.pr_body(task, task.issue, result.result if result and result.result else ""))
        task = app.store.update(task.id, pr_url=pr_url)
        comment_id = await asyncio.to_thread(
            forge.upsert_comment, task.repo, task.issue,
            report.comment_succeeded(task, pr_url), task.comment_id)
        await asyncio.to_thread(forge.set_labels, task.repo, task.issue,
                                [report.LABEL_DONE], labels_off + [report.LABEL_FAILED])
        done = app.store.succeed(task.id, f"PR {pr_url}", comment_id=comment_id,
                                 finalized=True, claimed_by=None, claimed_at=None)
        # After the transition: a crash between removing the workspace and recording the
        # outcome would leave a running task without a job, which reconcile requeues (and
        # the issue would be worked on again). A workspace left behind costs only disk.
        if not s.workspace.keep_on_success:
            await _remove_quietly(conn, task)
        return done

    reason = status.error or "the job failed"
    comment_id = await asyncio.to_thread(
        forge.upsert_comment, task.repo, task.issue,
        report.comment_failed(task, reason, report.log_excerpt(log, s.report.log_tail)),
        task.comment_id)
    await asyncio.to_thread(forge.set_labels, task.repo, task.issue,
                            [report.LABEL_FAILED], labels_off + [report.LABEL_DONE])
    done = app.store.fail(task.id, reason, comment_id=comment_id, finalized=True,
                          claimed_by=None, claimed_at=None)
    if not s.workspace.keep_on_failure:
        await _remove_quietly(conn, task)   # after the transition, as above
    return done


async def _remove_quietly(conn: Connection, task: Task) -> None:
    try:
        await remote.remove(conn, task.workspace or "")
    except OrchError:
        pass   # a workspace left behind costs disk, not correctness
