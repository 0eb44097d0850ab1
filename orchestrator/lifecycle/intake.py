"""Intake: an issue reference becomes a validated Issue and its specialty.

Everything here runs before any state is written: a refusal (closed issue, pull request,
unauthorised author, no such issue) is a `Refused` with its code and changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config.settings import Settings
from ..core.classify import classify
from ..core.models import Issue
from ..forge.base import Forge, IssueNotFound, permission_at_least
from .refusals import Refusal, Refused


@dataclass(frozen=True)
class Intake:
    issue: Issue
    specialty: str
    specialty_reason: str


def check_eligible(issue: Issue, permission: str, settings: Settings) -> None:
    """Refuse what must never be dispatched, with the reason a user can act on."""
    if issue.is_pull_request:
        raise Refused(Refusal.PULL_REQUEST, f"{issue.ref} is a pull request, not an issue")
    if issue.state != "open":
        raise Refused(Refusal.CLOSED,
                      f"{issue.ref} is {issue.state}; only open issues are dispatched")
    need = settings.trigger.min_permission
    if not permission_at_least(permission, need):
        raise Refused(
            Refusal.UNAUTHORISED,
            f"{issue.ref} was opened by {issue.author or 'an unknown user'}, who has "
            f"{permission!r} permission on {issue.repo}; orch needs at least {need!r}",
            hint="issue text is untrusted: only authors with trigger.min_permission "
                 "trigger work (a maintainer can open the issue instead)")


async def read_issue(forge: Forge, repo: str, number: int, settings: Settings) -> Issue:
    """The issue, checked (check_eligible). Blocking forge calls run in a thread."""
    try:
        issue = await asyncio.to_thread(forge.get_issue, repo, number)
    except IssueNotFound as exc:
        raise Refused(Refusal.NOT_FOUND, exc.message, hint=exc.hint) from None
    permission = (await asyncio.to_thread(forge.author_permission, repo, issue.author)
                  if not issue.is_pull_request and issue.state == "open" else "none")
    check_eligible(issue, permission, settings)
    return issue


async def intake(forge: Forge, repo: str, number: int, settings: Settings,
                 specialty: str | None = None) -> Intake:
    """Read the issue, check its author, classify it."""
    issue = await read_issue(forge, repo, number, settings)
    chosen, reason = classify(issue, settings.specialties, specialty)
    return Intake(issue=issue, specialty=chosen, specialty_reason=reason)
