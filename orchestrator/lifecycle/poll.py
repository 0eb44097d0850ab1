"""One `orch poll` pass: reconcile running tasks, then take new work while slots last.

Safe at any moment, any number of times, overlapping, after any crash:
- passes are serialised by a pass lock (a second pass waits briefly, then exits 0);
- each decision that could double work (a live task per issue, a slot per host) is
  made under the store lock, so even `orch dispatch` racing a pass cannot break it;
- a task is recorded (reserved, with this process's claim) before its job starts, so a
  crash leaves either nothing or a task that reconcile finishes, requeues or kills;
- orch removes the trigger label when it finishes with an issue (and marks the task
  finalized once the forge has heard), so an issue that carries the label again was
  re-labelled by a person and is taken again. The issue is read afresh for that, and
  only a read that began after the task finished counts (a read from before may still
  show the label orch was about to remove).

Jobs are started concurrently (each start is an SSH round trip of its own); the
decisions stay sequential, under the store lock. Calls to the forge are serialised
(PyGithub's connection object is not thread-safe) and, once the forge is found
unavailable, fail at once for the rest of the pass: the pass stops with exit 1 and a
message, and the next pass picks up from the state it left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from filelock import FileLock, Timeout

from ..app import App
from ..core.classify import classify
from ..core.models import LIVE_STATUSES, HostFacts, Issue, Placement, Task
from ..core.schedule import place
from ..errors import ForgeUnavailable, OrchError, WorkError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..private import FILE_MODE
from ..store import parse_time
from .dispatch import notify_running
from .intake import intake, vetted_issue
from .launch import reserve, start_job, unhealthy_hosts
from .reconcile import ReconcileResult, reconcile

PASS_LOCK = "poll.lock"
LOCK_WAIT_SECONDS = 5.0
# A re-label is believed only from an issue read that began this long after the task
# finished (its labels were removed just before): clock steps and slow forges.
RELABEL_MARGIN_SECONDS = 5.0
START_CONCURRENCY = 8


@dataclass
class PassResult:
    dispatched: list[Task] = field(default_factory=list)
    finalized: list[Task] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    lost: list[Task] = field(default_factory=list)
    requeued: list[Task] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False           # another pass held the lock: this one did nothing
    aborted: str | None = None   # why the pass stopped early (the forge is unavailable)
    budget_note: str | None = None
    facts: list[HostFacts] = field(default_factory=list)   # the last probe, for metrics

    def to_json(self) -> dict:
        return {"dispatched": [t.to_json() | {"task_id": t.id} for t in self.dispatched],
                "finalized": [t.to_json() | {"task_id": t.id} for t in self.finalized],
                "skipped": self.skipped,
                "lost": [t.id for t in self.lost], "requeued": [t.id for t in self.requeued],
                "killed": self.killed, "errors": self.errors, "busy": self.busy,
                "aborted": self.aborted}

    def skip(self, repo: str | None, issue: int | None, reason: str) -> None:
        self.skipped.append({"repo": repo, "issue": issue, "reason": reason})


class _SerialForge:
    """A forge whose calls run one at a time, and fail fast once it is unavailable.

    The repository facts a job start needs (clone URL, default branch) are remembered
    once read: the pass reads them before it reserves a slot, so starting a reserved job
    never waits on (or fails for) a forge that went away meanwhile.
    """

    MEMO = frozenset({"clone_url", "default_branch"})

    def __init__(self, forge: Forge) -> None:
        self._forge = forge
        self.kind = forge.kind
        self._lock = threading.Lock()
        self._memo: dict[tuple, object] = {}
        self.down: ForgeUnavailable | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._forge, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            with self._lock:
                if name in self.MEMO and key in self._memo:
                    return self._memo[key]
                if self.down is not None:
                    raise ForgeUnavailable(self.down.message, hint=self.down.hint)
                try:
                    value = attr(*args, **kwargs)
                except ForgeUnavailable as exc:
                    self.down = exc
                    raise
                if name in self.MEMO:
                    self._memo[key] = value
                return value
        return call

    async def repo_facts(self, repo: str) -> None:
        """Read (and remember) what starting a job in `repo` needs from the forge."""
        await asyncio.to_thread(self.default_branch, repo)
        await asyncio.to_thread(self.clone_url, repo)


class _Forges:
    """One forge object per kind for the whole pass (PyGithub clients are not free)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._made: dict[str, _SerialForge] = {}

    def __call__(self, kind: str) -> _SerialForge:
        if kind not in self._made:
            self._made[kind] = _SerialForge(self.app.forge(kind))
        return self._made[kind]


