"""The Forge protocol: where issues come from and where pull requests, comments and labels go.

Two implementations share it: forge.github (GitHub / GitHub Enterprise through PyGithub)
and forge.local (Markdown issues and JSON "pull requests" on this machine, for the embedded
default). The pipeline and `orch poll` only see this protocol, so they are tested the same
way against both.

Every method may raise errors.UsageError (bad reference, bad token: the user must fix
something; IssueNotFound for a repository or issue that does not exist) or errors.WorkError
(the forge is unavailable: try again later).
Write methods are idempotent where the forge allows it, because a finalize step may run
again after a crash: open_pull_request returns the existing PR for a head, set_labels
tolerates labels already present or absent, upsert_comment edits in place when given an id.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from ..core.models import Issue, PullRequest, Remark
from ..core.prompts import MAX_COMMENTS
from ..core.trust import PERMISSIONS, permission_at_least
from ..errors import UsageError

__all__ = ["COMMENTS_SCANNED", "PERMISSIONS", "RECENT_COMMENTS", "Forge", "head_branch",
           "parse_issue_ref", "permission_at_least"]

# How many of an issue's most recent comments reach the prompt (those by trusted people),
# and how many get_issue loads to find them among strangers' comments.
RECENT_COMMENTS = MAX_COMMENTS
COMMENTS_SCANNED = 30

_NAME = r"[A-Za-z0-9_.-]+"
_REF = re.compile(rf"(?P<repo>{_NAME}/{_NAME})#(?P<number>\d+)")
_URL = re.compile(rf"https?://[^/\s]+(?:/api/v3)?(?:/repos)?/(?P<repo>{_NAME}/{_NAME})"
                  rf"/(?:issues|pull)/(?P<number>\d+)(?:[/?#].*)?")


@runtime_checkable
class Forge(Protocol):
    """Issues in; pull requests, comments and labels out."""

    kind: str  # its row in forge/__init__.py FORGES: stored in Task.forge, so finalize picks the same forge

    def get_issue(self, repo: str, number: int) -> Issue:
        """The issue with labels, author, state, PR flag, the repo's clone URL, its last
        COMMENTS_SCANNED comments (each with its author and last editor) and, for an open
        issue, its events (who added which label, who edited the title or body, when),
        oldest first. A missing repo or issue is a UsageError. Nothing here is vetted:
        core/trust.py decides what of it may reach the agent."""
        ...

    def author_permission(self, repo: str, login: str) -> str:
        """`login`'s role on `repo`, one of PERMISSIONS ("none" for a stranger); asked once
        per login and repo for the forge object's life (one `orch poll` pass)."""
        ...

    def login(self) -> str:
        """The account orch acts as (its comments are its own), "" when unknown."""
        ...

    def list_open_issues(self, repo: str, label: str) -> list[Issue]:
        """Open issues carrying `label`, oldest first, pull requests excluded.
        Comments are not loaded (empty): call get_issue for the one you take."""
        ...

    def default_branch(self, repo: str) -> str:
        ...

    def clone_url(self, repo: str) -> str:
        ...

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        """Open a PR from branch `head` into `base` and return its URL; if an open PR for
        `head` already exists, return that one instead (never two PRs for one branch).
        A PR it opens follows config `pr.*` (draft, reviewers asked, labels), which the
        forge was built with (forge/__init__.py)."""
        ...

    def find_pull_request(self, repo: str, head: str) -> str | None:
        """The URL of the open PR whose head is branch `head`, or None."""
        ...

    def upsert_comment(self, repo: str, number: int, body: str, comment_id: int | None) -> int:
        """Edit comment `comment_id` in place (or create one when None or gone); its id."""
        ...

    def set_labels(self, repo: str, number: int, add: list[str], remove: list[str]) -> None:
        """Add and remove labels on an issue; missing repo labels are created, removing an
        absent label is fine. A label in both lists is added."""
        ...

    # -- the conversation on issues and pull requests (lifecycle/conversation.py) ----------

    def remarks_since(self, repo: str, since: str) -> list[Remark]:
        """Every issue and pull request comment, and every line comment of a review,
        created or edited at or after `since` (ISO time), oldest first: the repository-wide
        lists, so the cost does not grow with the number of open issues."""
        ...

    def open_pulls(self, repo: str) -> list[PullRequest]:
        """The repository's open pull requests (one paginated list)."""
        ...

    def get_pull(self, repo: str, number: int) -> PullRequest:
        """One pull request; a missing one is IssueNotFound."""
        ...

    def reviews(self, repo: str, number: int) -> list[Remark]:
        """The submitted reviews of a pull request (source "review"), oldest first."""
        ...

    def review_comments(self, repo: str, number: int, review_id: int | None = None) -> list[Remark]:
        """A pull request's line comments (only those of review `review_id` when given)."""
        ...

    def react(self, repo: str, remark: Remark, content: str) -> None:
        """Put reaction `content` (eyes, rocket, confused, ...) on a comment; idempotent."""
        ...

    def reply(self, repo: str, remark: Remark, body: str) -> int:
        """Answer `remark`: in its review thread for a line comment, else a comment on its
        issue or pull request. The new comment's id."""
        ...

    def edit_pull_body(self, repo: str, number: int, body: str) -> None:
        ...


class IssueNotFound(UsageError):
    """The repository or the issue does not exist (or the forge will not show it): a
    queued task for it can never run, unlike a task stopped by a bad token."""


def parse_issue_ref(text: str) -> tuple[str, int]:
    """A GitHub reference: "owner/name#12" or an issue URL (https://HOST/owner/name/issues/12)
    -> ("owner/name", 12)."""
    raw = (text or "").strip()
    m = _REF.fullmatch(raw) or _URL.fullmatch(raw)
    if m is None or int(m.group("number")) < 1:
        raise UsageError(f"{text!r} is not an issue reference",
                         hint="write OWNER/NAME#NUMBER (e.g. octo/app#12) or the issue's URL "
                              "(e.g. https://github.com/octo/app/issues/12)")
    repo = m.group("repo")
    if repo.endswith(".git"):
        repo = repo[:-4]
    return repo, int(m.group("number"))


def head_branch(head: str) -> str:
    """The branch part of a head that may be written "owner:branch"."""
    return head.split(":", 1)[1] if ":" in head else head
