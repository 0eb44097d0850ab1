"""A split issue: one parent task, parts running in parallel, integration, one PR.

The parent (kind `split`) is made under the store lock by the same one-live-task rule as
any task (so overlapping polls make one split per issue), is `running` from then on, and
holds no slot: it has no host and runs no job. Its parts (kind `part`) and integrations
(kind `integrate`) are ordinary queued tasks: `orch poll` places them by specialty and
live load, starts, follows, finalizes, loses and requeues them like any task (admit.py,
launch.py, reconcile.py, finalize.py). What is particular to a split happens here, once
per pass for every running parent (`advance`), after reconcile has finalized what ended:

- parts whose dependencies are in the integration branch are created (so each starts from
  the integration branch as it then is, with the commits integrated so far in its prompt);
- finished parts not merged yet get an integration run (merge in dependency order; a
  conflict is a fix run), pinned to the host of the part that finished last; when every
  part is in, a last one runs the whole test suite on a `testing` host (or, without one,
  that merge run does it);
- the tested integration branch becomes one PR (`deliver`);
- a part or integration that failed for good fails the parent: the live ones are
  cancelled and the tracking comment says which failed and why.

Every step is decided under the store lock from the store as it is, so two passes never
create a part twice; delivering and failing take the parent's claim (claims.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..app import App
from ..core import report
from ..core.events import last_result
from ..core.models import (
    CHILD_KINDS,
    INTEGRATE_KIND,
    LIVE_STATUSES,
    PARENT_KIND,
    PART_KIND,
    PLANNER_KIND,
    SPECIALTIES,
    Task,
)
from ..core.split import (
    LAST_SPECIALTY,
    SPLIT_LABEL,
    Part,
    PlanRefused,
    dependency_order,
    integration_branch,
    parts_from_labels,
    ready_parts,
    validate_plan,
)
from ..errors import HostUnreachable, OrchError, UsageError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..store import DuplicateTask, InvalidTransition
from . import claims
from .admit import Prepared, check_new_task
from .refusals import Refusal, Refused
from .tell import tell, tell_split

STOPPED = "cancelled: another part of its split failed"


def label_parts(app: App, title: str, labels: tuple[str, ...]) -> list[Part]:
    """The parts the label rule makes of an issue ([] when it is not split by label)."""
    if not app.settings.split.by_labels:
        return []
    return parts_from_labels(title, labels, app.settings.specialties)


def wants_planner(labels: tuple[str, ...]) -> bool:
    """The `orch:split` label asks for a planning run (with the trigger label)."""
    return SPLIT_LABEL in {label.strip().lower() for label in labels}


def known_specialties(app: App) -> list[str]:
    return list(dict.fromkeys([*app.settings.specialties, *SPECIALTIES]))


def _structured(app: App, task: Task) -> Any:
    """A planning run's structured output, from the log finalize kept (untrusted)."""
    try:
        text = app.task_log_path(task.id).read_text(errors="replace")
    except OSError:
        return None
    result = last_result(text.splitlines())
    return result.structured_output if result else None


def _adopt_plan(app: App, parent: Task, children: list[Task]) -> tuple[Task, str | None, Task | None]:
    """A planner parent without its plan yet: (parent, why the plan was refused or None,
    the planning run). The plan is kept on the parent once it is valid."""
    planner = next((c for c in reversed(children) if c.kind == PLANNER_KIND), None)   # the newest
    if planner is None or planner.status != "succeeded":
        return parent, None, planner
    try:
        parts = validate_plan(_structured(app, planner), known=known_specialties(app),
                              max_parts=app.settings.split.max_parts)
    except PlanRefused as exc:
        return parent, str(exc), planner
    info = {**(parent.split or {}), "plan": [p.to_json() for p in parts]}
    return app.store.update(parent.id, split=info), None, planner


def plan_of(parent: Task) -> list[Part]:
    return [Part.from_json(p) for p in (parent.split or {}).get("plan", [])]


def part_of(task: Task) -> Part | None:
    info = (task.split or {}).get("part")
    return Part.from_json(info) if task.kind == PART_KIND and info else None


# --------------------------------------------------------------------------- beginning

