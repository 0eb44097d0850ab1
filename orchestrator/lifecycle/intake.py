"""Intake: an issue reference becomes a validated Issue and its specialty.

Everything here runs before any state is written: a refusal (closed issue, pull request,
unauthorised author, a label or an edit by someone without the permission, no such issue)
is a `Refused` with its code and changes nothing. The Issue that leaves here carries only
what the agent may read: the rules are core/trust.py's, the forge only says who wrote what.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config.settings import Settings
from ..core.classify import classify
from ..core.models import Issue
from ..core.trust import UntrustedText, logins_to_check, permission_at_least, vet_issue
from ..forge.base import Forge, IssueNotFound
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


async def vetted_issue(forge: Forge, repo: str, number: int, settings: Settings) -> Issue:
    """Read the issue and return it as the agent may see it (see core/trust.py), or
    raise Refused. Blocking forge calls run in a thread; permissions are the forge's
    (asked once per login for the forge object's life)."""
    try:
        issue = await asyncio.to_thread(forge.get_issue, repo, number)
    except IssueNotFound as exc:
        raise Refused(Refusal.NOT_FOUND, exc.message, hint=exc.hint) from None
    if issue.is_pull_request or issue.state != "open":
        check_eligible(issue, "none", settings)      # says which, before any other call
    t = settings.trigger
    permissions = {login: await asyncio.to_thread(forge.author_permission, issue.repo, login)
                   for login in logins_to_check(issue, t.label, t.comments, t.min_permission)}
    check_eligible(issue, permissions.get(issue.author, "none"), settings)
    # orch's own login only tells its own comments apart: an issue without comments needs
    # no request for it.
    own = await asyncio.to_thread(forge.login) if t.comments != "none" and issue.comments else ""
    try:
        return vet_issue(issue, permissions, need=t.min_permission, label=t.label,
                         comments=t.comments, own_login=own)
    except UntrustedText as exc:
        raise Refused(Refusal.UNTRUSTED, exc.message, hint=exc.hint) from None


async def intake(forge: Forge, repo: str, number: int, settings: Settings,
                 specialty: str | None = None) -> Intake:
    """Read and vet the issue, check its author, classify it."""
    issue = await vetted_issue(forge, repo, number, settings)
    chosen, reason = classify(issue, settings.specialties, specialty)
    return Intake(issue=issue, specialty=chosen, specialty_reason=reason)
