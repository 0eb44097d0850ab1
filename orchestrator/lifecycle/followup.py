"""Follow-ups, plans and command-started runs: what a command becomes, reserved under the
store lock like any task (admit.reserve_new), with the command taken in the same write.

A follow-up belongs to orch's pull request: the PR whose head branch is a branch an
issue task of orch's pushed (`orch/<N>-<slug>`). Its parent is the issue's first task,
its branch the PR's head, its prompt the command, the line comments and reviews written
since orch's last run on the PR (only by people with trigger.min_permission, each with
its author), the issue and the previous run's summary. It prefers the previous run's
host, where its agent session can be resumed (kinds.FollowupKind.job).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..app import App
from ..core.events import last_result
from ..core.models import HostFacts, PullRequest, Remark, Task
from ..core.trust import outsider, permission_at_least
from ..forge.base import Forge
from .admit import Reservation, prepare, reserve_new
from .refusals import Refusal, Refused

ORCH_BRANCH_PREFIX = "orch/"


@dataclass(frozen=True)
class OrchPull:
    """An open pull request orch made, and the issue task that made it."""

    pr: PullRequest
    parent: Task               # the issue's first task (Task.parent of its follow-ups)
    last: Task                 # the newest finished run on the PR (the issue task or a follow-up)


def issue_of_branch(branch: str) -> int | None:
    """`orch/12-add-health` -> 12 (core/shell.branch_name's shape), else None."""
    if not branch.startswith(ORCH_BRANCH_PREFIX):
        return None
    head = branch[len(ORCH_BRANCH_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() and int(head) > 0 else None


def orch_pull(app: App, repo: str, pr: PullRequest) -> OrchPull | None:
    """`pr` as orch's own (open, its head branch one of orch's tasks pushed), or None."""
    number = issue_of_branch(pr.head)
    if pr.state != "open" or number is None:
        return None
    tasks = [t for t in app.store.for_issue(repo, number) if t.branch == pr.head]   # newest first
    made = [t for t in tasks if t.kind == "issue" and t.status == "succeeded"]
    if not made:
        return None
    firsts = [t for t in app.store.for_issue(repo, number) if t.kind == "issue"]
    done = [t for t in tasks if t.status == "succeeded" and t.kind in ("issue", "followup")]
    return OrchPull(pr, firsts[-1], done[0])


def summary_of(app: App, task: Task) -> str:
    """The agent's final summary of a finished task (its log, copied at finalize)."""
    try:
        text = app.task_log_path(task.id).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    result = last_result(text.splitlines())
    return (result.result or "") if result else ""


class Vetting:
    """Who may steer the agent (core/trust.py's rule, applied to conversation text):
    trigger.min_permission on the repository, never orch itself. Permissions are the
    forge's, asked once per login."""

    def __init__(self, app: App, forge: Forge, repo: str, own: str) -> None:
        self.app, self.forge, self.repo, self.own = app, forge, repo, own
        self.need = app.settings.trigger.min_permission

    async def role(self, login: str) -> str:
        return await asyncio.to_thread(self.forge.author_permission, self.repo, login)

    async def allowed(self, r: Remark) -> bool:
        if not r.author or r.author == self.own:
            return False
        if outsider(r.association, self.need):
            return False          # GitHub says they cannot hold the role: no API call
        return permission_at_least(await self.role(r.author), self.need)


def command_json(key: str, r: Remark, text: str) -> dict[str, Any]:
    return {"key": key, "source": r.source, "id": r.id, "number": r.number,
            "author": r.author, "text": text, "in_reply_to": r.in_reply_to}


async def followup_context(app: App, forge: Forge, vet: Vetting, op: OrchPull,
                           review: Remark | None) -> dict[str, Any]:
    """What a follow-up's prompt carries besides the command: the line comments and
    reviews since orch's last run on the PR (by authorised people), and that run."""
    repo, number = vet.repo, op.pr.number
    after = op.last.finished_at or ""
    lines = await asyncio.to_thread(forge.review_comments, repo, number)
    reviews = await asyncio.to_thread(forge.reviews, repo, number)
    comments = [c for c in lines if _after(c, after) or (review and c.review_id == review.id)]
    kept_comments = [{"author": c.author, "path": c.path, "line": c.line,
                      "diff_hunk": c.diff_hunk, "body": c.body, "created_at": c.created_at}
                     for c in comments if await vet.allowed(c)]
    kept_reviews = [{"author": v.author, "state": v.state, "body": v.body}
                    for v in reviews if v.body.strip() and (_after(v, after) or
                                                            (review and v.id == review.id))
                    and await vet.allowed(v)]
    previous = {"task_id": op.last.id, "host": op.last.host, "session_id": op.last.session_id,
                "summary": summary_of(app, op.last), "finished_at": op.last.finished_at}
    return {"comments": kept_comments, "reviews": kept_reviews, "previous": previous}


def _after(r: Remark, when: str) -> bool:
    # finished_at is ISO with +00:00; GitHub's times end in Z: compare as the same shape
    return not when or (r.created_at or "") >= when.replace("+00:00", "Z")


async def reserve_followup(app: App, forge: Forge, facts: dict[str, HostFacts], op: OrchPull,
                           request: dict[str, Any], *, command: str | None = None,
                           pinned: str | None = None) -> Reservation:
    """A follow-up task on orch's PR, reserved (preferring the previous run's host), or
    Refused (DUPLICATE: a run on this issue or PR is live; NO_CAPACITY; TAKEN)."""
    prepared = await prepare(forge, op.parent.repo, op.parent.issue, app.settings,
                             specialty=op.parent.specialty)
    return reserve_new(app, prepared, facts, pinned=pinned, kind="followup",
                       parent=op.parent.id, pr_number=op.pr.number, prefer=op.last.host,
                       command=command, fields={"branch": op.pr.head, "request": request})


async def find_orch_pull(app: App, forge: Forge, repo: str, number: int) -> OrchPull:
    """`number` as orch's open PR, or the open PR of orch's for issue `number`; Refused
    (NOT_FOUND) when there is none."""
    candidates = []
    for t in app.store.for_issue(repo, number):
        if t.kind == "issue" and t.status == "succeeded" and t.pr_url and t.branch:
            candidates.append(t)
    pulls = await asyncio.to_thread(forge.open_pulls, repo)
    for pr in pulls:
        op = orch_pull(app, repo, pr)
        if op is not None and (pr.number == number or any(pr.head == t.branch for t in candidates)):
            return op
    raise Refused(Refusal.NOT_FOUND, f"{repo}#{number} is not an open pull request of orch's, "
                                     f"nor an issue with one",
                  hint="a follow-up runs on the pull request orch opened for an issue")


async def by_hand(app: App, forge: Forge, facts: dict[str, HostFacts], repo: str, number: int,
                  text: str, *, pinned: str | None = None) -> Reservation:
    """`orch dispatch REPO#N --followup TEXT`: a person at orch's terminal asks (so no
    command comment and no permission check: they run orch); the context is a command's."""
    op = await find_orch_pull(app, forge, repo, number)
    own = await asyncio.to_thread(forge.login)
    context = await followup_context(app, forge, Vetting(app, forge, repo, own), op, None)
    request = {"command": {"text": text, "author": "orch operator"},
               "handle": app.settings.trigger.mention, **context}
    return await reserve_followup(app, forge, facts, op, request, pinned=pinned)
