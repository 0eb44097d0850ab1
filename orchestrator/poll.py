"""One `orch poll` pass: reconcile running tasks, then take new work while slots last.

Safe at any moment, any number of times, overlapping, after any crash:
- passes are serialised by a pass lock (a second pass waits briefly, then exits 0);
- each decision that could double work (a live task per issue, a slot per host) is
  made under the store lock, so even `orch dispatch` racing a pass cannot break it;
- orch removes the trigger label when it finishes with an issue, so an issue that
  carries the label again was re-labelled by a person and is taken again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone

from filelock import FileLock, Timeout

from .app import App
from .errors import ForgeUnavailable, OrchError
from .fleet import Fleet
from .models import HostFacts, Issue, Task
from .pipeline import notify_running
from .pipeline.intake import check_eligible
from .pipeline.launch import decide, launch_queued, reserve, start_job
from .classify import classify
from .reconcile import START_GRACE_SECONDS, ReconcileResult, reconcile

PASS_LOCK = "poll.lock"


@dataclass
class PassResult:
    dispatched: list[Task] = field(default_factory=list)
    finalized: list[Task] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    lost: list[Task] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False           # another pass held the lock: this one did nothing
    budget_note: str | None = None
    facts: list[HostFacts] = field(default_factory=list)   # the last probe, for metrics

    def to_json(self) -> dict:
        return {"dispatched": [t.to_json() | {"task_id": t.id} for t in self.dispatched],
                "finalized": [t.to_json() | {"task_id": t.id} for t in self.finalized],
                "skipped": self.skipped,
                "lost": [t.id for t in self.lost], "killed": self.killed,
                "errors": self.errors, "busy": self.busy}


class _Forges:
    """One forge object per kind for the whole pass (PyGithub clients are not free)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._made: dict[str, object] = {}

    def __call__(self, kind: str):
        if kind not in self._made:
            self._made[kind] = self.app.forge(kind)
        return self._made[kind]


def _day_start() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def poll_pass(app: App, repos: list[str] | None = None, *, lock_wait: float = 5.0,
                    start_grace: float = START_GRACE_SECONDS) -> PassResult:
    """Run one pass. A pass already running elsewhere -> PassResult(busy=True)."""
    lock = FileLock(str(app.state_dir / PASS_LOCK))
    try:
        lock.acquire(timeout=lock_wait)
    except Timeout:
        return PassResult(busy=True)
    try:
        return await _pass(app, repos if repos else list(app.settings.repos), start_grace)
    finally:
        lock.release()


async def _pass(app: App, repos: list[str], start_grace: float) -> PassResult:
    out = PassResult()
    forges = _Forges(app)
    async with Fleet(app.hosts, app.settings) as fleet:
        facts = {f.name: f for f in await fleet.probe()}
        rec: ReconcileResult = await reconcile(app, fleet, facts, forges, start_grace=start_grace)
        out.finalized, out.lost, out.killed = rec.finalized, rec.lost, rec.killed
        out.errors += rec.errors
        if rec.finalized or rec.lost or rec.killed:
            facts = {f.name: f for f in await fleet.probe()}   # slots were freed
        out.facts = list(facts.values())
        note = _budget_spent(app)
        if note:
            out.budget_note = note
            out.skipped.append({"repo": None, "issue": None, "reason": note})
            return out
        await _queued(app, fleet, forges, facts, out)
        for repo in repos:
            await _new_work(app, fleet, forges("github"), repo, facts, out)
    return out


def _budget_spent(app: App) -> str | None:
    budget = app.settings.agent.daily_budget_usd
    if budget is None:
        return None
    spent = app.store.spent_since(_day_start())
    if spent >= budget:
        return (f"daily budget spent: ${spent:.2f} of ${budget:.2f} since 00:00 UTC; "
                f"nothing is dispatched until tomorrow")
    return None


async def _queued(app: App, fleet: Fleet, forges, facts: dict[str, HostFacts],
                  out: PassResult) -> None:
    """Tasks already queued (retries, requeued lost tasks) go before new issues."""
    for task in reversed(app.store.list(status="queued")):   # oldest first
        try:
            forge = forges(task.forge)
            launched = await launch_queued(app, fleet, forge, task, facts)
        except OrchError as exc:
            out.errors.append(f"task {task.id}: {exc.message}")
            continue
        if launched is None:
            continue
        if launched.task.status == "running":
            out.dispatched.append(await notify_running(app, forge, launched.task))
        else:
            out.skipped.append({"repo": task.repo, "issue": task.issue,
                                "reason": f"queued task {task.id} waits: {launched.placement.reason}"})


async def _new_work(app: App, fleet: Fleet, forge, repo: str, facts: dict[str, HostFacts],
                    out: PassResult) -> None:
    s = app.settings
    issues = await asyncio.to_thread(forge.list_open_issues, repo, s.trigger.label)
    for listed in issues:
        skip = _skip_reason(app, listed)
        if skip:
            out.skipped.append({"repo": repo, "issue": listed.number, "reason": skip})
            continue
        try:
            task = await _take(app, fleet, forge, listed, facts)
        except OrchError as exc:
            if exc.exit_code == 2:
                out.skipped.append({"repo": repo, "issue": listed.number, "reason": exc.message})
                continue
            if isinstance(exc, ForgeUnavailable):
                raise
            out.errors.append(f"{repo}#{listed.number}: {exc.message}")
            continue
        if isinstance(task, str):
            out.skipped.append({"repo": repo, "issue": listed.number, "reason": task})
        else:
            out.dispatched.append(task)


def _skip_reason(app: App, issue: Issue) -> str | None:
    live = app.store.live_for(issue.repo, issue.number)
    if live is not None:
        return f"task {live.id} is {live.status}"
    return None


async def _take(app: App, fleet: Fleet, forge, listed: Issue,
                facts: dict[str, HostFacts]) -> Task | str:
    """Dispatch one listed issue, or say why not (a string) without changing anything."""
    s = app.settings
    issue = await asyncio.to_thread(forge.get_issue, listed.repo, listed.number)
    permission = await asyncio.to_thread(forge.author_permission, issue.repo, issue.author)
    check_eligible(issue, permission, s)
    specialty, why = classify(issue, s.specialties)
    with app.store.locked():
        if app.store.live_for(issue.repo, issue.number) is not None:
            return "taken by another orch process"
        placement = decide(app, specialty, why, facts)
        if placement.host is None:
            return f"left for the next pass: {placement.reason}"
        task = app.store.create(issue.repo, issue.number, issue.title, specialty, forge=forge.kind)
        task = reserve(app, task, placement, issue)
    task = await start_job(app, fleet, forge, task, issue)
    return await notify_running(app, forge, task)