async def begin(app: App, forge: Forge, prepared: Prepared, parts: list[Part], *,
                label: str | None, source: str = "labels",
                command: str | None = None) -> tuple[Task, list[Task]]:
    """Make the parent (Refused as any new task would be: a live task for the issue, the
    trigger label gone) and its first parts, queued; post the tracking comment.
    `command`: the key of the `@orch split` comment that asks, taken in the same locked
    write that makes the parent (lifecycle/conversation.py), so it runs once."""
    issue = prepared.intake.issue
    with app.store.locked():
        check_new_task(app, prepared, label=label, command=command)
        try:
            parent = app.store.create(
                issue.repo, issue.number, issue.title, "general", forge=prepared.forge,
                kind=PARENT_KIND, split={"plan": [p.to_json() for p in parts], "merged": [],
                                         "integrated": [], "recorded": [], "source": source})
        except DuplicateTask as exc:
            raise Refused(Refusal.DUPLICATE, exc.message, hint=exc.hint, task=exc.live) from None
        if command is not None:
            app.store.take_command(command, task_id=parent.id)
        # running, with no host: it holds no slot (store.reserved counts hosts only)
        parent = app.store.start(parent.id, host="", branch=integration_branch(
            issue.number, issue.title), workspace="")
        if source == "planner":   # the parts come from a planning run on a general host
            children = [app.store.create(issue.repo, issue.number, issue.title, "general",
                                         forge=prepared.forge, kind=PLANNER_KIND,
                                         parent=parent.id, split={})]
        else:
            children = _create_ready(app, parent)
    try:
        cid = await tell(app, forge, parent, "running",
                         report.comment_split(parent, children, len(parts)))
        parent = app.store.update(parent.id, comment_id=cid)
    except OrchError:
        pass   # the parts' own starts draw the tracking comment (tell_split)
    return parent, children


def _create_ready(app: App, parent: Task) -> list[Task]:
    """Queue the parts whose dependencies are merged and that have no task yet (under the
    store lock: the one place parts are made, so each plan entry gets one task)."""
    info = parent.split or {}
    started = [p.k for p in (part_of(c) for c in app.store.children(parent)) if p]
    made = []
    for part in ready_parts(plan_of(parent), info.get("merged", []), started):
        made.append(app.store.create(
            parent.repo, parent.issue, parent.title, part.specialty, forge=parent.forge,
            kind=PART_KIND, parent=parent.id,
            split={"part": part.to_json(), "plan": info.get("plan", []),
                   "integrated": info.get("integrated", [])}))
    return made


# --------------------------------------------------------------------------- each pass

def pinned_host(app: App, task: Task) -> str | None:
    """The host an integration must run on (the later part's), unless an attempt was
    lost there; None for any other task."""
    host = (task.split or {}).get("host") if task.kind == INTEGRATE_KIND else None
    return host if host and host not in task.avoid_hosts and host in {
        h.name for h in app.hosts} else None


def _testing_host(app: App) -> bool:
    return any(h.enabled and LAST_SPECIALTY in h.specialties for h in app.hosts)


def _summary(app: App, task: Task) -> str:
    """What a finished child's agent said (its result), from the log finalize kept."""
    try:
        text = app.task_log_path(task.id).read_text(errors="replace")
    except OSError:
        return ""
    result = last_result(text.splitlines())
    return result.result if result and result.result else ""


def _record(app: App, parent: Task, children: list[Task]) -> Task:
    """Fold succeeded integrations into the parent: their parts are merged."""
    info = dict(parent.split or {})
    recorded = list(info.get("recorded", []))
    merged, integrated = list(info.get("merged", [])), list(info.get("integrated", []))
    tested = bool(info.get("tested"))
    for c in children:
        if c.kind != INTEGRATE_KIND or c.status != "succeeded" or c.id in recorded:
            continue
        recorded.append(c.id)
        for m in (c.split or {}).get("merge", []):
            if m["k"] not in merged:
                merged.append(m["k"])
                integrated.append({"k": m["k"], "specialty": m["specialty"],
                                   "commit": m.get("commit") or ""})
        tested = tested or bool((c.split or {}).get("final"))
        info["final_commit"], info["final_tests"] = c.commit, c.tests
    if recorded == info.get("recorded", []):
        return parent
    info.update(recorded=recorded, merged=merged, integrated=integrated, tested=tested)
    return app.store.update(parent.id, split=info)


def _integration(app: App, parent: Task, children: list[Task]) -> Task | None:
    """The next integration run, queued, if one is due and none is live."""
    if any(c.kind == INTEGRATE_KIND and c.status in LIVE_STATUSES for c in children):
        return None
    info = parent.split or {}
    plan = plan_of(parent)
    merged = set(info.get("merged", []))
    done = {p.k: c for c in children if c.status == "succeeded" for p in [part_of(c)] if p}
    todo = [p for p in dependency_order(plan) if p.k in done and p.k not in merged]
    everything = {p.k for p in plan}
    if todo:
        latest = max((done[p.k] for p in todo), key=lambda c: (c.finished_at or "", c.id))
        final = merged | {p.k for p in todo} == everything and not _testing_host(app)
        specialty, host = latest.specialty, latest.host
        merge = [{"k": p.k, "specialty": p.specialty, "title": p.title,
                  "branch": done[p.k].branch, "commit": done[p.k].commit,
                  "summary": _summary(app, done[p.k])} for p in todo]
    elif merged == everything and not info.get("tested"):
        final, specialty, host, merge = True, LAST_SPECIALTY, None, []
        if not _testing_host(app):   # (only when a testing host went away meanwhile)
            last = max(done.values(), key=lambda c: (c.finished_at or "", c.id))
            specialty, host = last.specialty, last.host
    else:
        return None
    return app.store.create(parent.repo, parent.issue, parent.title, specialty,
                            forge=parent.forge, kind=INTEGRATE_KIND, parent=parent.id,
                            split={"merge": merge, "final": final, "host": host})


