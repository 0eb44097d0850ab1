"""GitHub and GitHub Enterprise through PyGithub: the Forge protocol on the real API.

Why these choices (see docs/FIELD-NOTES.md facts on PyGithub 2.x):

- Retries are a `GithubRetry` (urllib3 Retry), not `retry=<int>`: an int does not retry
  502s. We retry 500/502/503/504, 429, 403 secondary rate limits, timeouts and dropped
  connections, for every method we use (GET, POST, PATCH, PUT, DELETE), with exponential
  backoff. A server's `Retry-After` is honoured but capped at `max_retry_wait` seconds (a
  secondary rate limit without one waits that cap, not PyGithub's fixed 60 s); a primary
  rate limit whose reset is further away than the cap fails at once with a WorkError.
- When retries run out the last answer is kept (`raise_on_status=False`), so the error
  says what GitHub said: "GitHub API at URL unavailable after 6 attempts: 502 Bad Gateway".
- PyGithub's 0.25 s / 1 s pauses between requests/writes are turned off (we make few calls,
  and retries already back off).
- The client is lazy: objects are fetched only when an attribute is read, so writes cost
  one request each.
- Retried POSTs and duplicates: a POST that reached GitHub but whose answer was lost is sent
  again. For pull requests the second one meets 422 "A pull request already exists", which
  we turn into "find it and return it"; labels are idempotent by nature. Creating a comment
  is the only non-idempotent call: we keep it retried (a lost status comment is worse than a
  rare duplicate), and upsert_comment first reuses the issue's last comment when it is ours
  and has the same body, so running finalize again never adds a second copy.
- The token is read from the environment variable named by `github.token_env`, handed to
  PyGithub's Auth (which masks it in its debug log) and never kept by us, logged, or put in
  a message.
- Who wrote what (core/trust.py decides what that means): the REST issue has no editor,
  so get_issue asks GitHub's GraphQL API once, through PyGithub's public
  `requester.graphql_query`, for the last comments with their author and editor, the
  body's edits (`userContentEdits`) and the `LabeledEvent`s and `RenamedTitleEvent`s of
  the timeline: one round trip instead of pages of REST comments and events.
  Permissions are asked once per login and repository for the forge object's life.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from github import Auth, Github, GithubException, GithubRetry
from github.GithubException import (
    BadCredentialsException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
)
from urllib3 import Retry

from ..config.settings import GithubSettings, PullRequestSettings
from ..core.models import Comment, Issue, IssueEvent, PullRequest, Remark
from ..errors import ForgeUnavailable, OrchError, UsageError, WorkError
from .base import COMMENTS_SCANNED, PERMISSIONS, IssueNotFound, head_branch

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)  # GithubRetry adds 403 (only rate limits are retried)
DEFAULT_MAX_RETRY_WAIT = 60.0   # seconds; GitHub asks for about a minute on secondary limits
DEFAULT_BACKOFF_FACTOR = 0.5    # sleeps 0, 1, 2, 4, 8 ... seconds between attempts
DEFAULT_BACKOFF_MAX = 30.0
LABEL_COLOR = "5319e7"          # colour of the labels orch creates
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
HISTORY_ITEMS = 100             # body edits and label/title events read per issue

_HISTORY_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $comments: Int!, $items: Int!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      comments(last: $comments) {
        nodes { databaseId body createdAt authorAssociation author { login } editor { login } }
      }
      userContentEdits(last: $items) {
        nodes { editedAt editor { login } }
      }
      timelineItems(last: $items, itemTypes: [LABELED_EVENT, RENAMED_TITLE_EVENT]) {
        nodes {
          __typename
          ... on LabeledEvent { createdAt actor { login } label { name } }
          ... on RenamedTitleEvent { createdAt actor { login } }
        }
      }
    }
  }
}
"""


