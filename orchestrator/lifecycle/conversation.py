"""The conversation loop: `@orch` commands on issues and pull requests, and "Request
changes" reviews on orch's pull requests, found once per `orch poll` pass and each taken
exactly once (docs/conversation.md).

One scan per repository costs a constant number of API calls, however many issues and
pull requests are open: the repository-wide lists of issue comments and of line
comments with `since` (paginated), the open pull requests (one list, to know which are
orch's), and the reviews of those of orch's pull requests that changed since the last
scan (for `trigger.review`). Everything else is asked only for a command found.

Exactly once: a command is named by where it was written and the forge's id of it
(core/commands.command_key), and taken by recording that name in the store under the
store lock, in the same write that creates the task it starts (admit.reserve_new) or
records its refusal. Overlapping passes, `orch dispatch`, restarts and edits cannot run
it twice: an edit keeps the id, and a comment edited after the scan window is not read
as new at all. A command that cannot start yet (no host has a slot, or a run on the same
issue is live) is not taken: the cursor stays before it and the next pass asks again.

Who: the author must pass trigger.min_permission (core/trust.py's rule); orch's own
comments are never commands; anyone else gets one reply saying why, once. A command on a
pull request orch did not make does nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..app import App
from ..core import report
from ..core.commands import RUN, Command, command_key, parse_command
from ..core.models import HostFacts, Remark
from ..core.trust import permission_at_least
from ..errors import ForgeUnavailable, OrchError
from ..forge.base import Forge
from ..store import parse_time
from .admit import Reservation, issue_refusal, prepare, reserve_new
from .followup import (
    OrchPull,
    Vetting,
    command_json,
    followup_context,
    orch_pull,
    reserve_followup,
    summary_of,
)
from .refusals import Refusal, Refused

LOOKBACK_SECONDS = 24 * 3600   # the first scan of a repository reads this far back
MARGIN_SECONDS = 120           # each scan starts this long before the last one began (clocks)
KEEP_RECORDS_SECONDS = 7 * 24 * 3600   # a taken command's record outlives its window this long
# Refusals that mean "not now": the command is left for the next pass, not taken.
_NOT_NOW = (Refusal.NO_CAPACITY, Refusal.DUPLICATE)


@dataclass
class Scan:
    """One repository's scan: the reservations to start, and what was said or left."""

    reservations: list[Reservation] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)       # command keys taken
    skipped: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0                                       # forge list calls the scan made


@dataclass(frozen=True)
class Found:
    remark: Remark
    command: Command
    key: str
    pull: OrchPull | None      # set when the command is on orch's pull request


Handler = Callable[["Context", Found], Awaitable[str | None]]


@dataclass
class Context:
    app: App
    forge: Forge
    repo: str
    facts: dict[str, HostFacts]
    vet: Vetting
    scan: Scan


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_orch(r: Remark, own: str) -> bool:
    return (bool(own) and r.author == own) or r.body.lstrip().startswith(report.MARKER)


async def scan_commands(app: App, forge: Forge, repo: str, facts: dict[str, HostFacts]) -> Scan:
    """Find and take the repository's new commands (see the module docstring)."""
    s = app.settings.trigger
    out = Scan()
    began = time.time()
    name = f"commands:{forge.kind}:{repo}"
    cursor = app.store.cursor(name)
    since_ts = (parse_time(cursor).timestamp() - MARGIN_SECONDS) if cursor \
        else began - LOOKBACK_SECONDS
    since = _iso(since_ts)
    own = await asyncio.to_thread(forge.login)
    remarks = await asyncio.to_thread(forge.remarks_since, repo, since)
    pulls = await asyncio.to_thread(forge.open_pulls, repo)
    out.calls += 3
    ours = {p.number: op for p in pulls if (op := orch_pull(app, repo, p)) is not None}
    open_numbers = {p.number for p in pulls}
    found: list[Found] = []
    for r in remarks:
        # An edit of an older comment shows up in the `since` list again: not a new command.
        if (r.created_at or since) < since or _by_orch(r, own):
            continue
        cmd = parse_command(r.body, s.mention)
        if cmd is None:
            continue
        on_pull = r.source != "issue_comment" or r.number in open_numbers
        if on_pull and r.number not in ours:
            continue                     # a pull request orch did not make: nothing
        found.append(Found(r, cmd, command_key(repo, r.source, r.id), ours.get(r.number)))
    if s.review:
        for number, op in ours.items():
            if (op.pr.updated_at or since) < since:
                continue
            out.calls += 1
            for v in await asyncio.to_thread(forge.reviews, repo, number):
                if v.state == "CHANGES_REQUESTED" and (v.created_at or since) >= since \
                        and not _by_orch(v, own):
                    found.append(Found(v, Command(RUN, v.body.strip()),
                                       command_key(repo, "review", v.id), op))
    found.sort(key=lambda f: (f.remark.created_at, f.remark.id))
    ctx = Context(app, forge, repo, facts, Vetting(app, forge, repo, own), out)
    await _plan_labels(ctx)
    waiting: str | None = None
    for f in found:
        if app.store.command(f.key) is not None:
            continue
        try:
            await _take(ctx, f)
        except Refused as exc:
            if exc.code in _NOT_NOW:
                waiting = min(waiting or f.remark.created_at, f.remark.created_at)
                out.skipped.append({"repo": repo, "issue": f.remark.number,
                                    "reason": f"command {f.key} waits: {exc.message}",
                                    "code": exc.code.value})
            elif exc.code is not Refusal.TAKEN:
                await _decline(ctx, f, exc.message)
        except ForgeUnavailable:
            raise
        except OrchError as exc:
            out.skipped.append({"repo": repo, "issue": f.remark.number,
                                "reason": f"command {f.key}: {exc.message}", "code": "error"})
            waiting = min(waiting or f.remark.created_at, f.remark.created_at)
    # The next scan starts from here, or from the oldest command still waiting.
    app.store.set_cursor(name, waiting or _iso(began))
    # Records older than the window (and than any run they could still answer for).
    app.store.forget_commands(_iso(since_ts - KEEP_RECORDS_SECONDS))
    return out


