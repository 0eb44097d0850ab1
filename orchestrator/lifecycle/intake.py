"""Intake: an issue reference becomes a validated Issue and its specialty.

Everything here runs before any state is written: a refusal (closed issue, pull
request, unauthorised author) changes nothing and exits 2.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config.settings import Settings
from ..core.classify import classify
from ..core.models import Issue
from ..errors import UsageError
from ..forge.base import Forge, permission_at_least


@dataclass(frozen=True)
class Intake:
    issue: Issue
    specialty: str
    specialty_reason: str


def check_eligible(issue: Issue, permission: str, settings: Settings) -> None:
    """Refuse what must never be dispatched, with the reason a user can act on."""
    if issue.is_pull_request:
        raise UsageError(f"{issue.ref} is a pull request, not an issue")
    if issue.state != "open":
        raise UsageError(f"{issue.ref} is {issue.state}; only open issues are dispatched")
    need = settings.trigger.min_permission
    if not permission_at_least(permission, need):
        raise UsageError(
            f"{issue.ref} was opened by {issue.author or 'an unknown user'}, who has "
            f"{permission!r} permission on {issue.repo}; orch needs at least {need!r}",
            hint="issue text is untrusted: only authors with trigger.min_permission "
                 "trigger work (a maintainer can open the issue instead)")


async def intake(forge: Forge, repo: str, number: int, settings: Settings,
                 specialty: str | None = None) -> Intake:
    """Read the issue, check its author, classify it. Blocking forge calls run in a thread."""
    issue = await asyncio.to_thread(forge.get_issue, repo, number)
    permission = (await asyncio.to_thread(forge.author_permission, repo, issue.author)
                  if not issue.is_pull_request and issue.state == "open" else "none")
    check_eligible(issue, permission, settings)
    chosen, reason = classify(issue, settings.specialties, specialty)
    return Intake(issue=issue, specialty=chosen, specialty_reason=reason)
