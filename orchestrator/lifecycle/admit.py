"""Admission: an issue, or a queued task, becomes a reserved task, under the store lock.

This is the one place where orch decides to take work. Every entry point (`orch dispatch`,
`orch poll`'s new issues and queued tasks, `orch retry --now`) calls `admit_issue` or
`admit_queued`, and gets either a Reservation (the task is running on its host, claimed by
this process, its job not started yet: launch.start starts it) or a `Refused` with a code
(lifecycle/refusals.py) that says why not. Nothing is changed by a refusal, except that a
queued task whose issue can never run (closed, gone, author no longer allowed) is failed.

The order is always the same: read and check the issue and its repository on the forge
(slow, outside the lock), then, under the store lock, the decisions that could double
work: the trigger's rules, the host's slot (launch.place_task against the store's
reservations), the one-live-task rule (the store's: Store.refuse_duplicate, applied by
Store.create), and the queued -> running transition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..app import App
from ..config.settings import Settings
from ..core.models import CHILD_KINDS, LIVE_STATUSES, Host, HostFacts, Issue, Placement, RepoFacts, Task
from ..core.schedule import place
from ..core.trust import LOCAL_OPT_IN, check_local_github, local_meaning, local_refusals
from ..fleet.pool import Fleet
from ..forge import forge_kind
from ..forge.base import Forge
from ..forge.clone import clone_url
from ..store import DuplicateTask, InvalidTransition, NoSlot, parse_time
from ..transport import runs_here
from . import claims
from .intake import Intake, intake
from .kinds import kind_of
from .refusals import Refusal, Refused

# A re-label is believed only from an issue read that began this long after the task
# finished (orch removed the label just before): clock steps and slow forges.
RELABEL_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class Reservation:
    """A task holding a slot on its host; everything its job needs is read already."""

    task: Task           # running on placement.host, claimed by this process, no job yet
    issue: Issue         # as read for this reservation (what the prompt says)
    repo: RepoFacts
    placement: Placement


@dataclass(frozen=True)
class Prepared:
    """An issue read, checked and classified, with its repository's facts: everything a
    reservation needs from the forge, read before the store lock is taken."""

    intake: Intake
    repo: RepoFacts
    forge: str                # Task.forge: the forge kind it was read from
    read_at: float            # when the read began (time.time())


async def read_repo(forge: Forge, repo: str, settings: Settings) -> RepoFacts:
    """What starting a job in `repo` needs from the forge (read before a slot is held).
    The clone URL is forge/clone.py's, the one bootstrap checks too."""
    default = await asyncio.to_thread(forge.default_branch, repo)
    url = await asyncio.to_thread(clone_url, settings, repo, lambda: forge)
    return RepoFacts(clone_url=url, default_branch=default)


def retake_refusal(tasks: list[Task], *, read_at: float | None = None) -> Refused | None:
    """Whether a labelled issue may get a new task now, judged from its tasks (newest
    first). orch takes the trigger label off when it is done with an issue and marks the
    task finalized once the forge has heard: so the label on an issue whose last task is
    finalized was put back by a person, if the issue was read (`read_at`) after that.
    A live task is not judged here: that is the one-live-task rule (issue_refusal)."""
    if not tasks or tasks[0].status in LIVE_STATUSES:
        return None
    newest = tasks[0]
    if newest.status == "lost":
        return Refused(Refusal.LOST, f"task {newest.id} is lost; the next pass queues it again",
                       task=newest)
    if not newest.finalized:
        what = f"task {newest.id} {newest.status}" + (f" ({newest.error})" if newest.error else "")
        return Refused(Refusal.UNREPORTED, f"{what}; the issue is not told yet", task=newest)
    if read_at is not None:
        finished = parse_time(newest.finished_at).timestamp() if newest.finished_at else 0.0
        # finished_at has whole seconds: the true time is up to 1 s later.
        if read_at < finished + 1.0 + RELABEL_MARGIN_SECONDS:
            return Refused(Refusal.JUST_FINISHED,
                           f"task {newest.id} finished at {newest.finished_at}; whether the "
                           f"issue was labelled again is judged on the next pass", task=newest)
    return None


def issue_refusal(app: App, repo: str, number: int, *, retake: bool = False,
                  read_at: float | None = None) -> Refused | None:
    """Whether the store lets the issue get a new task now: the one-live-task rule (the
    store's, Store.refuse_duplicate), then, for the label trigger (`retake`), whether
    its last task lets the label count again (retake_refusal). Binding under the store
    lock; without it, a cheap early answer (orch poll asks before any forge call)."""
    try:
        app.store.refuse_duplicate(repo, number)
    except DuplicateTask as exc:
        return Refused(Refusal.DUPLICATE, exc.message, hint=exc.hint, task=exc.live)
    if retake:
        # a split's parts speak through their parent (core/split.py)
        own = [t for t in app.store.for_issue(repo, number) if t.kind not in CHILD_KINDS]
        return retake_refusal(own, read_at=read_at)
    return None


