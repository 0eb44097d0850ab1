"""One `orch poll` pass: reconcile running tasks, then take new work while slots last.

Safe at any moment, any number of times, overlapping, after any crash:
- passes are serialised by a pass lock (a second pass waits briefly, then exits 0);
- each decision that could double work (a live task per issue, a slot per host) is
  made under the store lock by admission (lifecycle/admit.py), so even `orch dispatch`
  racing a pass cannot break it;
- a task is recorded (reserved, with this process's claim) before its job starts, so a
  crash leaves either nothing or a task that reconcile finishes, requeues or kills;
- orch removes the trigger label when it finishes with an issue (and marks the task
  finalized once the forge has heard), so an issue that carries the label again was
  re-labelled by a person and is taken again (admit.retake_refusal).

Jobs are started concurrently (each start is an SSH round trip of its own); the
decisions stay sequential, under the store lock. Calls to the forge are serialised and,
once the forge is found unavailable, fail at once for the rest of the pass
(lifecycle/forges.py): the pass stops with exit 1 and a message, and the next pass picks
up from the state it left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from filelock import FileLock, Timeout

from ..app import App
from ..core.classify import classify
from ..core.models import HostFacts, Issue, Task
from ..errors import ForgeUnavailable, OrchError, WorkError
from ..fleet.pool import Fleet
from ..forge import DEFAULT_FORGE
from ..forge.base import Forge
from ..job import credentials
from ..private import FILE_MODE
from . import split
from .admit import (
    Reservation,
    issue_refusal,
    place_task,
    prepare,
    prepare_queued,
    reserve_new,
    reserve_queued,
)
from .claims import me
from .forges import Forges
from .launch import Next, again_or_give_up, start
from .reconcile import reconcile
from .refusals import Refusal, Refused
from .tell import tell_finished, tell_finished_quietly, tell_running

PASS_LOCK = "poll.lock"
LOCK_WAIT_SECONDS = 5.0
START_CONCURRENCY = 8


@dataclass
class PassResult:
    dispatched: list[Task] = field(default_factory=list)
    finalized: list[Task] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    lost: list[Task] = field(default_factory=list)
    requeued: list[Task] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False           # another pass held the lock: this one did nothing
    aborted: str | None = None   # why the pass stopped early (the forge is unavailable)
    budget_note: str | None = None
    facts: list[HostFacts] = field(default_factory=list)   # the last probe, for metrics

    def to_json(self) -> dict[str, Any]:
        return {"dispatched": [t.to_json() | {"task_id": t.id} for t in self.dispatched],
                "finalized": [t.to_json() | {"task_id": t.id} for t in self.finalized],
                "skipped": self.skipped,
                "lost": [t.id for t in self.lost], "requeued": [t.id for t in self.requeued],
                "killed": self.killed, "errors": self.errors, "busy": self.busy,
                "aborted": self.aborted}

    def skip(self, repo: str | None, issue: int | None, reason: str,
             code: str | None = None) -> None:
        self.skipped.append({"repo": repo, "issue": issue, "reason": reason, "code": code})

    def refused(self, repo: str, issue: int, refusal: Refused) -> None:
        self.skip(repo, issue, refusal.message, refusal.code.value)


async def poll_pass(app: App, repos: list[str] | None = None, *,
                    lock_wait: float = LOCK_WAIT_SECONDS,
                    start_grace: float | None = None) -> PassResult:
    """Run one pass. A pass already running elsewhere -> PassResult(busy=True).
    A missing agent.credentials variable is bad input before anything (UsageError)."""
    credentials.read(app.settings)
    lock = FileLock(str(app.state_dir / PASS_LOCK), mode=FILE_MODE)
    try:
        lock.acquire(timeout=lock_wait)
    except Timeout:
        return PassResult(busy=True)
    try:
        return await run_pass(app, repos if repos else list(app.settings.repos),
                              start_grace=start_grace)
    finally:
        lock.release()


async def run_pass(app: App, repos: list[str], *, start_grace: float | None = None) -> PassResult:
    """The pass itself, without the pass lock (tests use it to show that the store alone
    keeps overlapping passes from doubling work)."""
    app.store.heartbeat(me())   # `orch store status` lists the orchestrators it heard of
    async with app.fleet() as fleet:
        one = _Pass(app, fleet, Forges(app))
        await one.run(repos, start_grace)
    order = {t.id: i for i, t in enumerate(reversed(app.store.list()))}
    one.out.dispatched.sort(key=lambda t: order.get(t.id, 0))
    return one.out


def _day_start() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def budget_spent(app: App) -> str | None:
    """Why nothing is dispatched today (agent.daily_budget_usd is spent), or None."""
    budget = app.settings.agent.daily_budget_usd
    if budget is None:
        return None
    spent = app.store.spent_since(_day_start())
    if spent >= budget:
        return (f"daily budget spent: ${spent:.2f} of agent.daily_budget_usd ${budget:.2f} "
                f"since 00:00 UTC; nothing is dispatched until tomorrow")
    return None


class _Pass:
    """One pass's state: the fleet and its last probe, the forges, the result so far, and
    the job starts under way."""

    def __init__(self, app: App, fleet: Fleet, forges: Forges) -> None:
        self.app, self.fleet, self.forges = app, fleet, forges
        self.out = PassResult()
        self.facts: dict[str, HostFacts] = {}
        self._starts: list[asyncio.Task[None]] = []
        self._sem = asyncio.Semaphore(START_CONCURRENCY)

    async def probe(self) -> None:
        self.facts = {f.name: f for f in await self.fleet.probe()}
        self.out.facts = list(self.facts.values())

    async def run(self, repos: list[str], start_grace: float | None) -> None:
        out = self.out
        try:
            await self.probe()
            rec = await reconcile(self.app, self.fleet, self.facts, self.forges,
                                  start_grace=start_grace)
            out.finalized, out.lost, out.killed = rec.finalized, rec.lost, rec.killed
            out.requeued = rec.requeued
            out.errors += rec.errors
            if rec.forge_down is not None:
                raise rec.forge_down
            if rec.finalized or rec.lost or rec.killed:
                await self.probe()   # slots were freed
            # splits move on (a PR, a failure, parts queued) even on a spent budget: what
            # it queues waits for the budget like any queued task
            await self.advance_splits()
            note = budget_spent(self.app)
            if note:
                out.budget_note = note
                out.skip(None, None, note, "budget")
                return
            for task in reversed(self.app.store.list(status="queued")):   # oldest first
                await self.queued(task)
            for repo in repos:
                await self.new_work(repo)
                await self.commands(repo)
        except ForgeUnavailable as exc:
            out.aborted = (f"{exc.message}; this pass stopped there (nothing is lost: the "
                           f"next pass goes on from here)")
            out.errors.append(exc.message)
        finally:
            # Reserved tasks get their jobs started whatever happened above.
            for result in await asyncio.gather(*self._starts, return_exceptions=True):
                if isinstance(result, OrchError):
                    out.errors.append(result.message)
                elif isinstance(result, BaseException):
                    raise result

    # -- taking work ---------------------------------------------------------------------

    async def queued(self, task: Task) -> None:
        """Tasks already queued (retries, requeued lost tasks) go before new issues."""
        pinned = split.pinned_host(self.app, task)
        pre = place_task(self.app, task.specialty, "queued", self.facts, forge=task.forge,
                         avoid=task.avoid_hosts, pinned=pinned)
        if pre.host is None:   # no forge call for a task that cannot run now anyway
            self.out.skip(task.repo, task.issue, f"queued task {task.id} waits: {pre.reason}",
                          Refusal.NO_CAPACITY.value)
            return
        forge = self.forges(task.forge)
        try:
            prepared = await prepare_queued(self.app, forge, task)
            self.begin(forge, reserve_queued(self.app, prepared, task, self.facts,
                                             pinned=pinned))
        except Refused as exc:
            if exc.code is not Refusal.TAKEN:
                self.out.refused(task.repo, task.issue, exc)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            self.out.errors.append(f"task {task.id}: {exc.message}")

    async def new_work(self, repo: str) -> None:
        forge = self.forges(DEFAULT_FORGE)
        label = self.app.settings.trigger.label
        try:
            issues = await asyncio.to_thread(forge.list_open_issues, repo, label)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            self.out.errors.append(f"{repo}: {exc.message}")
            return
        for listed in issues:
            try:
                await self.take(forge, listed, label)
            except Refused as exc:
                self.out.refused(repo, listed.number, exc)
            except ForgeUnavailable:
                raise
            except OrchError as exc:
                self.out.errors.append(f"{repo}#{listed.number}: {exc.message}")

    async def commands(self, repo: str) -> None:
        """`@orch` commands and change requests on the repository (lifecycle/conversation.py)."""
        from .conversation import scan_commands
        forge = self.forges(DEFAULT_FORGE)
        try:
            scan = await scan_commands(self.app, forge, repo, self.facts)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            self.out.errors.append(f"{repo}: commands: {exc.message}")
            return
        self.out.skipped += scan.skipped
        for reservation in scan.reservations:
            self.begin(forge, reservation)

    async def take(self, forge: Forge, listed: Issue, label: str) -> None:
        """Reserve one listed issue and begin its job, or raise Refused (changing nothing)."""
        app = self.app
        early = issue_refusal(app, listed.repo, listed.number, retake=True)
        if early is not None:
            if early.code is Refusal.UNREPORTED and early.task is not None:
                raise await self._report(forge, early.task, early)
            raise early
        parts = split.label_parts(app, listed.title, listed.labels)
        if parts or split.wants_planner(listed.labels):
            await self.take_split(forge, listed, label, parts)
            return
        specialty, why = classify(listed, app.settings.specialties)
        pre = place_task(app, specialty, why, self.facts, forge=forge.kind)
        if pre.host is None:   # no API calls for an issue that cannot run now anyway
            raise Refused(Refusal.NO_CAPACITY, f"left for the next pass: {pre.reason}")
        prepared = await prepare(forge, listed.repo, listed.number, app.settings)
        try:
            self.begin(forge, reserve_new(app, prepared, self.facts, label=label))
        except Refused as exc:
            if exc.code is Refusal.NO_CAPACITY:
                raise Refused(exc.code, f"left for the next pass: {exc.message}") from None
            raise

    # -- split issues (lifecycle/split.py) ------------------------------------------------

    async def take_split(self, forge: Forge, listed: Issue, label: str,
                         parts: list[split.Part]) -> None:
        """A labelled issue split into parts: the parent, then its first parts started
        like queued tasks (each placed by its specialty)."""
        prepared = await prepare(forge, listed.repo, listed.number, self.app.settings)
        issue = prepared.intake.issue
        if split.wants_planner(issue.labels):
            parent, children = await split.begin(self.app, forge, prepared, [], label=label,
                                                 source="planner")
        else:
            parent, children = await split.begin(
                self.app, forge, prepared,
                split.label_parts(self.app, issue.title, issue.labels) or parts, label=label)
        self.out.dispatched.append(parent)
        for child in children:
            await self.queued(child)

    async def advance_splits(self) -> None:
        """Every running split moved on (after reconcile finalized its children); what it
        queues is started by the queued tasks' loop that follows."""
        await split.stop_strays(self.app, self.fleet)
        for parent in reversed(self.app.store.list(status="running")):
            if parent.kind != split.PARENT_KIND:
                continue
            try:
                await split.advance(self.app, self.fleet, self.forges(parent.forge), parent)
            except ForgeUnavailable:
                raise
            except OrchError as exc:
                self.out.errors.append(f"split {parent.id}: {exc.message}")
                continue
            done = self.app.store.get(parent.id)
            if done.status != "running":
                self.out.finalized.append(done)

    async def _report(self, forge: Forge, task: Task, why: Refused) -> Refused:
        """A finished task the forge has not heard of yet (cancelled, failed before its job
        ran, lost for good) is reported now: that takes the trigger label off, so that the
        label means "do this again" only once a person puts it back."""
        try:
            await tell_finished(self.app, forge, task)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            return Refused(why.code, f"{why.message}; telling the issue failed: {exc.message}")
        return Refused(why.code, f"{why.message.removesuffix('; the issue is not told yet')}; "
                                 f"the issue is told now and its `{self.app.settings.trigger.label}` "
                                 f"label removed: label it again or `orch retry {task.id}` to run "
                                 f"it again")

    # -- starting jobs -------------------------------------------------------------------

    def begin(self, forge: Forge, reservation: Reservation) -> None:
        self._starts.append(asyncio.ensure_future(self._start(forge, reservation)))

    async def _start(self, forge: Forge, r: Reservation) -> None:
        """Start a reserved task's job; a failed start is queued again (bounded by
        poll.max_attempts, counted per start) for the next pass, else reported."""
        async with self._sem:
            try:
                task = await start(self.app, self.fleet, r)
            except WorkError as exc:
                await self._start_failed(forge, r.task, exc)
                return
        self.out.dispatched.append(await tell_running(self.app, forge, task))

    async def _start_failed(self, forge: Forge, task: Task, exc: WorkError) -> None:
        failed = self.app.store.get(task.id)
        if failed.status != "failed":
            self.out.errors.append(exc.message)
            return
        limit = self.app.settings.poll.max_attempts
        after, nxt = again_or_give_up(self.app, failed, f"start failed: {failed.error}")
        if nxt is Next.QUEUED:
            self.out.skip(task.repo, task.issue, f"{failed.error}; queued again "
                                                 f"(attempt {failed.attempts} of {limit})",
                          "start_failed")
            return
        self.out.errors.append(f"{exc.message} (attempt {failed.attempts} of {limit}: given up)")
        if nxt is Next.GIVEN_UP:
            await tell_finished_quietly(self.app, forge, after)