def _culprit(children: list[Task]) -> Task | None:
    """A child that failed for good (or was cancelled by a person): it fails the split."""
    return next((c for c in children if c.status == "failed"
                 or (c.status == "cancelled" and c.error != STOPPED)), None)


async def advance(app: App, fleet: Fleet, forge: Forge, parent: Task) -> list[Task]:
    """Move a running split on by one step (see the module docstring); the children it
    queued, for the caller to start like any queued task."""
    with app.store.locked():
        parent = app.store.get(parent.id)
        if parent.status != "running" or claims.claim_held(parent):
            return []
        children = app.store.children(parent)
        culprit, refused = _culprit(children), None
        info = parent.split or {}
        if culprit is None and info.get("source") == "planner" and not info.get("plan"):
            parent, refused, planner = _adopt_plan(app, parent, children)
            if refused is not None:
                culprit = planner
            elif not (parent.split or {}).get("plan"):
                return []   # the planning run is still under way
            planned = True
        else:
            planned = False
        if culprit is None:
            parent = _record(app, parent, children)
            made = _create_ready(app, parent)
            nxt = _integration(app, parent, [*children, *made])
            made += [nxt] if nxt is not None else []
    if culprit is not None:
        await fail(app, fleet, forge, parent, culprit,
                   reason=None if refused is None else f"the plan was refused: {refused}",
                   error_kind=None if refused is None else "plan_refused")
        return []
    if (parent.split or {}).get("tested"):
        await deliver(app, forge, parent)
        return []
    if made or planned:
        await _tell_quietly(app, forge, parent)   # a plan adopted: the comment shows it
    return made


async def _tell_quietly(app: App, forge: Forge, parent: Task) -> None:
    try:
        await tell_split(app, forge, parent)
    except OrchError:
        pass   # the next change redraws it


async def deliver(app: App, forge: Forge, parent: Task) -> Task:
    """The tested integration branch -> one PR (found again by its head branch after a
    crash), the tracking comment's last word, the parent succeeded."""
    claimed = claims.take(app, parent.id)
    if claimed is None:
        return app.store.get(parent.id)
    try:
        children = app.store.children(claimed)
        shown = [c for c in children if c.kind == PART_KIND]
        summaries = {c.id: _summary(app, c) for c in shown}
        base = await asyncio.to_thread(forge.default_branch, claimed.repo)
        pr_url = await asyncio.to_thread(
            forge.open_pull_request, claimed.repo, head=claimed.branch or "", base=base,
            title=report.pr_title(claimed.title),
            body=report.split_pr_body(claimed, children, summaries))
        info = claimed.split or {}
        claimed = app.store.update(
            claimed.id, pr_url=pr_url, tests=info.get("final_tests"),
            commit=info.get("final_commit"),
            cost_usd=sum(c.cost_usd or 0.0 for c in children),
            turns=sum(c.turns or 0 for c in children))
        cid = await tell(app, forge, claimed, "succeeded",
                         report.comment_split_succeeded(claimed, children, pr_url))
        return app.store.succeed(claimed.id, f"PR {pr_url}", comment_id=cid, finalized=True,
                                 claimed_by=None, claimed_at=None)
    except BaseException:
        claims.release(app, parent.id)
        raise


def child_name(task: Task) -> str:
    """A child as the messages name it."""
    part = part_of(task)
    if part is not None:
        return f"part {part.k} ({task.specialty}, task {task.id})"
    if task.kind == PLANNER_KIND:
        return f"the planning run (task {task.id})"
    return f"the integration (task {task.id})"


async def fail(app: App, fleet: Fleet, forge: Forge, parent: Task, culprit: Task, *,
               reason: str | None = None, error_kind: str | None = None) -> Task:
    """A child failed for good (or its plan was refused: `reason`): stop the others, fail
    the parent, say which and why."""
    claimed = claims.take(app, parent.id)
    if claimed is None:
        return app.store.get(parent.id)
    reason = reason or (f"{child_name(culprit)} {culprit.status}: "
                        f"{culprit.error or culprit.status}")
    try:
        await stop_children(app, fleet, claimed, STOPPED)
        children = app.store.children(claimed)
        try:
            cid: int | None = await tell(app, forge, claimed, "failed",
                                         report.comment_split_failed(claimed, children,
                                                                     culprit, reason))
        except OrchError:
            cid = None   # told by the next `orch poll` (the parent stays unreported)
        done: dict[str, Any] = dict(finalized=cid is not None, claimed_by=None, claimed_at=None)
        if cid is not None:
            done["comment_id"] = cid
        return app.store.fail(claimed.id, reason,
                              error_kind=error_kind or culprit.error_kind or "other", **done)
    except BaseException:
        claims.release(app, parent.id)
        raise