def workspace_for(host: Host, task_id: str) -> str:
    return f"{host.workspace_root.rstrip('/')}/{task_id}"


def unhealthy_hosts(app: App, forge: str) -> dict[str, str]:
    """Hosts never chosen for a task of `forge` (a forge kind): those whose last
    `orch bootstrap` failed, until they pass; and, for an issue strangers may have written,
    hosts whose jobs run on this machine unless the operator opted in (core/trust.py)."""
    from ..fleet.verdicts import failed_hosts
    return {**local_refusals([h for h in app.hosts if runs_here(h)], forge_kind(forge).strangers,
                             app.settings.allow_local_github),
            **failed_hosts(app.state_dir)}


def check_local(app: App, forge: str, pinned: str | None,
                on_notice: Callable[[str], None] | None = None) -> None:
    """Before a person's dispatch: refuse (exit 2) an issue of `forge` that only hosts
    running jobs on this machine could take without the operator's opt-in; with the
    opt-in, say what running here means (`on_notice`)."""
    hosts = [app.host(pinned)] if pinned else app.hosts
    here = [h for h in hosts if runs_here(h)]
    strangers, allowed = forge_kind(forge).strangers, app.settings.allow_local_github
    check_local_github(hosts, here, strangers, allowed)
    local = [h.name for h in here if h.enabled]
    if local and strangers and allowed and on_notice is not None:
        on_notice(f"host {', '.join(local)} may take this GitHub issue ({LOCAL_OPT_IN} is "
                  f"set): {local_meaning(app.state_dir)}")


async def probe(fleet: Fleet) -> dict[str, HostFacts]:
    return {f.name: f for f in await fleet.probe()}


def place_task(app: App, specialty: str, why: str, facts: dict[str, HostFacts], *,
               forge: str, pinned: str | None = None, avoid: Iterable[str] = ()) -> Placement:
    """The scheduling decision against the store's current reservations (under the store
    lock when acting on it). Hosts in `avoid` (where an earlier attempt was lost or could
    not start) are chosen only when no other host can take the task now."""
    reserved = app.store.reserved()
    unhealthy = unhealthy_hosts(app, forge)
    avoided = set(avoid)
    if avoided and pinned is None:
        others = [h for h in app.hosts if h.name not in avoided]
        placement = place(specialty, why, others, facts, reserved=reserved, unhealthy=unhealthy)
        if placement.host is not None:
            return placement
    return place(specialty, why, app.hosts, facts, reserved=reserved, pinned=pinned,
                 unhealthy=unhealthy)


def _reserve(app: App, task: Task, placement: Placement, branch: str) -> Task:
    """queued -> running on the placed host, before the job exists (under the lock).

    The task carries this process's claim until launch.start has started the job: if this
    process dies in between, reconcile sees a claim whose process is gone and a workspace
    without a job, and requeues the task at once. The store holds one of the host's
    `max_tasks` slots for it (NoSlot: another orchestrator took the last one since the
    placement was decided; nothing changed).
    """
    assert placement.host is not None
    host = app.host(placement.host)
    try:
        return app.store.start(task.id, host=host.name, branch=branch,
                               workspace=workspace_for(host, task.id), pid=None,
                               error_kind=None, slots=host.max_tasks, **claims.mine())
    except NoSlot as exc:
        raise Refused(Refusal.NO_CAPACITY, f"{task.repo}#{task.issue}: {exc.message}",
                      task=task) from None


async def prepare(forge: Forge, repo: str, number: int, settings: Settings, *,
                  specialty: str | None = None) -> Prepared:
    """Read and check an issue and its repository (intake.intake, read_repo)."""
    read_at = time.time()
    it = await intake(forge, repo, number, settings, specialty)
    return Prepared(it, await read_repo(forge, it.issue.repo, settings), forge.kind, read_at)


def check_new_task(app: App, prepared: Prepared, *, label: str | None,
                   command: str | None) -> None:
    """The refusals every new task of a prepared issue meets, whatever it is (an issue
    task, a follow-up, a split's parent): the trigger `label` still on it, the
    one-live-task rule and the label's retake rule (issue_refusal), and the `command`
    that asks not taken yet. Call under the store lock, before creating the task: asked
    before placing (Store.create applies the duplicate rule again), so that a duplicate
    is said as such even when the fleet is full. Raises Refused."""
    issue = prepared.intake.issue
    if label is not None and label not in issue.labels:
        raise Refused(Refusal.LABEL_REMOVED, f"the `{label}` label was removed meanwhile")
    gate = issue_refusal(app, issue.repo, issue.number, retake=label is not None,
                         read_at=prepared.read_at)
    if gate is not None:
        raise gate
    if command is not None and app.store.command(command) is not None:
        raise Refused(Refusal.TAKEN, f"command {command} was taken already")