def _day_start() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def poll_pass(app: App, repos: list[str] | None = None, *,
                    lock_wait: float = LOCK_WAIT_SECONDS,
                    start_grace: float | None = None) -> PassResult:
    """Run one pass. A pass already running elsewhere -> PassResult(busy=True)."""
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
    out = PassResult()
    forges = _Forges(app)
    starts: list[asyncio.Task] = []
    sem = asyncio.Semaphore(START_CONCURRENCY)
    async with Fleet(app.hosts, app.settings) as fleet:
        try:
            facts = {f.name: f for f in await fleet.probe()}
            out.facts = list(facts.values())
            rec: ReconcileResult = await reconcile(app, fleet, facts, forges,
                                                   start_grace=start_grace)
            out.finalized, out.lost, out.killed = rec.finalized, rec.lost, rec.killed
            out.requeued = rec.requeued
            out.errors += rec.errors
            if rec.forge_down is not None:
                raise rec.forge_down
            if rec.finalized or rec.lost or rec.killed:
                facts = {f.name: f for f in await fleet.probe()}   # slots were freed
                out.facts = list(facts.values())
            note = _budget_spent(app)
            if note:
                out.budget_note = note
                out.skip(None, None, note)
                return out
            await _queued(app, fleet, forges, facts, out, starts, sem)
            for repo in repos:
                await _new_work(app, fleet, forges, repo, facts, out, starts, sem)
        except ForgeUnavailable as exc:
            out.aborted = (f"{exc.message}; this pass stopped there (nothing is lost: the "
                           f"next pass goes on from here)")
            out.errors.append(exc.message)
        finally:
            # Reserved tasks get their jobs started whatever happened above.
            for result in await asyncio.gather(*starts, return_exceptions=True):
                if isinstance(result, OrchError):
                    out.errors.append(result.message)
                elif isinstance(result, BaseException):
                    raise result
    order = {t.id: i for i, t in enumerate(reversed(app.store.list()))}
    out.dispatched.sort(key=lambda t: order.get(t.id, 0))
    return out


def _budget_spent(app: App) -> str | None:
    budget = app.settings.agent.daily_budget_usd
    if budget is None:
        return None
    spent = app.store.spent_since(_day_start())
    if spent >= budget:
        return (f"daily budget spent: ${spent:.2f} of agent.daily_budget_usd ${budget:.2f} "
                f"since 00:00 UTC; nothing is dispatched until tomorrow")
    return None


def _place(app: App, specialty: str, why: str, facts: dict[str, HostFacts],
           avoid: set[str] | frozenset[str] = frozenset(), forge_kind: str = "github") -> Placement:
    """The scheduling decision against the store's reservations (call under the store
    lock when acting on it). Hosts in `avoid` (where a lost task ran) are chosen only
    when no other host can take the task now."""
    reserved = app.store.reserved()
    unhealthy = unhealthy_hosts(app, forge_kind)
    if avoid:
        others = [h for h in app.hosts if h.name not in avoid]
        placement = place(specialty, why, others, facts, reserved=reserved, unhealthy=unhealthy)
        if placement.host is not None:
            return placement
    return place(specialty, why, app.hosts, facts, reserved=reserved, unhealthy=unhealthy)