async def _plan_labels(ctx: Context) -> None:
    """Issues labelled `orch:plan`: a plan run each, as for the trigger label (orch takes the
    label off when the plan is posted, so a label put back asks for a new plan). The
    person who added the label must have trigger.min_permission."""
    app, label = ctx.app, report.LABEL_PLAN
    listed = await asyncio.to_thread(ctx.forge.list_open_issues, ctx.repo, label)
    ctx.scan.calls += 1
    for issue in listed:
        try:
            early = issue_refusal(app, ctx.repo, issue.number, retake=True)
            if early is not None:
                raise early
            prepared = await prepare(ctx.forge, ctx.repo, issue.number, app.settings)
            added = [e for e in prepared.intake.issue.events if e.kind == "labeled" and e.label == label]
            who = added[-1].actor if added else ""
            if not who or not permission_at_least(await ctx.vet.role(who), ctx.vet.need):
                raise Refused(Refusal.UNTRUSTED, f"the `{label}` label was added by "
                                                 f"{who or 'an unknown account'}, who lacks "
                                                 f"{ctx.vet.need!r}")
            request = {"handle": app.settings.trigger.mention}
            ctx.scan.reservations.append(reserve_new(app, prepared, ctx.facts, label=label,
                                                     kind="plan", fields={"request": request}))
        except Refused as exc:
            ctx.scan.skipped.append({"repo": ctx.repo, "issue": issue.number,
                                     "reason": f"{label}: {exc.message}", "code": exc.code.value})


async def _take(ctx: Context, f: Found) -> None:
    """Authorise, then run the verb's handler; its answer (if any) is the reply."""
    if not await ctx.vet.allowed(f.remark):
        need = ctx.app.settings.trigger.min_permission
        await _refuse(ctx, f, f"commands need at least {need!r} permission on {ctx.repo}")
        return
    where = "pull" if f.pull is not None else "issue"
    handler = HANDLERS.get((where, f.command.verb))
    if handler is None:
        await _decline(ctx, f, f"`{f.command.verb}` is not a command on "
                              f"{'a pull request' if where == 'pull' else 'an issue'} here")
        return
    said = await handler(ctx, f)
    if said is not None and ctx.app.store.take_command(f.key, outcome="answered"):
        await _say(ctx, f, said)
    ctx.scan.taken.append(f.key)


async def _refuse(ctx: Context, f: Found, why: str) -> None:
    """The one reply to a command whose author may not give it (taken, so said once)."""
    if ctx.app.store.take_command(f.key, outcome="refused", why=why):
        await _say(ctx, f, report.reply_refused(f.remark.author, why))


async def _decline(ctx: Context, f: Found, why: str) -> None:
    """The one reply to a command orch cannot carry out (a closed issue, an issue whose
    own text is not trusted, a verb it does not know here)."""
    if ctx.app.store.take_command(f.key, outcome="declined", why=why):
        await _say(ctx, f, report.reply_note(why))


async def _say(ctx: Context, f: Found, body: str) -> None:
    cid = await asyncio.to_thread(ctx.forge.reply, ctx.repo, f.remark, body)
    ctx.app.store.update_command(f.key, replies={"answered": cid})