def reserve_new(app: App, prepared: Prepared, facts: dict[str, HostFacts], *,
                pinned: str | None = None, label: str | None = None, kind: str = "issue",
                parent: str | None = None, pr_number: int | None = None,
                prefer: str | None = None, command: str | None = None,
                fields: dict[str, Any] | None = None) -> Reservation:
    """A new task of `kind` for a prepared issue, placed and reserved, or Refused.

    `label`: the trigger label when the label is what asks (orch poll): the issue must
    still carry it, and its earlier tasks must let it be taken again (retake_refusal).
    Without it (a person's `orch dispatch`), only the one-live-task rule applies.
    `prefer`: the host to use when it has a slot (a follow-up's previous host).
    `command`: the key of the command comment that asks (core/commands.py): taken in the
    same locked write as the task is created, so it is taken once or not at all (TAKEN
    when another process took it first). `fields`: other Task fields it starts with.
    """
    it = prepared.intake
    issue = it.issue
    with app.store.locked():
        check_new_task(app, prepared, label=label, command=command)
        try:
            placement = _placed(app, it, facts, prepared.forge, pinned, prefer)
            if placement.host is None:
                raise Refused(Refusal.NO_CAPACITY, f"{issue.ref}: {placement.reason}")
            task = app.store.create(issue.repo, issue.number, issue.title, it.specialty,
                                    forge=prepared.forge, kind=kind, parent=parent,
                                    pr_number=pr_number, **(fields or {}))
        except DuplicateTask as exc:
            raise Refused(Refusal.DUPLICATE, exc.message, hint=exc.hint, task=exc.live) from None
        if command is not None:
            app.store.take_command(command, task_id=task.id)
        task = _reserve(app, task, placement, kind_of(task).branch(task, issue))
    return Reservation(task, issue, prepared.repo, placement)


def _placed(app: App, it: Intake, facts: dict[str, HostFacts], forge: str,
            pinned: str | None, prefer: str | None) -> Placement:
    """The placement, on `prefer` when it names an inventory host with a slot."""
    if pinned is None and prefer is not None and any(h.name == prefer for h in app.hosts):
        preferred = place_task(app, it.specialty, it.specialty_reason, facts, forge=forge,
                               pinned=prefer)
        if preferred.host is not None:
            return preferred
    return place_task(app, it.specialty, it.specialty_reason, facts, forge=forge, pinned=pinned)


async def admit_issue(app: App, forge: Forge, facts: dict[str, HostFacts], repo: str,
                      number: int, *, pinned: str | None = None, specialty: str | None = None,
                      label: str | None = None) -> Reservation:
    """An issue -> a new reserved task of the issue kind (prepare, then reserve_new)."""
    prepared = await prepare(forge, repo, number, app.settings, specialty=specialty)
    return reserve_new(app, prepared, facts, pinned=pinned, label=label)


async def prepare_queued(app: App, forge: Forge, task: Task) -> Prepared:
    """prepare() for a queued task (a retry, a requeued lost task): its issue is read
    again (its text may have changed). If it can never run as it stands (a final refusal:
    closed, gone, a pull request, its author no longer allowed) the task is failed with
    that reason before the refusal is raised."""
    try:
        return await prepare(forge, task.repo, task.issue, app.settings,
                             specialty=task.specialty)
    except Refused as exc:
        if not exc.code.final:
            raise
        failed = _fail_undispatchable(app, task, exc.message)
        raise Refused(exc.code, f"task {task.id}: {exc.message}", hint=exc.hint,
                      task=failed) from None


def reserve_queued(app: App, prepared: Prepared, task: Task, facts: dict[str, HostFacts], *,
                   pinned: str | None = None) -> Reservation:
    """The queued task placed (away from the hosts its earlier attempts were lost on)
    and reserved again, or Refused (TAKEN: not queued any more; NO_CAPACITY)."""
    it = prepared.intake
    with app.store.locked():
        current = app.store.get(task.id)
        if current.status != "queued":
            raise Refused(Refusal.TAKEN, f"task {task.id} is {current.status} now (another "
                                         f"orch process took or cancelled it)", task=current)
        placement = place_task(app, it.specialty, it.specialty_reason, facts,
                               forge=current.forge, pinned=pinned, avoid=current.avoid_hosts)
        if placement.host is None:
            raise Refused(Refusal.NO_CAPACITY, f"queued task {task.id} waits: {placement.reason}",
                          task=current)
        reserved = _reserve(app, current, placement, kind_of(current).branch(current, it.issue))
    return Reservation(reserved, it.issue, prepared.repo, placement)


async def admit_queued(app: App, forge: Forge, facts: dict[str, HostFacts], task: Task, *,
                       pinned: str | None = None) -> Reservation:
    """A queued task -> reserved again (prepare_queued, then reserve_queued)."""
    prepared = await prepare_queued(app, forge, task)
    return reserve_queued(app, prepared, task, facts, pinned=pinned)


def _fail_undispatchable(app: App, task: Task, why: str) -> Task | None:
    try:
        return app.store.fail(task.id, f"no longer dispatchable: {why}",
                              error_kind="not_dispatchable")
    except InvalidTransition:
        return None   # cancelled or taken meanwhile