def _previous_hosts(task: Task) -> set[str]:
    """Hosts an earlier attempt of this task was lost on, or could not start on."""
    return {str(e["previous"]["host"]) for e in task.history
            if isinstance(e.get("previous"), dict) and e["previous"].get("host")
            and str(e.get("reason", "")).startswith(("lost", "start failed"))}


def _begin(app: App, fleet: Fleet, forge: _SerialForge, task: Task, issue: Issue, out: PassResult,
           starts: list[asyncio.Task], sem: asyncio.Semaphore) -> None:
    starts.append(asyncio.ensure_future(_start(app, fleet, forge, task, issue, out, sem)))


async def _start(app: App, fleet: Fleet, forge: _SerialForge, task: Task, issue: Issue, out: PassResult,
                 sem: asyncio.Semaphore) -> None:
    """Start a reserved task's job; a failed start is queued again (bounded by
    poll.max_attempts, counted per start) for the next pass, else reported."""
    async with sem:
        try:
            task = await start_job(app, fleet, forge, task, issue)
        except WorkError as exc:
            await _start_failed(app, forge, task, exc, out)
            return
    out.dispatched.append(await notify_running(app, forge, task))


async def _start_failed(app: App, forge: _SerialForge, task: Task, exc: WorkError, out: PassResult) -> None:
    from .control import report_finished
    task = app.store.get(task.id)
    if task.status != "failed":
        out.errors.append(exc.message)
        return
    limit = app.settings.poll.max_attempts
    if task.attempts < limit:
        app.store.requeue(task.id, f"start failed: {task.error}")
        out.skip(task.repo, task.issue, f"{task.error}; queued again "
                                        f"(attempt {task.attempts} of {limit})")
        return
    out.errors.append(f"{exc.message} (attempt {task.attempts} of {limit}: given up)")
    try:
        await report_finished(app, forge, task)
    except OrchError:
        pass   # reported by a later pass


async def _queued(app: App, fleet: Fleet, forges: _Forges, facts: dict[str, HostFacts],
                  out: PassResult, starts: list[asyncio.Task], sem: asyncio.Semaphore) -> None:
    """Tasks already queued (retries, requeued lost tasks) go before new issues."""
    s = app.settings
    for task in reversed(app.store.list(status="queued")):   # oldest first
        avoid = _previous_hosts(task)
        pre = _place(app, task.specialty, "queued", facts, avoid, task.forge)
        if pre.host is None:
            out.skip(task.repo, task.issue, f"queued task {task.id} waits: {pre.reason}")
            continue
        forge = forges(task.forge)
        try:
            it = await intake(forge, task.repo, task.issue, s, task.specialty)
            await forge.repo_facts(task.repo)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            if exc.exit_code == 2:   # closed, a PR now, author lost permission: final
                try:
                    app.store.fail(task.id, f"no longer dispatchable: {exc.message}")
                except OrchError:
                    pass
                out.skip(task.repo, task.issue, f"task {task.id}: {exc.message}")
            else:
                out.errors.append(f"task {task.id}: {exc.message}")
            continue
        with app.store.locked():
            current = app.store.get(task.id)
            if current.status != "queued":
                continue   # another orch process took (or cancelled) it meanwhile
            placement = _place(app, it.specialty, it.specialty_reason, facts, avoid, task.forge)
            if placement.host is None:
                out.skip(task.repo, task.issue, f"queued task {task.id} waits: {placement.reason}")
                continue
            reserved = reserve(app, current, placement, it.issue)
        _begin(app, fleet, forge, reserved, it.issue, out, starts, sem)


