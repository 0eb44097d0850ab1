"""The dispatch pipeline: intake -> record -> start -> follow -> finalize.

`dispatch` is what `orch dispatch` runs; `orch poll` reuses launch and finalize.
Every step is idempotent or guarded by the store, so it can be re-run after a crash.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..app import App
from ..core import report
from ..core.models import Placement, Task
from ..errors import OrchError, WorkError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..store import DuplicateTask
from .finalize import finalize
from .follow import LineSink, NoticeSink, follow
from .intake import Intake, intake
from .launch import decide, probe, reserve, start_job

__all__ = ["DispatchResult", "dispatch", "finalize", "follow", "notify_running"]


@dataclass
class DispatchResult:
    intake: Intake
    placement: Placement
    task: Task | None          # None for --dry-run
    live: Task | None = None   # the issue's live task, if one blocks dispatch


async def notify_running(app: App, forge: Forge, task: Task) -> Task:
    """Label and comment on the issue; a forge hiccup here never stops a started job."""
    try:
        await asyncio.to_thread(forge.set_labels, task.repo, task.issue,
                                [report.LABEL_RUNNING], [report.LABEL_DONE, report.LABEL_FAILED])
        cid = await asyncio.to_thread(forge.upsert_comment, task.repo, task.issue,
                                      report.comment_running(task), task.comment_id)
        return app.store.update(task.id, comment_id=cid)
    except OrchError:
        return task


async def dispatch(app: App, forge: Forge, repo: str, number: int, *, host: str | None = None,
                   specialty: str | None = None, dry_run: bool = False, detach: bool = False,
                   on_line: LineSink | None = None, on_notice: NoticeSink | None = None
                   ) -> DispatchResult:
    """One issue to one host. Raises UsageError for refusals, WorkError for no capacity."""
    if host is not None:
        app.host(host)   # an unknown --host is bad input, before any network
    async with Fleet(app.hosts, app.settings) as fleet:
        it = await intake(forge, repo, number, app.settings, specialty)
        facts = await probe(fleet)
        if dry_run:
            return DispatchResult(it, decide(app, it.specialty, it.specialty_reason, facts, host,
                                             forge.kind),
                                  None, live=app.store.live_for(it.issue.repo, it.issue.number))
        with app.store.locked():
            live = app.store.live_for(it.issue.repo, it.issue.number)
            if live is not None:
                raise DuplicateTask(live)
            placement = decide(app, it.specialty, it.specialty_reason, facts, host, forge.kind)
            if placement.host is None:
                raise WorkError(f"{it.issue.ref}: {placement.reason}")
            task = app.store.create(it.issue.repo, it.issue.number, it.issue.title,
                                    it.specialty, forge=forge.kind)
            task = reserve(app, task, placement, it.issue)
        task = await start_job(app, fleet, forge, task, it.issue)
        task = await notify_running(app, forge, task)
        if detach:
            return DispatchResult(it, placement, task)
        await follow(fleet, task, on_line or (lambda _l: None), on_notice=on_notice)
        task = await finalize(app, fleet, forge, task)
        return DispatchResult(it, placement, task)
