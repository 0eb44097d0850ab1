"""`orch dispatch`: one issue to one host, by hand: admit -> start -> follow -> finalize.

The same steps as `orch poll` takes for a labelled issue (lifecycle/admit.py decides,
launch.py starts, finalize.py ends); what differs is that a person asked, so no trigger
label is needed and the job is followed live unless detached. Every step is idempotent
or guarded by the store, so it can be re-run after a crash.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..app import App
from ..core.models import Placement, Task
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..job import credentials
from .admit import Reservation, check_local, place_task, prepare, probe, reserve_new
from .finalize import finalize
from .follow import LineSink, NoticeSink, follow
from .launch import start
from .tell import tell_running

__all__ = ["DispatchResult", "dispatch"]


@dataclass
class DispatchResult:
    placement: Placement
    task: Task | None          # None for --dry-run
    live: Task | None = None   # the issue's live task, if one blocks dispatch


async def dispatch(app: App, forge: Forge, repo: str, number: int, *, host: str | None = None,
                   specialty: str | None = None, dry_run: bool = False, detach: bool = False,
                   on_line: LineSink | None = None, on_notice: NoticeSink | None = None,
                   followup: str | None = None) -> DispatchResult:
    """One issue to one host. Raises Refused (lifecycle/refusals.py) when orch will not
    take it: bad input (exit 2) or no host with room (exit 1). `followup`: a follow-up
    on orch's pull request (`number` is the PR or its issue) with that text as the request
    (lifecycle/followup.py)."""
    if host is not None:
        app.host(host)   # an unknown --host is bad input, before any network
    credentials.read(app.settings)   # a missing agent.credentials variable too (exit 2)
    check_local(app, forge.kind, host, on_notice)
    async with app.fleet() as fleet:
        if followup is not None and not dry_run:
            # --followup only: a plain issue's dispatch never loads lifecycle/followup.py
            from .followup import by_hand
            reservation = await by_hand(app, forge, await probe(fleet), repo, number, followup,
                                        pinned=host)
            return await _run(app, fleet, forge, reservation, detach, on_line, on_notice)
        prepared = await prepare(forge, repo, number, app.settings, specialty=specialty)
        facts = await probe(fleet)
        if dry_run:
            it = prepared.intake
            return DispatchResult(place_task(app, it.specialty, it.specialty_reason, facts,
                                             forge=prepared.forge, pinned=host),
                                  None, live=app.store.live_for(it.issue.repo, it.issue.number))
        reservation = reserve_new(app, prepared, facts, pinned=host)
        return await _run(app, fleet, forge, reservation, detach, on_line, on_notice)


async def _run(app: App, fleet: Fleet, forge: Forge, reservation: Reservation, detach: bool,
               on_line: LineSink | None, on_notice: NoticeSink | None) -> DispatchResult:
    started = await start(app, fleet, reservation)
    if detach:
        return DispatchResult(reservation.placement, await tell_running(app, forge, started))
    # The issue hears "running" while the log is already being followed: the two share
    # nothing but the task, and finalize waits for the comment's id, so that it edits
    # that comment rather than adding a second one.
    telling = asyncio.create_task(tell_running(app, forge, started))
    try:
        followed = await follow(fleet, started, on_line or (lambda _l: None),
                                on_notice=on_notice, keep_log=True)
    finally:
        task = await telling
    task = await finalize(app, fleet, forge, task, followed.status, log=followed.log)
    return DispatchResult(reservation.placement, task)