async def _new_work(app: App, fleet: Fleet, forges: _Forges, repo: str, facts: dict[str, HostFacts],
                    out: PassResult, starts: list[asyncio.Task], sem: asyncio.Semaphore) -> None:
    s = app.settings
    forge = forges("github")
    try:
        issues = await asyncio.to_thread(forge.list_open_issues, repo, s.trigger.label)
    except ForgeUnavailable:
        raise
    except OrchError as exc:
        out.errors.append(f"{repo}: {exc.message}")
        return
    for listed in issues:
        skip = await _skip_reason(app, forge, listed)
        if skip:
            out.skip(repo, listed.number, skip)
            continue
        specialty, why = classify(listed, s.specialties)
        pre = _place(app, specialty, why, facts)
        if pre.host is None:   # no API calls for an issue that cannot run now anyway
            out.skip(repo, listed.number, f"left for the next pass: {pre.reason}")
            continue
        try:
            taken = await _take(app, fleet, forge, listed, facts, out, starts, sem)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            if exc.exit_code == 2:
                out.skip(repo, listed.number, exc.message)
            else:
                out.errors.append(f"{repo}#{listed.number}: {exc.message}")
            continue
        if taken is not None:
            out.skip(repo, listed.number, taken)


async def _skip_reason(app: App, forge: _SerialForge, issue: Issue) -> str | None:
    """Why a listed issue is not taken, judged from the store (no API call), or None.

    A finished task the forge has not heard of yet (cancelled, failed before its job ran,
    lost for good) is reported now: that takes the trigger label off, so that the label
    means "do this again" only once a person puts it back.
    """
    from .control import report_finished
    tasks = app.store.for_issue(issue.repo, issue.number)
    if not tasks:
        return None
    newest = tasks[0]
    if newest.status in LIVE_STATUSES:
        return f"task {newest.id} is {newest.status}" + (f" on {newest.host}" if newest.host else "")
    if newest.status == "lost":
        return f"task {newest.id} is lost; the next pass queues it again"
    if not newest.finalized:
        what = f"task {newest.id} {newest.status}" + (f" ({newest.error})" if newest.error else "")
        try:
            await report_finished(app, forge, newest)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            return f"{what}; telling the issue failed: {exc.message}"
        return (f"{what}; the issue is told now and its `{app.settings.trigger.label}` "
                f"label removed: label it again or `orch retry {newest.id}` to run it again")
    return None   # finished and reported: the label is back, so maybe re-labelled


async def _take(app: App, fleet: Fleet, forge: _SerialForge, listed: Issue, facts: dict[str, HostFacts],
                out: PassResult, starts: list[asyncio.Task], sem: asyncio.Semaphore) -> str | None:
    """Reserve one listed issue and begin its job; or say why not (changing nothing)."""
    s = app.settings
    read_at = time.time()
    issue = await vetted_issue(forge, listed.repo, listed.number, s)
    await forge.repo_facts(issue.repo)
    if s.trigger.label not in issue.labels:
        return f"the `{s.trigger.label}` label was removed meanwhile"
    specialty, why = classify(issue, s.specialties)
    with app.store.locked():
        tasks = app.store.for_issue(issue.repo, issue.number)
        if tasks:
            newest = tasks[0]
            if newest.status in LIVE_STATUSES or newest.status == "lost":
                return f"taken by another orch process (task {newest.id} is {newest.status})"
            if not newest.finalized:
                return f"task {newest.id} {newest.status}; the issue is not told yet"
            finished = parse_time(newest.finished_at).timestamp() if newest.finished_at else 0.0
            # finished_at has whole seconds: the true time is up to 1 s later.
            if read_at < finished + 1.0 + RELABEL_MARGIN_SECONDS:
                return (f"task {newest.id} finished at {newest.finished_at}; whether the issue "
                        f"was labelled again is judged on the next pass")
        placement = _place(app, specialty, why, facts)
        if placement.host is None:
            return f"left for the next pass: {placement.reason}"
        task = app.store.create(issue.repo, issue.number, issue.title, specialty, forge=forge.kind)
        task = reserve(app, task, placement, issue)
    _begin(app, fleet, forge, task, issue, out, starts, sem)
    return None