async def stop_strays(app: App, fleet: Fleet) -> list[Task]:
    """Live children of a split that has ended (one that another orch process was
    starting while the split failed or was cancelled): stopped now. The parents named."""
    ended: list[Task] = []
    for child in app.store.list(status="running") + app.store.list(status="queued"):
        if child.kind not in CHILD_KINDS or not child.parent:
            continue
        parent = app.store.get(child.parent)
        if parent.status in ("failed", "cancelled") and parent.id not in {p.id for p in ended}:
            ended.append(parent)
    for parent in ended:
        await stop_children(app, fleet, parent, STOPPED if parent.status == "failed"
                            else "cancelled with its split")
    return ended


async def stop_children(app: App, fleet: Fleet, parent: Task, reason: str) -> None:
    """Cancel every live child: queued ones at once, running ones after their job's
    process group is stopped (an unreachable host's job is killed by a later reconcile,
    which kills the jobs of tasks that are no longer running)."""
    for child in app.store.children(parent):
        if child.status in ("queued", "lost"):
            try:
                app.store.cancel(child.id, reason, error=reason, error_kind="cancelled",
                                 finalized=True)
            except InvalidTransition:
                pass   # started meanwhile: the next pass sees it running and stops it
            continue
        if child.status != "running":
            continue
        held = claims.take(app, child.id)
        if held is None:
            continue   # being finalized by another process: its outcome stands
        try:
            if held.host and held.workspace:
                from ..job import remote
                conn = await fleet.connection(held.host)
                await remote.kill(conn, held.workspace)
        except (HostUnreachable, OrchError):
            pass
        try:
            app.store.cancel(child.id, reason, error=reason, error_kind="cancelled",
                             finalized=True, claimed_by=None, claimed_at=None)
        except InvalidTransition:
            claims.release(app, child.id)


# --------------------------------------------------------------------------- a person's commands

async def cancel(app: App, parent: Task, reason: str) -> Task:
    """`orch cancel PARENT`: every part and integration, then the parent."""
    claimed = claims.take(app, parent.id)
    if claimed is None:
        current = app.store.get(parent.id)
        if current.status != "running":
            return app.store.cancel(current.id)   # the store says why not
        raise UsageError(f"split {parent.id} is being moved on by another orch process "
                         f"({current.claimed_by}); nothing was changed",
                         hint="try again in a moment")
    try:
        async with app.fleet() as fleet:
            await stop_children(app, fleet, claimed, reason)
        done = app.store.cancel(claimed.id, reason, error=reason, error_kind="cancelled",
                                claimed_by=None, claimed_at=None)
    except BaseException:
        claims.release(app, parent.id)
        raise
    try:
        cid = await tell(app, app.forge(done.forge), done, "cancelled",
                         report.comment_split_cancelled(done, app.store.children(done), reason))
        return app.store.update(done.id, comment_id=cid, finalized=True)
    except OrchError:
        return done


def retry(app: App, parent: Task) -> Task:
    """`orch retry PARENT`: the parent runs again, with only its failed, cancelled or lost
    parts and integrations queued again; succeeded parts (and what is merged) are kept."""
    with app.store.locked():
        parent = app.store.requeue(parent.id, "retried by user", reset_attempts=True)
        parent = app.store.start(parent.id, host="", branch=parent.branch or "", workspace="")
        for child in app.store.children(parent):
            if child.status in ("failed", "cancelled", "lost"):
                app.store.requeue(child.id, "retried with its split", reset_attempts=True)
        info = parent.split or {}
        if info.get("source") == "planner" and not info.get("plan") and not any(
                c.kind == PLANNER_KIND and c.status in LIVE_STATUSES
                for c in app.store.children(parent)):
            # its plan was refused: a new planning run (the issue may say more now)
            app.store.create(parent.repo, parent.issue, parent.title, "general",
                             forge=parent.forge, kind=PLANNER_KIND, parent=parent.id, split={})
    return parent


def parts_json(app: App, parent: Task) -> list[dict[str, Any]]:
    """`orch show PARENT --json`'s `parts`."""
    out = []
    for c in app.store.children(parent):
        part = part_of(c)
        out.append({"id": c.id, "kind": c.kind, "k": part.k if part else None,
                    "specialty": c.specialty, "host": c.host, "status": c.status,
                    "started_at": c.started_at, "finished_at": c.finished_at,
                    "branch": c.branch, "commit": c.commit})
    return out
