"""Who may make orch do what (pure): the rules that keep a stranger's text out of the agent
and a stranger's issue off this machine.

GitHub issues are written by people orch does not know; an agent runs with
bypassPermissions, the host's push rights and its Claude credentials. So:

- the text the agent reads is trusted only as far as its writers are. The issue's author
  must have `trigger.min_permission` on the repository (intake checks it); so must the
  person who added the trigger label, and whoever edited the title or the body after
  that (else the text is not the one that person approved). Comments reach the prompt
  only when their author (and last editor) has that permission too, each shown with
  its login, never orch's own; `trigger.comments: none` keeps every comment out.
- on a `connection: local` host the agent runs as the user who holds orch's state, its
  GitHub token's environment and its SSH keys: a GitHub issue runs there only when the
  operator opted in (`allow_local_github: true`). The local forge (the operator's own
  Markdown issues, `orch demo`) needs no opt-in.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Iterable, Mapping

from ..errors import UsageError
from .models import Comment, Host, Issue
from .report import MARKER

# GitHub's repository roles, weakest first (the fine-grained `role_name`s).
PERMISSIONS: tuple[str, ...] = ("none", "read", "triage", "write", "maintain", "admin")
COMMENT_MODES = ("trusted", "none")
# GitHub's authorAssociation of anyone who can hold a role of triage or above on the
# repository (through ownership, the organisation or an invitation). Anyone else (NONE,
# CONTRIBUTOR, FIRST_TIMER, ...) is dropped without asking GitHub: a stranger's 30
# comments cost no API calls.
MEMBER_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


def permission_at_least(have: str, need: str) -> bool:
    """True when role `have` is at least role `need` (see PERMISSIONS).

    An unknown `have` counts as "none" (a forge answering something new must not grant
    more than we understand); an unknown `need` is a configuration mistake.
    """
    if need not in PERMISSIONS:
        raise UsageError(f"unknown permission {need!r}",
                         hint="trigger.min_permission is one of " + ", ".join(PERMISSIONS))
    rank = PERMISSIONS.index(have) if have in PERMISSIONS else 0
    return rank >= PERMISSIONS.index(need)


def outsider(association: str, need: str) -> bool:
    """An author GitHub calls `association` cannot have `need`: no API call to ask."""
    return bool(association) and association not in MEMBER_ASSOCIATIONS \
        and PERMISSIONS.index(need) >= PERMISSIONS.index("triage")


def _outsider(c: Comment, need: str) -> bool:
    """The comment's author cannot have `need` (GitHub says so by their association)."""
    return outsider(c.association, need)


def logins_to_check(issue: Issue, label: str, comments: str = "trusted",
                    need: str = "write") -> list[str]:
    """Every login whose permission decides what of `issue` may reach the agent."""
    logins = [issue.author]
    labelled = [e for e in issue.events if e.kind == "labeled" and e.label == label]
    if labelled:
        logins.append(labelled[-1].actor)
    logins += [e.actor for e in issue.events if e.kind != "labeled"]
    if comments != "none":
        for c in issue.comments:
            if not _outsider(c, need):
                logins += [c.author, c.editor]
    return [x for x in dict.fromkeys(logins) if x]


def _by_orch(c: Comment, own_login: str) -> bool:
    return (bool(own_login) and c.author == own_login) or c.body.lstrip().startswith(MARKER)


class UntrustedText(UsageError):
    """The trigger label, the title or the body is by someone below trigger.min_permission
    (exit 2): the issue must not run as it stands."""


def vet_issue(issue: Issue, permissions: Mapping[str, str], *, need: str, label: str,
              comments: str = "trusted", own_login: str = "") -> Issue:
    """`issue` as the agent may see it: only comments by people with `need` (never orch's
    own; none at all for comments == "none"). Raises UntrustedText (exit 2) when the label
    was added, or the title or body changed after it, by someone below `need`.

    `permissions`: login -> role for every login of logins_to_check (a missing one is
    "none"). The author's own permission is intake's check_eligible.
    """
    def role(login: str) -> str:
        return permissions.get(login, "none") if login else "none"

    def allowed(login: str) -> bool:
        return permission_at_least(role(login), need)

    def who(login: str) -> str:
        return f"{login or 'an unknown account'} (permission {role(login)!r})"

    hint = (f"text from someone below trigger.min_permission ({need!r}) never reaches the "
            f"agent: a person with {need!r} can check the issue and add the label again")
    authorised_at = issue.created_at
    if label in issue.labels:
        labelled = [e for e in issue.events if e.kind == "labeled" and e.label == label]
        if not labelled:
            raise UntrustedText(f"{issue.ref} carries the `{label}` label but the forge does not "
                                f"say who added it", hint=hint)
        last = labelled[-1]
        if not allowed(last.actor):
            raise UntrustedText(f"{issue.ref}: the `{label}` label was added by {who(last.actor)}; "
                                f"orch needs at least {need!r}", hint=hint)
        authorised_at = max(authorised_at, last.at)
    for e in issue.events:
        # An unknown time counts as after: the edit may postdate the approval.
        if e.kind == "labeled" or (e.at and authorised_at and e.at < authorised_at):
            continue
        if not allowed(e.actor):
            what = "title" if e.kind == "renamed" else "body"
            since = "it was labelled" if label in issue.labels else "it was opened"
            raise UntrustedText(f"{issue.ref}: the {what} was edited after {since} by "
                                f"{who(e.actor)}; orch needs at least {need!r}", hint=hint)
    if comments not in COMMENT_MODES:
        raise UsageError(f"trigger.comments is {comments!r}",
                         hint="trigger.comments is one of " + ", ".join(COMMENT_MODES))
    kept = () if comments == "none" else tuple(
        c for c in issue.comments
        if not _by_orch(c, own_login) and not _outsider(c, need) and allowed(c.author)
        and (not c.editor or allowed(c.editor)))
    return dataclasses.replace(issue, comments=kept)

LOCAL_OPT_IN = "allow_local_github"


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "this user"


def local_meaning(state_dir: object = None) -> str:
    """What `connection: local` means, for `orch hosts` and `orch dispatch` to say."""
    where = f" (state in {state_dir})" if state_dir else ""
    return (f"jobs run on this machine as {_local_user()}, the user who holds orch's "
            f"state{where}, its environment and its SSH keys")


def local_refusals(here: Iterable[Host], strangers: bool, allowed: bool) -> dict[str, str]:
    """Host name -> why it may not take a task (schedule's `unhealthy`): the hosts `here`
    (whose jobs run on this machine) for an issue written by `strangers`, unless allowed."""
    if not strangers or allowed:
        return {}
    return {h.name: (f"local host: a GitHub issue runs here only with {LOCAL_OPT_IN}: true "
                     f"in orch.yml ({local_meaning()})")
            for h in here}


def check_local_github(hosts: Iterable[Host], here: Iterable[Host], strangers: bool,
                       allowed: bool) -> None:
    """Refuse (exit 2, nothing changed) an issue written by `strangers` when only hosts
    `here` (whose jobs run on this machine) could take it."""
    enabled = [h for h in hosts if h.enabled]
    local = {h.name for h in here}
    if not strangers or allowed or not enabled or not all(h.name in local for h in enabled):
        return
    raise UsageError(
        f"a GitHub issue would run on this machine ({', '.join(h.name for h in enabled)}: "
        f"connection: local), where {local_meaning()}",
        hint=f"run it on a host over SSH (an inventory: `orch inventory add`), or set "
             f"{LOCAL_OPT_IN}: true in orch.yml if you accept that")