def _request(ctx: Context, f: Found, **more: Any) -> dict[str, Any]:
    return {"command": command_json(f.key, f.remark, f.command.text),
            "handle": ctx.app.settings.trigger.mention, **more}


# -- the verbs ------------------------------------------------------------------------------

def _has_pr(ctx: Context, number: int) -> str | None:
    """The note for a command that would make a second PR for an issue that has orch's
    (a new run would rebuild its branch and lose the follow-ups' commits)."""
    made = [t for t in ctx.app.store.for_issue(ctx.repo, number)
            if t.kind in ("issue", "split") and t.status == "succeeded" and t.pr_url]
    if not made:
        return None
    return report.reply_note(f"this issue has orch's pull request already ({made[0].pr_url}): "
                             f"ask for changes there")


async def _run_on_issue(ctx: Context, f: Found, kind: str = "issue",
                        **more: Any) -> str | None:
    number = f.remark.number
    if kind == "issue" and (note := _has_pr(ctx, number)) is not None:
        return note
    prepared = await prepare(ctx.forge, ctx.repo, number, ctx.app.settings)
    ctx.scan.reservations.append(reserve_new(ctx.app, prepared, ctx.facts, kind=kind,
                                             command=f.key,
                                             fields={"request": _request(ctx, f, **more)}))
    return None


async def _plan(ctx: Context, f: Found) -> str | None:
    plans = [t for t in ctx.app.store.for_issue(ctx.repo, f.remark.number)
             if t.kind == "plan" and t.status == "succeeded"]
    revise = summary_of(ctx.app, plans[0]) if plans and f.command.text else ""
    return await _run_on_issue(ctx, f, "plan", revise=revise)


async def _approve(ctx: Context, f: Found) -> str | None:
    plans = [t for t in ctx.app.store.for_issue(ctx.repo, f.remark.number)
             if t.kind == "plan" and t.status == "succeeded"]
    if not plans:
        return report.reply_note("there is no plan to approve: ask for one with "
                                 f"`{ctx.app.settings.trigger.mention} plan`")
    return await _run_on_issue(ctx, f, "issue", plan=summary_of(ctx.app, plans[0]))


async def _followup(ctx: Context, f: Found) -> str | None:
    assert f.pull is not None
    review = f.remark if f.remark.source == "review" else None
    context = await followup_context(ctx.app, ctx.forge, ctx.vet, f.pull, review)
    ctx.scan.reservations.append(await reserve_followup(
        ctx.app, ctx.forge, ctx.facts, f.pull, {**_request(ctx, f), **context}, command=f.key))
    return None


async def _split(ctx: Context, f: Found) -> str | None:
    """`@orch split`: a planning run on a general host proposes the parts
    (lifecycle/split.py, docs/split.md); they then run like a labelled split's."""
    from . import split
    number = f.remark.number
    if (note := _has_pr(ctx, number)) is not None:
        return note
    prepared = await prepare(ctx.forge, ctx.repo, number, ctx.app.settings)
    await split.begin(ctx.app, ctx.forge, prepared, [], label=None, source="planner",
                      command=f.key)
    return None


async def _cancel(ctx: Context, f: Found) -> str | None:
    from .control import cancel_task
    issue = f.pull.parent.issue if f.pull is not None else f.remark.number
    live = ctx.app.store.live_for(ctx.repo, issue)
    if live is None:
        return report.reply_note("nothing of orch's is running here")
    done = await cancel_task(ctx.app, live.id)
    return report.reply_note(f"task {done.id} is {done.status}")


async def _retry(ctx: Context, f: Found) -> str | None:
    from .control import retry_task
    issue = f.pull.parent.issue if f.pull is not None else f.remark.number
    tasks = ctx.app.store.for_issue(ctx.repo, issue)
    last = tasks[0] if tasks else None
    if last is None or last.status not in ("failed", "cancelled", "lost"):
        return report.reply_note("there is no failed or cancelled run here to retry")
    again = await retry_task(ctx.app, last.id)
    return report.reply_note(f"task {again.id} is queued again; the next pass starts it")


# (where, verb) -> what it does. A verb another feature adds (split) is a row here.
HANDLERS: dict[tuple[str, str], Handler] = {
    ("issue", RUN): _run_on_issue,
    ("issue", "plan"): _plan,
    ("issue", "approve"): _approve,
    ("issue", "cancel"): _cancel,
    ("issue", "retry"): _retry,
    ("issue", "split"): _split,
    ("pull", RUN): _followup,
    ("pull", "cancel"): _cancel,
    ("pull", "retry"): _retry,
}