class CappedRetry(GithubRetry):
    """GithubRetry whose Retry-After sleeps are capped at `max_retry_wait` seconds."""

    def __init__(self, max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT, **kwargs: Any) -> None:
        self.max_retry_wait = max_retry_wait
        super().__init__(**kwargs)

    def new(self, **kw: Any) -> CappedRetry:
        retry = super().new(**kw)
        retry.max_retry_wait = self.max_retry_wait
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds or an HTTP date as urllib3 reads them; also fractional seconds, and the
        cap for anything unreadable (a proxy's odd header must not end the retries)."""
        try:
            return super().parse_retry_after(retry_after)
        except Exception:  # noqa: BLE001 - urllib3's InvalidHeader
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return self.max_retry_wait

    def get_retry_after(self, response: Any) -> float | None:
        wait = super().get_retry_after(response)
        if wait is None:
            return None
        if wait > self.max_retry_wait:
            log.info("GitHub asked to wait %.0fs; waiting %.0fs (max_retry_wait)",
                     wait, self.max_retry_wait)
        return min(wait, self.max_retry_wait)


def make_retry(retries: int, *, backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
               backoff_max: float = DEFAULT_BACKOFF_MAX,
               max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT) -> CappedRetry:
    """The retry policy described in the module docstring; `retries` extra attempts."""
    return CappedRetry(
        max_retry_wait=max_retry_wait,
        total=retries,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=list(RETRY_STATUSES),
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"},
        raise_on_status=False,
        secondary_rate_wait=max_retry_wait,
        max_rate_limit_wait=max_retry_wait,
    )


def _display_url(url: str) -> str:
    """The API URL without any user:password@ part, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _raw(obj: Any) -> dict[str, Any]:
    """The JSON an object was built from, without PyGithub's lazy completion.

    Items of a list are "incomplete": reading an attribute the list did not include (an
    issue's absent `pull_request`) would cost one GET per item.
    """
    data = getattr(obj, "_rawData", None)
    return data if isinstance(data, dict) else obj.raw_data


def _iso(dt: Any) -> str:
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(value: Any) -> str:
    """A GitHub time ("2024-05-01T10:00:00Z", maybe with fractions) as orch writes times;
    "" when there is none or it cannot be read (trust then assumes the worst)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return _iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return ""


def _login(actor: Any) -> str:
    """An actor's login; a deleted account (null) is ""."""
    return str(_dig(actor, "login") or "")


def _dig(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]...; None as soon as a level is missing or not an object."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _nodes(page: Any) -> list[dict[str, Any]]:
    """The `nodes` of a GraphQL connection (a page of comments, edits, events)."""
    nodes = _dig(page, "nodes")
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _history(data: Any) -> tuple[tuple[Comment, ...], tuple[IssueEvent, ...]]:
    """The GraphQL answer -> (comments, events), each oldest first."""
    issue = _dig(data, "data", "repository", "issue")
    comments = tuple(Comment(body=str(n.get("body") or ""), author=_login(n.get("author")),
                             created_at=_stamp(n.get("createdAt")), editor=_login(n.get("editor")),
                             association=str(n.get("authorAssociation") or ""))
                     for n in _nodes(_dig(issue, "comments")))
    events = [IssueEvent("edited", _login(n.get("editor")), _stamp(n.get("editedAt")))
              for n in _nodes(_dig(issue, "userContentEdits"))]
    for n in _nodes(_dig(issue, "timelineItems")):
        kind = n.get("__typename")
        if kind == "LabeledEvent":
            label = str(_dig(n, "label", "name") or "")
            events.append(IssueEvent("labeled", _login(n.get("actor")), _stamp(n.get("createdAt")),
                                     label))
        elif kind == "RenamedTitleEvent":
            events.append(IssueEvent("renamed", _login(n.get("actor")), _stamp(n.get("createdAt"))))
    # Sorted by time, an unknown time last (the worst case: after everything).
    events.sort(key=lambda e: (e.at == "", e.at))
    return comments, tuple(events)


def _label_names(data: Any) -> set[str] | None:
    """The names in a list of label objects as GitHub answers one; None if the answer is
    not such a list (then nothing is assumed about which labels an issue has)."""
    if not isinstance(data, list):
        return None
    names = {lb.get("name") for lb in data if isinstance(lb, dict)}
    return {n for n in names if isinstance(n, str)}


def _last_comment(data: Any) -> dict[str, Any] | None:
    """The GraphQL answer's last comment as upsert_comment compares it (REST's shape: id,
    body, user.login); None when the issue has none, or its id is unreadable (then the
    comparison finds nothing, and a comment is created: never a wrong id)."""
    nodes = _nodes(_dig(data, "data", "repository", "issue", "comments"))
    if not nodes:
        return None
    n = nodes[-1]
    cid = n.get("databaseId")
    if not isinstance(cid, int) or isinstance(cid, bool):
        return None
    return {"id": cid, "body": n.get("body"), "user": {"login": _login(n.get("author"))}}


def _gh_message(exc: GithubException) -> str:
    """GitHub's own explanation: the message and any per-field errors, on one line."""
    data = exc.data if isinstance(exc.data, dict) else {}
    parts = [str(data.get("message") or exc.message or "").strip()]
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            parts.append(str(err.get("message") or " ".join(
                str(err[k]) for k in ("field", "code") if err.get(k))))
        else:
            parts.append(str(err))
    return "; ".join(p for p in parts if p)


def _already_exists(exc: GithubException) -> bool:
    """A 422 saying the thing we tried to create is already there."""
    if exc.status != 422:
        return False
    errors = exc.data.get("errors") if isinstance(exc.data, dict) else None
    coded = any(isinstance(e, dict) and e.get("code") == "already_exists" for e in errors or [])
    return coded or "already exist" in _gh_message(exc).lower()


class GithubForge:
    """The Forge protocol on GitHub or GitHub Enterprise (`settings.url`)."""

    kind = "github"

    def __init__(self, settings: GithubSettings, *, repo_urls: dict[str, str] | None = None,
                 max_retry_wait: float | None = None, backoff_factor: float | None = None,
                 backoff_max: float = DEFAULT_BACKOFF_MAX, per_page: int = 100,
                 pr: PullRequestSettings | None = None) -> None:
        """`repo_urls` overrides clone URLs (config `repo_urls:`); `max_retry_wait` caps
        every wait GitHub asks for (default: settings.max_retry_wait if present, else 60 s);
        `backoff_factor` scales the exponential backoff between attempts."""
        token = os.environ.get(settings.token_env or "")
        if not token:
            raise UsageError(f"no GitHub token: ${settings.token_env} is not set",
                             hint=f"export {settings.token_env}=<a token with repo scope>, "
                                  "or name another variable in orch.yml github.token_env")
        self.url = settings.url.rstrip("/")
        self.token_env = settings.token_env
        # PyGithub insists on an int: round up, so a 0.5 s setting still waits (1 s).
        self.timeout = float(max(1, math.ceil(float(settings.timeout))))
        self.retries = max(0, int(settings.retries))
        self.max_retry_wait = float(max_retry_wait if max_retry_wait is not None
                                    else getattr(settings, "max_retry_wait", DEFAULT_MAX_RETRY_WAIT))
        factor = backoff_factor if backoff_factor is not None else getattr(
            settings, "backoff_factor", DEFAULT_BACKOFF_FACTOR)
        self.repo_urls = dict(repo_urls or {})
        self.pr = pr or PullRequestSettings()   # pr.*: how the PRs it opens look
        self._gh = Github(
            auth=Auth.Token(token),
            base_url=self.url,
            timeout=int(self.timeout),
            retry=make_retry(self.retries, backoff_factor=float(factor), backoff_max=backoff_max,
                             max_retry_wait=self.max_retry_wait),
            per_page=per_page,
            seconds_between_requests=0,
            seconds_between_writes=0,
            lazy=True,
            user_agent="orch",
        )
        del token
        self._repo_info: dict[str, dict[str, Any]] = {}
        self._repo_labels: dict[str, set[str]] = {}
        self._login: str | None = None
        self._permissions: dict[tuple[str, str], str] = {}
        # The last comment of each issue this command read (get_issue's GraphQL answer):
        # upsert_comment's "is the last comment already ours?" without listing them all.
        self._last_comment: dict[tuple[str, int], dict[str, Any] | None] = {}

    def __repr__(self) -> str:
        return f"GithubForge({_display_url(self.url)!r})"

    def close(self) -> None:
        self._gh.close()

    # -- errors ------------------------------------------------------------------------

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def _unavailable(self, reason: str) -> WorkError:
        return ForgeUnavailable(f"GitHub API at {_display_url(self.url)} unavailable after "
                         f"{self.attempts} attempts: {reason}",
                         hint="GitHub may be down or rate limiting; try again later")

    def _translate(self, exc: Exception, what: str, missing: str | None) -> OrchError:
        """One place that turns PyGithub/requests failures into orch errors."""
        import requests

        url = _display_url(self.url)
        if isinstance(exc, RateLimitExceededExceedsMaxWait):
            return ForgeUnavailable(f"GitHub API at {url} is rate limiting {what}: it asks to wait "
                             f"{exc.wait or 0:.0f}s, more than max_retry_wait "
                             f"({self.max_retry_wait:.0f}s)", hint="try again later")
        if isinstance(exc, BadCredentialsException):
            return UsageError(f"GitHub at {url} rejected the token in ${self.token_env} "
                              "(401 Bad credentials)",
                              hint=f"check ${self.token_env}, or github.url / github.token_env")
        if isinstance(exc, GithubException):
            status = exc.status
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            said = _gh_message(exc) or phrase
            if status in (404, 410) and missing:
                return IssueNotFound(missing, hint="check the name, and that the token in "
                                                f"${self.token_env} can see the repository")
            if isinstance(exc, RateLimitExceededException) or status in RETRY_STATUSES:
                return self._unavailable(f"{status} {said}")
            if status in (401, 403):
                return UsageError(f"{what}: GitHub refused ({status} {said})",
                                  hint=f"the token in ${self.token_env} may lack the needed scope")
            return WorkError(f"{what}: GitHub answered {status} {said}")
        if isinstance(exc, requests.exceptions.RequestException):
            return self._unavailable(self._transport_reason(exc))
        return WorkError(f"{what}: {type(exc).__name__}: {exc}")

    def _transport_reason(self, exc: Exception) -> str:
        import requests
        from urllib3.exceptions import (
            ConnectTimeoutError,
            NewConnectionError,
            ProtocolError,
            ReadTimeoutError,
        )

        inner: Any = exc.args[0] if exc.args else exc
        reason = getattr(inner, "reason", inner)
        # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first.
        if isinstance(reason, NewConnectionError):
            return "connection refused" if "refused" in str(reason).lower() else "cannot connect"
        if isinstance(reason, (ReadTimeoutError, ConnectTimeoutError)) or isinstance(
                exc, requests.exceptions.Timeout):
            return f"timed out (no answer within {self.timeout:g}s)"
        if isinstance(reason, ProtocolError) or "RemoteDisconnected" in str(reason):
            return "connection closed without an answer"
        return type(reason).__name__

    @contextmanager
    def _api(self, what: str, missing: str | None = None) -> Iterator[None]:
        """Run PyGithub calls; failures leave as UsageError/WorkError with one-line messages."""
        try:
            yield
        except OrchError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated, chained for debugging
            import requests
            if isinstance(exc, (GithubException, requests.exceptions.RequestException)):
                raise self._translate(exc, what, missing) from exc
            raise

    # -- reading -----------------------------------------------------------------------

    def _check_repo(self, repo: str) -> str:
        if not _REPO_NAME.fullmatch(repo or ""):
            raise UsageError(f"{repo!r} is not a GitHub repository name",
                             hint="write it as OWNER/NAME, e.g. octo/app")
        return repo

    def _repo(self, repo: str) -> Any:
        """A lazy Repository: no request until an attribute is read."""
        return self._gh.get_repo(self._check_repo(repo))

    def _info(self, repo: str) -> dict[str, Any]:
        """The repository's JSON (one GET per repo per forge instance)."""
        if repo not in self._repo_info:
            r = self._repo(repo)
            with self._api(f"reading repository {repo}",
                           missing=f"repository {repo} not found at {_display_url(self.url)}"):
                r.complete()
            self._repo_info[repo] = dict(_raw(r))
        return self._repo_info[repo]

    def default_branch(self, repo: str) -> str:
        return str(self._info(repo).get("default_branch") or "main")

    def clone_url(self, repo: str) -> str:
        if repo in self.repo_urls:
            return self.repo_urls[self._check_repo(repo)]
        return str(self._info(repo).get("clone_url") or "")

    def _to_issue(self, repo: str, data: dict[str, Any], comments: tuple[Comment, ...] = (),
                  events: tuple[IssueEvent, ...] = ()) -> Issue:
        return Issue(
            repo=repo,
            number=int(data["number"]),
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            labels=tuple(str(lb.get("name")) for lb in data.get("labels") or [] if isinstance(lb, dict)),
            author=str((data.get("user") or {}).get("login") or ""),
            state=str(data.get("state") or "open"),
            is_pull_request=data.get("pull_request") is not None,
            clone_url=self.clone_url(repo),
            comments=comments,
            created_at=_stamp(data.get("created_at")) or str(data.get("created_at") or ""),
            url=str(data.get("html_url") or ""),
            events=events,
        )

    def get_issue(self, repo: str, number: int) -> Issue:
        self._info(repo)                         # a missing repo says so, not "issue not found"
        issue = self._repo(repo).get_issue(int(number))
        missing = f"issue {repo}#{number} not found at {_display_url(self.url)}"
        with self._api(f"reading issue {repo}#{number}", missing=missing):
            issue.complete()
            data = dict(_raw(issue))
        comments: tuple[Comment, ...] = ()
        events: tuple[IssueEvent, ...] = ()
        if data.get("pull_request") is None and data.get("state") == "open":
            owner, name = repo.split("/", 1)
            with self._api(f"reading who wrote what on issue {repo}#{number}", missing=missing):
                _, answer = self._gh.requester.graphql_query(_HISTORY_QUERY, {
                    "owner": owner, "name": name, "number": int(number),
                    "comments": COMMENTS_SCANNED, "items": HISTORY_ITEMS})
            comments, events = _history(answer)
            self._last_comment[(repo, int(number))] = _last_comment(answer)
        return self._to_issue(repo, data, comments, events)

    def author_permission(self, repo: str, login: str) -> str:
        """The fine-grained `role_name` when GitHub gives one we know, else the legacy
        `permission` (GitHub folds maintain into write and triage into read there).
        A login GitHub does not know is "none". Asked once per login and repository."""
        self._check_repo(repo)
        key = (repo, login)
        if key not in self._permissions:
            self._permissions[key] = self._permission(repo, login)
        return self._permissions[key]

    def _permission(self, repo: str, login: str) -> str:
        if not login:
            return "none"
        with self._api(f"reading {login}'s permission on {repo}"):
            try:
                _, data = self._gh.requester.requestJsonAndCheck(
                    "GET", f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission")
            except GithubException as exc:
                if exc.status == 404:
                    return "none"
                raise
        role = str(data.get("role_name") or "")
        if role in PERMISSIONS:
            return role
        legacy = str(data.get("permission") or "none")
        return legacy if legacy in PERMISSIONS else "none"

    def list_open_issues(self, repo: str, label: str) -> list[Issue]:
        self._info(repo)
        found: list[Issue] = []
        with self._api(f"listing issues of {repo}"):
            for item in self._repo(repo).get_issues(state="open", labels=[label],
                                                    sort="created", direction="asc"):
                data = _raw(item)
                if data.get("pull_request") is not None:
                    continue                     # the issue list includes pull requests
                found.append(self._to_issue(repo, data))
        found.sort(key=lambda i: (i.created_at, i.number))
        return found

    # -- pull requests -----------------------------------------------------------------

    def find_pull_request(self, repo: str, head: str) -> str | None:
        owner = self._check_repo(repo).split("/")[0]
        branch = head_branch(head)
        with self._api(f"looking for a pull request from {branch} in {repo}"):
            # head must be "owner:branch": GitHub ignores a bare branch name.
            for pr in self._repo(repo).get_pulls(state="open", head=f"{owner}:{branch}"):
                data = _raw(pr)
                if (data.get("head") or {}).get("ref") == branch:   # in case the filter was ignored
                    return str(data.get("html_url"))
        return None

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        branch = head_branch(head)
        # No lookup first: GitHub refuses a second open pull request from the same head
        # (422 "already exists"), and that answer leads to the lookup below. One request
        # in the usual case, where a lookup first always cost two.
        what = f"opening a pull request {branch} -> {base} in {repo}"
        with self._api(what, missing=f"repository {repo} not found at {_display_url(self.url)}"):
            try:
                pr = self._repo(repo).create_pull(base=base, head=branch, title=title, body=body,
                                                  draft=self.pr.draft)
                data = _raw(pr)
            except GithubException as exc:
                if not _already_exists(exc):
                    raise
            else:
                self._pr_options(repo, int(data["number"]), tuple(self.pr.reviewers),
                                 tuple(self.pr.labels))
                return str(data.get("html_url"))
        # A retried POST (or a concurrent orch) got there first.
        found = self.find_pull_request(repo, branch)
        if found is None:
            raise WorkError(f"{what}: GitHub says a pull request already exists, "
                            "but none is open for that branch")
        return found

    def _pr_options(self, repo: str, number: int, reviewers: tuple[str, ...],
                    labels: tuple[str, ...]) -> None:
        """pr.reviewers and pr.labels on a pull request just opened."""
        if reviewers:
            with self._api(f"requesting reviews on {repo}#{number}"):
                self._gh.requester.requestJsonAndCheck(
                    "POST", f"/repos/{repo}/pulls/{number}/requested_reviewers",
                    input={"reviewers": list(reviewers)})
        if labels:
            self.set_labels(repo, number, list(labels), [])

    # -- the conversation ----------------------------------------------------------------

    def _list(self, what: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paginated REST list (Link: rel="next" followed), as JSON."""
        out: list[dict[str, Any]] = []
        with self._api(what):
            url: str | None = path
            query: dict[str, Any] | None = {"per_page": 100, **params}
            while url:
                headers, data = self._gh.requester.requestJsonAndCheck("GET", url, parameters=query)
                out += [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
                url, query = _next_link(headers), None
        return out

    def remarks_since(self, repo: str, since: str) -> list[Remark]:
        self._check_repo(repo)
        params = {"since": since, "sort": "updated", "direction": "asc"}
        found = [_remark("issue_comment", d) for d in self._list(
            f"listing comments of {repo}", f"/repos/{repo}/issues/comments", params)]
        found += [_remark("review_comment", d) for d in self._list(
            f"listing review comments of {repo}", f"/repos/{repo}/pulls/comments", params)]
        return sorted((r for r in found if r is not None), key=lambda r: (r.updated_at, r.id))

    def open_pulls(self, repo: str) -> list[PullRequest]:
        self._check_repo(repo)
        return [_pull(d) for d in self._list(f"listing pull requests of {repo}",
                                             f"/repos/{repo}/pulls", {"state": "open"})]

    def get_pull(self, repo: str, number: int) -> PullRequest:
        self._check_repo(repo)
        missing = f"pull request {repo}#{number} not found at {_display_url(self.url)}"
        with self._api(f"reading pull request {repo}#{number}", missing=missing):
            _, data = self._gh.requester.requestJsonAndCheck("GET", f"/repos/{repo}/pulls/{int(number)}")
        return _pull(data)

    def reviews(self, repo: str, number: int) -> list[Remark]:
        self._check_repo(repo)
        data = self._list(f"listing reviews of {repo}#{number}",
                          f"/repos/{repo}/pulls/{int(number)}/reviews", {})
        found = [_remark("review", {**d, "pull_request_number": int(number)}) for d in data]
        return [r for r in found if r is not None]

    def review_comments(self, repo: str, number: int, review_id: int | None = None) -> list[Remark]:
        self._check_repo(repo)
        path = (f"/repos/{repo}/pulls/{int(number)}/reviews/{int(review_id)}/comments"
                if review_id is not None else f"/repos/{repo}/pulls/{int(number)}/comments")
        found = [_remark("review_comment", d) for d in self._list(
            f"listing line comments of {repo}#{number}", path, {})]
        return [r for r in found if r is not None]

    def react(self, repo: str, remark: Remark, content: str) -> None:
        self._check_repo(repo)
        if remark.source == "review":
            return            # GitHub has no reactions on a review itself
        kind = "pulls" if remark.source == "review_comment" else "issues"
        with self._api(f"reacting to comment {remark.id} in {repo}"):
            self._gh.requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/{kind}/comments/{int(remark.id)}/reactions",
                input={"content": content})

    def reply(self, repo: str, remark: Remark, body: str) -> int:
        self._check_repo(repo)
        if remark.source == "review_comment":
            top = remark.in_reply_to or remark.id   # replies attach to the thread's first comment
            with self._api(f"replying in a review thread of {repo}#{remark.number}"):
                _, data = self._gh.requester.requestJsonAndCheck(
                    "POST", f"/repos/{repo}/pulls/{int(remark.number)}/comments/{int(top)}/replies",
                    input={"body": body})
            return int(data["id"])
        with self._api(f"commenting on {repo}#{remark.number}"):
            _, data = self._gh.requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/issues/{int(remark.number)}/comments", input={"body": body})
        return int(data["id"])

    def edit_pull_body(self, repo: str, number: int, body: str) -> None:
        self._check_repo(repo)
        with self._api(f"editing pull request {repo}#{number}"):
            self._gh.requester.requestJsonAndCheck("PATCH", f"/repos/{repo}/pulls/{int(number)}",
                                                   input={"body": body})

    # -- comments and labels -----------------------------------------------------------

    def _me(self) -> str:
        if self._login is None:
            with self._api("reading the token's user"):
                self._login = str(self._gh.get_user().login)
        return self._login

    def login(self) -> str:
        """The token's user; "" for a token without one (a GitHub App installation:
        its comments are still told apart by orch's marker line)."""
        try:
            return self._me()
        except ForgeUnavailable:
            raise
        except OrchError:
            return ""

    def upsert_comment(self, repo: str, number: int, body: str, comment_id: int | None) -> int:
        issue = self._repo(repo).get_issue(int(number))
        where = f"issue {repo}#{number}"
        missing = f"{where} not found at {_display_url(self.url)}"
        if comment_id is not None:
            with self._api(f"editing comment {comment_id} on {where}"):
                try:
                    comment = issue.get_comment(int(comment_id))
                    comment.edit(body)
                    known = self._last_comment.get((repo, int(number)))
                    if known is not None and known.get("id") == int(comment_id):
                        known["body"] = body          # still the last one, now with this text
                    return int(comment_id)
                except GithubException as exc:
                    if exc.status not in (404, 410):
                        raise
                    log.info("comment %s on %s is gone; creating a new one", comment_id, where)
        key = (repo, int(number))
        with self._api(f"commenting on {where}", missing=missing):
            if key in self._last_comment:
                last = self._last_comment[key]       # read by this command: no listing
            else:
                last = None
                for c in issue.get_comments():
                    last = _raw(c)
            if (last is not None and last.get("body") == body
                    and (last.get("user") or {}).get("login") == self._me()):
                return int(last["id"])
            made = issue.create_comment(body)
            # Its author as GitHub answered (no GET /user for who orch is).
            self._last_comment[key] = {"id": made.id, "body": body,
                                       "user": _raw(made).get("user") or {}}
            return int(made.id)

    def _ensure_labels(self, repo: str, names: list[str]) -> None:
        known = self._repo_labels.get(repo)
        r = self._repo(repo)
        if known is None:
            with self._api(f"listing labels of {repo}",
                           missing=f"repository {repo} not found at {_display_url(self.url)}"):
                known = {str(_raw(lb).get("name")) for lb in r.get_labels()}
            self._repo_labels[repo] = known
        for name in names:
            if name in known:
                continue
            with self._api(f"creating label {name!r} in {repo}"):
                try:
                    r.create_label(name, LABEL_COLOR, "set by orch")
                except GithubException as exc:
                    if not _already_exists(exc):
                        raise
            known.add(name)

    def set_labels(self, repo: str, number: int, add: list[str], remove: list[str]) -> None:
        add = list(dict.fromkeys(add))
        remove = [x for x in dict.fromkeys(remove) if x not in add]
        where = f"issue {repo}#{number}"
        issue = self._repo(repo).get_issue(int(number))
        missing = f"{where} not found at {_display_url(self.url)}"
        on_issue: set[str] | None = None      # unknown: every label in `remove` is tried
        if add:
            self._ensure_labels(repo, add)
            with self._api(f"labelling {where}", missing=missing):
                # The answer is every label now on the issue (GitHub's REST docs): only
                # those are worth a DELETE, one request each. (PyGithub's add_to_labels
                # drops the answer, hence the requester.)
                _, data = self._gh.requester.requestJsonAndCheck(
                    "POST", f"/repos/{repo}/issues/{int(number)}/labels", input={"labels": add})
            on_issue = _label_names(data)
        for name in remove:
            if on_issue is not None and name not in on_issue:
                continue                              # not on the issue: nothing to do
            with self._api(f"removing label {name!r} from {where}"):
                try:
                    issue.remove_from_labels(name)
                except GithubException as exc:
                    if exc.status != 404:            # not on the issue: nothing to do
                        raise


_NUMBER_AT_END = re.compile(r"/(?:issues|pulls)/(\d+)$")
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def _next_link(headers: dict[str, Any]) -> str | None:
    """The rel="next" URL of a Link header (GitHub's pagination), or None on the last page."""
    link = next((v for k, v in (headers or {}).items() if k.lower() == "link"), "")
    m = _NEXT.search(str(link or ""))
    return m.group(1) if m else None


def _number_of(data: dict[str, Any]) -> int | None:
    if isinstance(data.get("pull_request_number"), int):
        return int(data["pull_request_number"])
    for key in ("issue_url", "pull_request_url"):
        m = _NUMBER_AT_END.search(str(data.get(key) or ""))
        if m:
            return int(m.group(1))
    return None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _remark(source: str, data: dict[str, Any]) -> Remark | None:
    """An item of GitHub's comment, review-comment or review lists; None without a number."""
    number, ident = _number_of(data), _opt_int(data.get("id"))
    if number is None or ident is None:
        return None
    created = _stamp(data.get("submitted_at") if source == "review" else data.get("created_at"))
    return Remark(source=source, id=ident, number=number, body=str(data.get("body") or ""),
                  author=_login(data.get("user")),
                  association=str(data.get("author_association") or ""),
                  created_at=created, updated_at=_stamp(data.get("updated_at")) or created,
                  path=str(data.get("path") or ""), line=_opt_int(data.get("line")),
                  diff_hunk=str(data.get("diff_hunk") or ""),
                  in_reply_to=_opt_int(data.get("in_reply_to_id")),
                  review_id=_opt_int(data.get("pull_request_review_id")),
                  state=str(data.get("state") or ""))


def _pull(data: dict[str, Any]) -> PullRequest:
    raw_head, raw_base = data.get("head"), data.get("base")
    head: dict[str, Any] = raw_head if isinstance(raw_head, dict) else {}
    base: dict[str, Any] = raw_base if isinstance(raw_base, dict) else {}
    return PullRequest(number=int(data["number"]), head=str(head.get("ref") or ""),
                       head_sha=str(head.get("sha") or ""), base=str(base.get("ref") or ""),
                       state=str(data.get("state") or ""), author=_login(data.get("user")),
                       url=str(data.get("html_url") or ""), body=str(data.get("body") or ""),
                       updated_at=_stamp(data.get("updated_at")))
