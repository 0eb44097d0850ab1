"""A small GitHub-Enterprise-style REST server for tests: the real PyGithub talks to it.

Why: orch's GitHub edge is tested against the real client library (PyGithub, requests,
urllib3 retries) rather than mocks, so that URL shapes, pagination, retries, timeouts and
"already exists" races behave as they do against github.com. Stdlib only, 127.0.0.1 only,
in-memory and thread-safe.

Every URL in a response points back at this server (PyGithub fetches missing fields from
them). The API lives under ``/api/v3`` like GitHub Enterprise, so a client uses
``base_url=server.url``. Requests need ``Authorization: token <T>`` (or ``Bearer <T>``) with
``T == server.token``; anything else gets 401 "Bad credentials".

Typical use in a test (the fixtures live in tests/fixtures_github.py)::

    def test_something(github_server, github_token):      # github_token sets $GITHUB_TOKEN
        gh = github_server
        gh.add_repo("octo/app", clone_url=str(bare_repo_path))
        n = gh.add_issue("octo/app", "Add /health endpoint", body="...", labels=["orch"],
                         user="alice")
        gh.set_permission("octo/app", "alice", "write")
        settings = Settings(github=GithubSettings(url=gh.url, timeout=2, retries=3))
        ... run orch (in-process or as a subprocess: the server is plain TCP) ...
        assert [p["head"] for p in gh.pulls("octo/app")] == ["orch/1-add-health-endpoint"]
        assert "Closes #1" in gh.pulls("octo/app")[0]["body"]
        assert gh.comments("octo/app", n)[-1]["body"].startswith("...")
        assert "orch:done" in gh.labels("octo/app", n)
        assert gh.count("POST", "/repos/octo/app/pulls") == 1

Fault injection (consumed by the next matching requests, in order)::

    gh.inject(Fault(status=502), times=2)                       # two 502 Bad Gateway
    gh.inject(Fault.secondary_rate_limit(retry_after=1))         # 403 + Retry-After: 1
    gh.inject(Fault(delay=3.0))                                  # slower than the client timeout
    gh.inject(Fault(status=502, after=True, method="POST", path="/pulls"))
                                                                 # do the work, then answer 502
    gh.inject(Fault(drop=True))                                  # close without an answer
    gh.set_outage(503)  ...  gh.set_outage(None)                 # every request fails until lifted

``method``/``path`` restrict a fault to matching requests (``path`` is a substring of the
path below /api/v3). A delayed request is still carried out after its delay, like a slow real
server whose client gave up.

Who did what (orch's trust checks read it): ``add_issue`` records a ``labeled`` event per
label (by ``labeled_by``, default the author); ``label_issue``, ``edit_issue`` (body edits
and title renames) and ``edit_comment`` record what a given user did, when; the REST calls
orch makes record events by the token's user (``server.user``, who has ``write`` on every
repository, like orch's bot account). GitHub's GraphQL API answers at ``/api/graphql``
(tests/ghgraphql.py: the fields orch asks, parsed and validated as GitHub does).

Pull requests share the issue number sequence and appear in the issue list with a
``pull_request`` key, as on GitHub. ``GET /pulls?head=branch`` without ``owner:`` ignores the
filter, as GitHub does. When a repository's clone_url is a local git repository, creating a
pull request checks that the head branch exists there (422 "head invalid" otherwise) and
records its commit, so a test notices a PR opened before the push.

Conversations on pull requests (lifecycle/conversation.py reads them), shaped as GitHub
shapes them (docs/FIELD-NOTES.md): ``add_review`` (a submitted review, with line comments;
its author may not approve or request changes on their own PR: 422) and
``add_review_comment`` (a line comment alone gets a COMMENTED review of its own; a reply
attaches to the thread's first comment); the repository-wide ``/issues/comments`` and
``/pulls/comments`` lists with ``since``/``sort``/``direction``/``per_page`` and Link
pagination; reviews answered 200 on create; reactions 201 when new, 200 when the same
user already reacted so; ``author_association`` OWNER / COLLABORATOR / NONE from the
repository's people; a PR's issue timeline (``/issues/N/timeline``: commented, reviewed,
committed events). A PR's head sha is read from the repository each time (people push).

Run standalone for manual poking: ``python -m tests.ghserver`` prints the URL and token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.ghgraphql import GraphQLError, execute

API_PREFIX = "/api/v3"
GRAPHQL_PATH = "/api/graphql"        # GitHub Enterprise's; github.com's is /graphql
DEFAULT_TOKEN = "ghs_testtoken_0123456789abcdef"
SECONDARY_RATE_LIMIT_MESSAGE = ("You have exceeded a secondary rate limit. "
                                "Please wait a few minutes before you try again.")
ROLES = ("none", "read", "triage", "write", "maintain", "admin")
# GitHub's legacy `permission` field folds the fine-grained roles.
LEGACY_PERMISSION = {"none": "none", "read": "read", "triage": "read", "write": "write",
                     "maintain": "write", "admin": "admin"}
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """One injected misbehaviour; see the module docstring."""

    status: int | None = None          # answer with this status instead of the real one
    retry_after: float | None = None   # add a Retry-After header
    message: str | None = None         # JSON body message (default: the status phrase)
    delay: float = 0.0                 # sleep this long before answering (then do the work)
    after: bool = False                # do the work first, then answer with `status`
    drop: bool = False                 # close the connection without any answer
    method: str | None = None          # only requests with this method
    path: str | None = None            # only requests whose path contains this

    @classmethod
    def secondary_rate_limit(cls, retry_after: float | None = 1, **match: Any) -> Fault:
        return cls(status=403, retry_after=retry_after, message=SECONDARY_RATE_LIMIT_MESSAGE,
                   **match)

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and (self.path is None or self.path in path))


@dataclass
class Request:
    """What the server saw: the Authorization header is never kept."""

    method: str
    path: str                          # below /api/v3, without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0                    # what was answered (0: dropped)
    fault: bool = False


@dataclass
class _Repo:
    full_name: str
    id: int
    default_branch: str
    clone_url: str
    private: bool
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)        # name -> label
    permissions: dict[str, str] = field(default_factory=dict)              # login -> role
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)        # number -> issue
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # number -> list
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)         # number -> pull
    reviews: list[dict[str, Any]] = field(default_factory=list)            # every PR's reviews
    review_comments: list[dict[str, Any]] = field(default_factory=list)    # every line comment
    reactions: list[dict[str, Any]] = field(default_factory=list)          # on any comment


class _HTTPError(Exception):
    def __init__(self, status: int, message: str | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.errors = errors


class GitHubServer:
    """The in-memory GitHub; start() binds 127.0.0.1 on a free port."""

    def __init__(self, token: str = DEFAULT_TOKEN, user: str = "orch-bot",
                 page_size_max: int = 100) -> None:
        self.token = token
        self.user = user
        self.page_size_max = page_size_max
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> GitHubServer:
        handler = type("Handler", (_Handler,), {"server_obj": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False       # delayed handlers must not hold up stop()
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="ghserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()               # wakes delayed handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GitHubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every repo, request, fault and outage (the token and user stay)."""
        with self._lock:
            self._repos: dict[str, _Repo] = {}
            self._faults: list[Fault] = []
            self._outage: int | None = None
            self.requests: list[Request] = []
            self._next_id = 1000

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def web_url(self) -> str:
        """The html side (html_url values): http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The API base for PyGithub's base_url: http://127.0.0.1:PORT/api/v3"""
        return self.web_url + API_PREFIX

    # -- test helpers: state ---------------------------------------------------------

    def add_repo(self, full_name: str, *, default_branch: str = "main",
                 clone_url: str | None = None, private: bool = False) -> str:
        """Create owner/name; clone_url defaults to an http URL on this server."""
        _check_full_name(full_name)
        with self._lock:
            self._repos[full_name] = _Repo(
                full_name=full_name, id=self._new_id(), default_branch=default_branch,
                clone_url=clone_url or f"{self.web_url}/{full_name}.git", private=private,
                permissions={self.user: "write"})
        return full_name

    def set_clone_url(self, repo: str, clone_url: str) -> None:
        with self._lock:
            self._repo(repo).clone_url = clone_url

    def add_issue(self, repo: str, title: str, body: str = "", *, labels: list[str] | tuple = (),
                  user: str = "alice", state: str = "open", created_at: datetime | str | None = None,
                  number: int | None = None, comments: list[str] | tuple = (),
                  pull_request: bool = False, labeled_by: str | None = None) -> int:
        """Add an issue (or, with pull_request=True, an issue-list entry that is a PR);
        each label is a `labeled` event by `labeled_by` (default: the author)."""
        with self._lock:
            r = self._repo(repo)
            n = number if number is not None else self._next_number(r)
            if isinstance(created_at, str):
                created = created_at
            else:
                created = _ts(created_at or (EPOCH + timedelta(minutes=n)))
            for name in labels:
                self._ensure_label(r, name)
            r.issues[n] = {
                "id": self._new_id(), "number": n, "title": title, "body": body,
                "labels": list(dict.fromkeys(labels)), "user": user, "state": state,
                "created_at": created, "updated_at": created, "pull_request": pull_request,
                "edits": [], "events": [{"kind": "labeled", "actor": labeled_by or user,
                                         "at": created, "label": name}
                                        for name in dict.fromkeys(labels)],
            }
            r.comments.setdefault(n, [])
            for text in comments:
                self._add_comment(r, n, text, user)
            return n

    def add_comment(self, repo: str, number: int, body: str, *, user: str = "alice") -> int:
        with self._lock:
            r = self._repo(repo)
            self._issue(r, number)
            return self._add_comment(r, number, body, user)["id"]

    def label_issue(self, repo: str, number: int, label: str, *, by: str,
                    at: datetime | str | None = None) -> None:
        """`by` adds `label` to the issue (a `labeled` event, as the web UI makes)."""
        with self._lock:
            r = self._repo(repo)
            i = self._issue(r, number)
            self._ensure_label(r, label)
            if label not in i["labels"]:
                i["labels"].append(label)
            i["events"].append({"kind": "labeled", "actor": by, "at": _when(at), "label": label})

    def edit_issue(self, repo: str, number: int, *, by: str, body: str | None = None,
                   title: str | None = None, at: datetime | str | None = None) -> None:
        """`by` edits the body (a userContentEdit) and/or renames the issue (an event)."""
        with self._lock:
            i = self._issue(self._repo(repo), number)
            self._edit(i, by, _when(at), body=body, title=title)

    def edit_comment(self, repo: str, comment_id: int, body: str, *, by: str,
                     at: datetime | str | None = None) -> None:
        with self._lock:
            c = self._find_comment(self._repo(repo), str(comment_id))
            c.update(body=body, editor=by, edited_at=_when(at), updated_at=_when(at))

    def add_pull(self, repo: str, head: str, *, base: str = "main", title: str = "a change",
                 body: str = "", user: str | None = None) -> int:
        """An open pull request from `head` (no check that the branch exists), by `user`
        (default: the token's user, as when orch opened it); its number."""
        with self._lock:
            r = self._repo(repo)
            n = self._next_number(r)
            now = _ts(datetime.now(UTC))
            who = user or self.user
            r.pulls[n] = {"id": self._new_id(), "number": n, "head": head, "base": base,
                          "title": title, "body": body, "state": "open",
                          "html_url": f"{self.web_url}/{repo}/pull/{n}", "commit": None,
                          "created_at": now, "user": who, "draft": False, "reviewers": [],
                          "updated_at": now}
            r.issues[n] = {"id": r.pulls[n]["id"], "number": n, "title": title, "body": body,
                           "labels": [], "user": who, "state": "open", "created_at": now,
                           "updated_at": now, "pull_request": True, "edits": [], "events": []}
            r.comments.setdefault(n, [])
            return n

    def add_review(self, repo: str, number: int, *, user: str, event: str = "COMMENT",
                   body: str = "", comments: list[dict[str, Any]] | tuple = ()) -> int:
        """`user` submits a review (event APPROVE, REQUEST_CHANGES or COMMENT) with line
        comments ({path, line, body}); the review's id. GitHub's rules: 422 for the PR's
        author approving or requesting changes."""
        with self._lock:
            r = self._repo(repo)
            return self._review(r, number, user, event, body, list(comments))["id"]

    def add_review_comment(self, repo: str, number: int, body: str, *, user: str,
                           path: str = "", line: int | None = None,
                           in_reply_to: int | None = None) -> int:
        """A line comment made alone (a COMMENTED review of its own), or a reply in the
        thread of comment `in_reply_to`; the comment's id."""
        with self._lock:
            r = self._repo(repo)
            return self._line_comment_alone(r, number, user, body, path, line, in_reply_to)["id"]

    def edit_review_comment(self, repo: str, comment_id: int, body: str, *, by: str) -> None:
        with self._lock:
            c = self._find_review_comment(self._repo(repo), str(comment_id))
            c.update(body=body, updated_at=_ts(datetime.now(UTC)), editor=by)

    def review_comments(self, repo: str, number: int | None = None) -> list[dict[str, Any]]:
        """Line comments (of one PR, or all), oldest first."""
        with self._lock:
            return [dict(c) for c in self._repo(repo).review_comments
                    if number is None or c["pull"] == number]

    def reactions(self, repo: str, comment_id: int) -> list[str]:
        """The reactions on a comment (issue or line comment), in the order given."""
        with self._lock:
            return [x["content"] for x in self._repo(repo).reactions if x["comment"] == comment_id]

    def set_permission(self, repo: str, login: str, permission: str) -> None:
        """Role of `login` on `repo`: none/read/triage/write/maintain/admin (unknown: none)."""
        if permission not in ROLES:
            raise ValueError(f"permission must be one of {ROLES}")
        with self._lock:
            self._repo(repo).permissions[login] = permission

    def add_label(self, repo: str, name: str, color: str = "ededed") -> None:
        with self._lock:
            self._ensure_label(self._repo(repo), name, color)

    def close_issue(self, repo: str, number: int) -> None:
        with self._lock:
            self._issue(self._repo(repo), number)["state"] = "closed"

    # -- test helpers: inspection ------------------------------------------------------

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._issue(self._repo(repo), number)))

    def pulls(self, repo: str) -> list[dict[str, Any]]:
        """Pull requests of `repo` by number: number, head, base, title, body, state,
        html_url, commit (the head's sha when clone_url is a local repository)."""
        with self._lock:
            r = self._repo(repo)
            return [dict(p) for _, p in sorted(r.pulls.items())]

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """Comments of an issue, oldest first: id, body, user, created_at, updated_at."""
        with self._lock:
            return [dict(c) for c in self._repo(repo).comments.get(number, [])]

    def labels(self, repo: str, number: int) -> list[str]:
        """The labels currently on an issue (or PR)."""
        with self._lock:
            return list(self._issue(self._repo(repo), number)["labels"])

    def repo_labels(self, repo: str) -> list[str]:
        with self._lock:
            return list(self._repo(repo).labels)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests matched (method exactly, path as a substring)."""
        return len(self.requests_matching(method, path))

    def requests_matching(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [q for q in self.requests
                    if (method is None or q.method == method.upper())
                    and (path is None or path in q.path)]

    # -- test helpers: faults ----------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` matching requests."""
        with self._lock:
            self._faults.extend([fault] * times)

    def set_outage(self, status: int | None = 502) -> None:
        """Every request answers `status` until set_outage(None)."""
        with self._lock:
            self._outage = status

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- internals: state --------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _next_number(self, r: _Repo) -> int:
        return max([0, *r.issues]) + 1

    def _repo(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name]
        except KeyError:
            raise KeyError(f"no repo {full_name!r} on the test server") from None

    def _issue(self, r: _Repo, number: int) -> dict[str, Any]:
        try:
            return r.issues[number]
        except KeyError:
            raise KeyError(f"no issue {r.full_name}#{number} on the test server") from None

    def _ensure_label(self, r: _Repo, name: str, color: str = "ededed",
                      description: str | None = None) -> dict[str, Any]:
        if name not in r.labels:
            r.labels[name] = {"id": self._new_id(), "name": name, "color": color,
                              "description": description}
        return r.labels[name]

    def _add_comment(self, r: _Repo, number: int, body: str, user: str) -> dict[str, Any]:
        now = _ts(datetime.now(UTC))
        c = {"id": self._new_id(), "body": body, "user": user, "created_at": now,
             "updated_at": now, "issue": number, "editor": None, "edited_at": None}
        r.comments.setdefault(number, []).append(c)
        return c

    def _edit(self, i: dict[str, Any], by: str, at: str, *, body: str | None = None,
              title: str | None = None) -> None:
        if body is not None and body != i["body"]:
            if not i["edits"]:                   # GitHub keeps the original as the first entry
                i["edits"].append({"editor": i["user"], "at": i["created_at"]})
            i["body"] = body
            i["edits"].append({"editor": by, "at": at})
        if title is not None and title != i["title"]:
            i["events"].append({"kind": "renamed", "actor": by, "at": at,
                                "from": i["title"], "to": title})
            i["title"] = title
        i["updated_at"] = at

    def _labeled(self, i: dict[str, Any], names: list[str], by: str) -> None:
        now = _ts(datetime.now(UTC))
        for name in names:
            if name not in i["labels"]:
                i["events"].append({"kind": "labeled", "actor": by, "at": now, "label": name})

    def _pull_of(self, r: _Repo, number: int | str) -> dict[str, Any]:
        p = r.pulls.get(int(number))
        if p is None:
            raise _HTTPError(404)
        return p

    def _association(self, r: _Repo, login: str) -> str:
        """What GitHub derives from the repository's people (the values docs/FIELD-NOTES.md lists)."""
        owner = r.full_name.split("/")[0]
        return "OWNER" if login == owner else "COLLABORATOR" if login in r.permissions \
            else "NONE"

    def _hunk(self, r: _Repo, p: dict[str, Any], path: str, line: int | None) -> str:
        """A diff hunk ending at the commented line, from the PR's head when it is local."""
        text = ""
        if os.path.isdir(r.clone_url) and path:
            out = subprocess.run(["git", "-C", r.clone_url, "show", f"refs/heads/{p['head']}:{path}"],
                                 capture_output=True, text=True, timeout=30)
            text = out.stdout if out.returncode == 0 else ""
        lines = text.splitlines()
        n = line or 1
        shown = lines[max(0, n - 3):n] or [""]
        return f"@@ -{max(1, n - len(shown) + 1)},{len(shown)} +{max(1, n - len(shown) + 1)},{len(shown)} @@\n" \
            + "\n".join("+" + x for x in shown)

    def _review(self, r: _Repo, number: int, user: str, event: str, body: str,
                comments: list[dict[str, Any]]) -> dict[str, Any]:
        p = self._pull_of(r, number)
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED",
                  "COMMENT": "COMMENTED"}
        if event not in states:
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "PullRequestReview", "field": "event", "code": "invalid"}])
        if user == p["user"] and event != "COMMENT":
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise _HTTPError(422, "Unprocessable Entity",
                             [{"message": f"Review Can not {verb} your own pull request"}])
        if event != "APPROVE" and not body and not comments:
            raise _HTTPError(422, "Unprocessable Entity",
                             [{"message": "Review body is required"}])
        now = _ts(datetime.now(UTC))
        review = {"id": self._new_id(), "pull": int(number), "user": user, "body": body,
                  "state": states[event], "submitted_at": now,
                  "commit_id": _git_rev(r.clone_url, p["head"]) if os.path.isdir(r.clone_url)
                  else "0" * 40}
        r.reviews.append(review)
        for c in comments:
            self._add_line_comment(r, p, user, str(c.get("body") or ""), str(c.get("path") or ""),
                                   c.get("line"), None, review["id"])
        self._touch(r, p, now)
        return review

    def _add_line_comment(self, r: _Repo, p: dict[str, Any], user: str, body: str, path: str,
                          line: int | None, in_reply_to: int | None, review_id: int) -> dict[str, Any]:
        now = _ts(datetime.now(UTC))
        c = {"id": self._new_id(), "pull": p["number"], "user": user, "body": body, "path": path,
             "line": line, "diff_hunk": self._hunk(r, p, path, line), "in_reply_to_id": in_reply_to,
             "review_id": review_id, "created_at": now, "updated_at": now, "editor": None}
        r.review_comments.append(c)
        self._touch(r, p, now)
        return c

    def _line_comment_alone(self, r: _Repo, number: int, user: str, body: str, path: str,
                            line: int | None, in_reply_to: int | None) -> dict[str, Any]:
        p = self._pull_of(r, number)
        if in_reply_to is not None:
            first = self._find_review_comment(r, str(in_reply_to))
            top = first["in_reply_to_id"] or first["id"]    # replies attach to the first comment
            top_c = self._find_review_comment(r, str(top))
            path, line = top_c["path"], top_c["line"]
            in_reply_to = top
        now = _ts(datetime.now(UTC))
        review = {"id": self._new_id(), "pull": int(number), "user": user, "body": "",
                  "state": "COMMENTED", "submitted_at": now, "commit_id": "0" * 40}
        r.reviews.append(review)
        return self._add_line_comment(r, p, user, body, path, line, in_reply_to, review["id"])

    def _touch(self, r: _Repo, p: dict[str, Any], now: str) -> None:
        p["updated_at"] = now
        if p["number"] in r.issues:
            r.issues[p["number"]]["updated_at"] = now

    def _find_review_comment(self, r: _Repo, cid: str) -> dict[str, Any]:
        for c in r.review_comments:
            if c["id"] == int(cid):
                return c
        raise _HTTPError(404)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            if self._outage is not None:
                return Fault(status=self._outage)
            for i, f in enumerate(self._faults):
                if f.matches(method, path):
                    return self._faults.pop(i)
        return None

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # -- internals: JSON shapes (every URL points back here) ----------------------------

    def _api(self, path: str) -> str:
        return self.url + path

    def _user_json(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": zlib.crc32(login.encode()) % 10**7, "type": "User",
                "site_admin": False, "url": self._api(f"/users/{login}"),
                "html_url": f"{self.web_url}/{login}"}

    def _repo_json(self, r: _Repo) -> dict[str, Any]:
        owner, name = r.full_name.split("/")
        return {"id": r.id, "name": name, "full_name": r.full_name, "private": r.private,
                "owner": self._user_json(owner), "default_branch": r.default_branch,
                "clone_url": r.clone_url, "url": self._api(f"/repos/{r.full_name}"),
                "html_url": f"{self.web_url}/{r.full_name}", "fork": False,
                "has_issues": True, "archived": False, "visibility": "private" if r.private else "public"}

    def _label_json(self, r: _Repo, label: dict[str, Any]) -> dict[str, Any]:
        return {"id": label["id"], "name": label["name"], "color": label["color"],
                "description": label["description"], "default": False,
                "url": self._api(f"/repos/{r.full_name}/labels/{quote(label['name'], safe='')}")}

    def _issue_json(self, r: _Repo, i: dict[str, Any]) -> dict[str, Any]:
        n = i["number"]
        base = f"/repos/{r.full_name}/issues/{n}"
        data = {
            "id": i["id"], "number": n, "title": i["title"], "body": i["body"],
            "state": i["state"], "locked": False, "user": self._user_json(i["user"]),
            "labels": [self._label_json(r, r.labels[name]) for name in i["labels"]],
            "assignees": [], "comments": len(r.comments.get(n, [])),
            "created_at": i["created_at"], "updated_at": i["updated_at"],
            "closed_at": i["updated_at"] if i["state"] == "closed" else None,
            "url": self._api(base), "repository_url": self._api(f"/repos/{r.full_name}"),
            "comments_url": self._api(base + "/comments"),
            "labels_url": self._api(base + "/labels{/name}"),
            "html_url": f"{self.web_url}/{r.full_name}/{'pull' if i['pull_request'] else 'issues'}/{n}",
        }
        if i["pull_request"]:
            data["pull_request"] = {"url": self._api(f"/repos/{r.full_name}/pulls/{n}"),
                                    "html_url": f"{self.web_url}/{r.full_name}/pull/{n}"}
        return data

    def _comment_json(self, r: _Repo, c: dict[str, Any]) -> dict[str, Any]:
        return {"id": c["id"], "body": c["body"], "user": self._user_json(c["user"]),
                "author_association": self._association(r, c["user"]),
                "created_at": c["created_at"], "updated_at": c["updated_at"],
                "url": self._api(f"/repos/{r.full_name}/issues/comments/{c['id']}"),
                "issue_url": self._api(f"/repos/{r.full_name}/issues/{c['issue']}"),
                "html_url": f"{self.web_url}/{r.full_name}/issues/{c['issue']}#issuecomment-{c['id']}"}

    def _review_comment_json(self, r: _Repo, c: dict[str, Any]) -> dict[str, Any]:
        base = f"/repos/{r.full_name}/pulls"
        data = {"id": c["id"], "pull_request_review_id": c["review_id"], "body": c["body"],
                "user": self._user_json(c["user"]),
                "author_association": self._association(r, c["user"]),
                "path": c["path"], "line": c["line"], "original_line": c["line"],
                "side": "RIGHT", "diff_hunk": c["diff_hunk"], "commit_id": "0" * 40,
                "created_at": c["created_at"], "updated_at": c["updated_at"],
                "url": self._api(f"{base}/comments/{c['id']}"),
                "pull_request_url": self._api(f"{base}/{c['pull']}"),
                "html_url": f"{self.web_url}/{r.full_name}/pull/{c['pull']}#discussion_r{c['id']}"}
        if c["in_reply_to_id"] is not None:
            data["in_reply_to_id"] = c["in_reply_to_id"]
        return data

    def _review_json(self, r: _Repo, v: dict[str, Any]) -> dict[str, Any]:
        return {"id": v["id"], "user": self._user_json(v["user"]), "body": v["body"],
                "state": v["state"], "submitted_at": v["submitted_at"], "commit_id": v["commit_id"],
                "author_association": self._association(r, v["user"]),
                "pull_request_url": self._api(f"/repos/{r.full_name}/pulls/{v['pull']}"),
                "html_url": f"{self.web_url}/{r.full_name}/pull/{v['pull']}#pullrequestreview-{v['id']}"}

    def _pull_json(self, r: _Repo, p: dict[str, Any]) -> dict[str, Any]:
        owner = r.full_name.split("/")[0]
        repo = self._repo_json(r)
        sha = (_git_rev(r.clone_url, p["head"]) if os.path.isdir(r.clone_url) else None) \
            or p["commit"] or "0" * 40
        return {
            "id": p["id"], "number": p["number"], "title": p["title"], "body": p["body"],
            "state": p["state"], "merged": False, "draft": bool(p.get("draft")),
            "user": self._user_json(p["user"]),
            "head": {"ref": p["head"], "label": f"{owner}:{p['head']}", "sha": sha,
                     "repo": repo, "user": self._user_json(owner)},
            "base": {"ref": p["base"], "label": f"{owner}:{p['base']}", "sha": "0" * 40,
                     "repo": repo, "user": self._user_json(owner)},
            "requested_reviewers": [self._user_json(x) for x in p.get("reviewers", [])],
            "labels": [self._label_json(r, r.labels[x]) for x in r.issues[p["number"]]["labels"]
                       if x in r.labels] if p["number"] in r.issues else [],
            "created_at": p["created_at"], "updated_at": p.get("updated_at") or p["created_at"],
            "url": self._api(f"/repos/{r.full_name}/pulls/{p['number']}"),
            "issue_url": self._api(f"/repos/{r.full_name}/issues/{p['number']}"),
            "html_url": p["html_url"],
        }

    # -- internals: routing ------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        for verb, pattern, fn in _ROUTES:
            if verb != method:
                continue
            m = pattern.fullmatch(path)
            if m:
                with self._lock:
                    return fn(self, query, body, *[unquote(g) for g in m.groups()])
        raise _HTTPError(404)

    def _paginate(self, path: str, query: dict[str, str], items: list[Any]
                  ) -> tuple[int, Any, dict[str, str]]:
        try:
            per_page = max(1, min(int(query.get("per_page", 30)), self.page_size_max))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            raise _HTTPError(422, "Invalid pagination parameters") from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(p: int) -> str:
            q = dict(query, page=str(p), per_page=str(per_page))
            return f"<{self.url}{path}?{urlencode(q)}>"

        rels = []
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(1)}; rel="first"', f'{link(page - 1)}; rel="prev"']
        return 200, chunk, ({"Link": ", ".join(rels)} if rels else {})

    def _lookup(self, full_name: str) -> _Repo:
        r = self._repos.get(full_name)
        if r is None:
            raise _HTTPError(404)
        return r

    def _lookup_issue(self, r: _Repo, number: str) -> dict[str, Any]:
        i = r.issues.get(int(number))
        if i is None:
            raise _HTTPError(404)
        return i

    def _find_comment(self, r: _Repo, cid: str) -> dict[str, Any]:
        for cs in r.comments.values():
            for c in cs:
                if c["id"] == int(cid):
                    return c
        raise _HTTPError(404)

    # handlers: (self, query, body, *path groups) -> (status, json, headers)

    def h_user(self, q, b):
        return 200, self._user_json(self.user), {}

    def h_repo(self, q, b, name):
        return 200, self._repo_json(self._lookup(name)), {}

    def h_issues(self, q, b, name):
        r = self._lookup(name)
        state = q.get("state", "open")
        wanted = [s for s in q.get("labels", "").split(",") if s]
        items = [i for i in r.issues.values()
                 if (state == "all" or i["state"] == state) and all(w in i["labels"] for w in wanted)]
        key = "updated_at" if q.get("sort") == "updated" else "created_at"
        items.sort(key=lambda i: (i[key], i["number"]), reverse=q.get("direction", "desc") != "asc")
        return self._paginate(f"/repos/{name}/issues", q, [self._issue_json(r, i) for i in items])

    def h_issue(self, q, b, name, number):
        r = self._lookup(name)
        return 200, self._issue_json(r, self._lookup_issue(r, number)), {}

    def h_issue_edit(self, q, b, name, number):
        r = self._lookup(name)
        i = self._lookup_issue(r, number)
        b = b or {}
        self._edit(i, self.user, _ts(datetime.now(UTC)), body=b.get("body"), title=b.get("title"))
        if "state" in b:
            i["state"] = b["state"]
        if "labels" in b:
            names = list(dict.fromkeys(str(x) for x in b["labels"]))
            self._labeled(i, names, self.user)
            i["labels"] = names
            for name_ in i["labels"]:
                self._ensure_label(r, name_)
        i["updated_at"] = _ts(datetime.now(UTC))
        return 200, self._issue_json(r, i), {}

    def h_comments(self, q, b, name, number):
        r = self._lookup(name)
        self._lookup_issue(r, number)
        cs = [self._comment_json(r, c) for c in r.comments.get(int(number), [])]
        return self._paginate(f"/repos/{name}/issues/{number}/comments", q, cs)

    def h_comment_create(self, q, b, name, number):
        r = self._lookup(name)
        self._lookup_issue(r, number)
        if not isinstance(b, dict) or not isinstance(b.get("body"), str):
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "IssueComment", "field": "body", "code": "missing_field"}])
        c = self._add_comment(r, int(number), b["body"], self.user)
        return 201, self._comment_json(r, c), {}

    def h_comment_get(self, q, b, name, cid):
        r = self._lookup(name)
        return 200, self._comment_json(r, self._find_comment(r, cid)), {}

    def h_comment_edit(self, q, b, name, cid):
        r = self._lookup(name)
        c = self._find_comment(r, cid)
        if not isinstance(b, dict) or not isinstance(b.get("body"), str):
            raise _HTTPError(422, "Validation Failed")
        now = _ts(datetime.now(UTC))
        c.update(body=b["body"], updated_at=now, editor=self.user, edited_at=now)
        return 200, self._comment_json(r, c), {}

    def h_permission(self, q, b, name, login):
        r = self._lookup(name)
        role = r.permissions.get(login, "none")
        return 200, {"permission": LEGACY_PERMISSION[role], "role_name": role,
                     "user": self._user_json(login)}, {}

    def h_pulls(self, q, b, name):
        r = self._lookup(name)
        state = q.get("state", "open")
        items = [p for _, p in sorted(r.pulls.items()) if state == "all" or p["state"] == state]
        head = q.get("head")
        if head and ":" in head:                 # GitHub ignores a head filter without owner:
            owner, _, ref = head.partition(":")
            items = [p for p in items if owner == name.split("/")[0] and p["head"] == ref]
        if q.get("base"):
            items = [p for p in items if p["base"] == q["base"]]
        return self._paginate(f"/repos/{name}/pulls", q, [self._pull_json(r, p) for p in items])

    def h_pull(self, q, b, name, number):
        r = self._lookup(name)
        p = r.pulls.get(int(number))
        if p is None:
            raise _HTTPError(404)
        return 200, self._pull_json(r, p), {}

    def h_pull_create(self, q, b, name):
        r = self._lookup(name)
        owner = name.split("/")[0]
        b = b if isinstance(b, dict) else {}
        missing = [k for k in ("head", "base", "title") if not b.get(k)]
        if missing:
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "PullRequest", "field": k, "code": "missing_field"}
                              for k in missing])
        head = b["head"]
        if ":" in head:
            head_owner, _, head = head.partition(":")
            if head_owner != owner:
                raise _HTTPError(422, "Validation Failed",
                                 [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        for p in r.pulls.values():
            if p["head"] == head and p["state"] == "open":
                raise _HTTPError(422, "Validation Failed", [{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {owner}:{head}."}])
        commit = None
        if os.path.isdir(r.clone_url):
            commit = _git_rev(r.clone_url, head)
            if commit is None:
                raise _HTTPError(422, "Validation Failed",
                                 [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        n = self._next_number(r)
        now = _ts(datetime.now(UTC))
        html = f"{self.web_url}/{name}/pull/{n}"
        r.pulls[n] = {"id": self._new_id(), "number": n, "head": head, "base": b["base"],
                      "title": b["title"], "body": b.get("body") or "", "state": "open",
                      "html_url": html, "commit": commit, "created_at": now, "user": self.user,
                      "draft": bool(b.get("draft")), "reviewers": [], "updated_at": now}
        r.issues[n] = {"id": r.pulls[n]["id"], "number": n, "title": b["title"],
                       "body": b.get("body") or "", "labels": [], "user": self.user,
                       "state": "open", "created_at": now, "updated_at": now, "pull_request": True,
                       "edits": [], "events": []}
        return 201, self._pull_json(r, r.pulls[n]), {}

    def h_pull_edit(self, q, b, name, number):
        r = self._lookup(name)
        p = self._pull_of(r, number)
        b = b if isinstance(b, dict) else {}
        for key in ("title", "body", "state"):
            if isinstance(b.get(key), str):
                p[key] = b[key]
                if p["number"] in r.issues:
                    r.issues[p["number"]][key] = b[key]
        self._touch(r, p, _ts(datetime.now(UTC)))
        return 200, self._pull_json(r, p), {}

    def h_requested_reviewers(self, q, b, name, number):
        r = self._lookup(name)
        p = self._pull_of(r, number)
        wanted = (b or {}).get("reviewers") if isinstance(b, dict) else None
        if not isinstance(wanted, list):
            raise _HTTPError(422, "Validation Failed")
        for login in wanted:
            if login == p["user"]:
                raise _HTTPError(422, "Review cannot be requested from pull request author.")
            if login not in r.permissions:
                raise _HTTPError(422, "Reviews may only be requested from collaborators. One or "
                                      "more of the users or teams you specified is not a "
                                      "collaborator of the " + name + " repository.")
        p["reviewers"] = list(dict.fromkeys(p.get("reviewers", []) + wanted))
        return 201, self._pull_json(r, p), {}

    def _since(self, q: dict[str, str], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """GitHub's `since` (updated at or after), `sort` (created | updated) and
        `direction` on a repository-wide comment list."""
        since = q.get("since")
        if since:
            try:
                cut = datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise _HTTPError(422, "Invalid since parameter") from None
            items = [c for c in items
                     if datetime.fromisoformat(c["updated_at"].replace("Z", "+00:00")) >= cut]
        key = "updated_at" if q.get("sort") == "updated" else "created_at"
        return sorted(items, key=lambda c: (c[key], c["id"]),
                      reverse=q.get("direction", "asc" if not q.get("sort") else "desc") == "desc")

    def h_repo_comments(self, q, b, name):
        r = self._lookup(name)
        items = [c for cs in r.comments.values() for c in cs]
        return self._paginate(f"/repos/{name}/issues/comments", q,
                              [self._comment_json(r, c) for c in self._since(q, items)])

    def h_repo_review_comments(self, q, b, name):
        r = self._lookup(name)
        return self._paginate(f"/repos/{name}/pulls/comments", q,
                              [self._review_comment_json(r, c)
                               for c in self._since(q, list(r.review_comments))])

    def h_pull_comments(self, q, b, name, number):
        r = self._lookup(name)
        self._pull_of(r, number)
        items = [c for c in r.review_comments if c["pull"] == int(number)]
        return self._paginate(f"/repos/{name}/pulls/{number}/comments", q,
                              [self._review_comment_json(r, c) for c in items])

    def h_pull_comment_create(self, q, b, name, number):
        r = self._lookup(name)
        b = b if isinstance(b, dict) else {}
        if not isinstance(b.get("body"), str) or not b["body"]:
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "PullRequestReviewComment", "field": "body",
                               "code": "missing_field"}])
        c = self._line_comment_alone(r, int(number), self.user, b["body"], str(b.get("path") or ""),
                                     b.get("line"), b.get("in_reply_to"))
        return 201, self._review_comment_json(r, c), {}

    def h_pull_comment_reply(self, q, b, name, number, cid):
        r = self._lookup(name)
        self._pull_of(r, number)
        first = self._find_review_comment(r, cid)
        if first["pull"] != int(number):
            raise _HTTPError(404)
        if not isinstance(b, dict) or not isinstance(b.get("body"), str) or not b["body"]:
            raise _HTTPError(422, "Validation Failed")
        c = self._line_comment_alone(r, int(number), self.user, b["body"], "", None, int(cid))
        return 201, self._review_comment_json(r, c), {}

    def h_reviews(self, q, b, name, number):
        r = self._lookup(name)
        self._pull_of(r, number)
        items = [v for v in r.reviews if v["pull"] == int(number)]
        return self._paginate(f"/repos/{name}/pulls/{number}/reviews", q,
                              [self._review_json(r, v) for v in items])

    def h_review_create(self, q, b, name, number):
        r = self._lookup(name)
        b = b if isinstance(b, dict) else {}
        v = self._review(r, int(number), self.user, str(b.get("event") or "COMMENT"),
                         str(b.get("body") or ""), list(b.get("comments") or []))
        return 200, self._review_json(r, v), {}           # 200, not 201 (docs/FIELD-NOTES.md)

    def h_review_comments(self, q, b, name, number, rid):
        r = self._lookup(name)
        items = [c for c in r.review_comments if c["pull"] == int(number) and c["review_id"] == int(rid)]
        if not any(v["id"] == int(rid) for v in r.reviews):
            raise _HTTPError(404)
        return self._paginate(f"/repos/{name}/pulls/{number}/reviews/{rid}/comments", q,
                              [self._review_comment_json(r, c) for c in items])

    _REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")

    def _react(self, r: _Repo, comment_id: int, b: Any) -> tuple[int, Any, dict[str, str]]:
        content = b.get("content") if isinstance(b, dict) else None
        if content not in self._REACTIONS:
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "Reaction", "field": "content", "code": "invalid"}])
        for x in r.reactions:
            if x["comment"] == comment_id and x["user"] == self.user and x["content"] == content:
                return 200, self._reaction_json(x), {}      # the same user, again: 200
        x = {"id": self._new_id(), "comment": comment_id, "user": self.user, "content": content,
             "created_at": _ts(datetime.now(UTC))}
        r.reactions.append(x)
        return 201, self._reaction_json(x), {}

    def _reaction_json(self, x: dict[str, Any]) -> dict[str, Any]:
        return {"id": x["id"], "user": self._user_json(x["user"]), "content": x["content"],
                "created_at": x["created_at"]}

    def h_comment_reaction(self, q, b, name, cid):
        r = self._lookup(name)
        self._find_comment(r, cid)
        return self._react(r, int(cid), b)

    def h_review_comment_reaction(self, q, b, name, cid):
        r = self._lookup(name)
        self._find_review_comment(r, cid)
        return self._react(r, int(cid), b)

    def h_timeline(self, q, b, name, number):
        """The issue timeline's commented / reviewed events (enough for a PR's story)."""
        r = self._lookup(name)
        self._lookup_issue(r, number)
        events = [{"event": "commented", "id": c["id"], "actor": self._user_json(c["user"]),
                   "body": c["body"], "created_at": c["created_at"],
                   "author_association": self._association(r, c["user"])}
                  for c in r.comments.get(int(number), [])]
        events += [{"event": "reviewed", "id": v["id"], "user": self._user_json(v["user"]),
                    "body": v["body"], "state": v["state"].lower(), "submitted_at": v["submitted_at"],
                    "author_association": self._association(r, v["user"])}
                   for v in r.reviews if v["pull"] == int(number)]
        events.sort(key=lambda e: (e.get("created_at") or e.get("submitted_at"), e["id"]))
        return self._paginate(f"/repos/{name}/issues/{number}/timeline", q, events)

    def h_repo_labels(self, q, b, name):
        r = self._lookup(name)
        return self._paginate(f"/repos/{name}/labels", q,
                              [self._label_json(r, lb) for lb in r.labels.values()])

    def h_repo_label(self, q, b, name, label):
        r = self._lookup(name)
        if label not in r.labels:
            raise _HTTPError(404)
        return 200, self._label_json(r, r.labels[label]), {}

    def h_repo_label_create(self, q, b, name):
        r = self._lookup(name)
        if not isinstance(b, dict) or not b.get("name"):
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "Label", "field": "name", "code": "missing_field"}])
        if b["name"] in r.labels:
            raise _HTTPError(422, "Validation Failed",
                             [{"resource": "Label", "field": "name", "code": "already_exists"}])
        lb = self._ensure_label(r, b["name"], str(b.get("color") or "ededed").lstrip("#"),
                                b.get("description"))
        return 201, self._label_json(r, lb), {}

    def h_issue_labels(self, q, b, name, number):
        r = self._lookup(name)
        i = self._lookup_issue(r, number)
        return 200, [self._label_json(r, r.labels[x]) for x in i["labels"]], {}

    def h_issue_labels_add(self, q, b, name, number, replace=False):
        r = self._lookup(name)
        i = self._lookup_issue(r, number)
        names = b.get("labels") if isinstance(b, dict) else b
        if not isinstance(names, list):
            raise _HTTPError(422, "Validation Failed")
        names = [x["name"] if isinstance(x, dict) else str(x) for x in names]
        for x in names:                          # GitHub creates unknown labels on the fly
            self._ensure_label(r, x)
        self._labeled(i, names, self.user)
        i["labels"] = list(dict.fromkeys(([] if replace else i["labels"]) + names))
        return 200, [self._label_json(r, r.labels[x]) for x in i["labels"]], {}

    def h_issue_labels_set(self, q, b, name, number):
        return self.h_issue_labels_add(q, b, name, number, replace=True)

    def h_issue_label_remove(self, q, b, name, number, label):
        r = self._lookup(name)
        i = self._lookup_issue(r, number)
        if label not in i["labels"]:
            raise _HTTPError(404, "Label does not exist")
        i["labels"].remove(label)
        i["events"].append({"kind": "unlabeled", "actor": self.user,
                            "at": _ts(datetime.now(UTC)), "label": label})
        return 200, [self._label_json(r, r.labels[x]) for x in i["labels"]], {}

    # GraphQL (POST /api/graphql): Query.repository -> the state above, as GitHub shapes it.

    def graphql(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 200, {"errors": [{"message": "A query attribute must be specified and "
                                                "must be a string."}]}, {}
        return 200, execute(body["query"], body.get("variables") or {},
                            {"repository": ("Repository", self._gql_repository)}), {}

    def _gql_repository(self, _root: Any, args: dict[str, Any], path: list[Any]) -> Any:
        name = f"{args.get('owner')}/{args.get('name')}"
        r = self._repos.get(name)
        if r is None:
            raise GraphQLError(f"Could not resolve to a Repository with the name '{name}'.",
                               path, "NOT_FOUND")
        return {"full_name": r.full_name, "__issue": lambda n: self._gql_issue(r, n)}

    def _gql_issue(self, r: _Repo, number: Any) -> dict[str, Any] | None:
        i = r.issues.get(number) if isinstance(number, int) else None
        if i is None or i["pull_request"]:
            return None
        kinds = {"labeled": "LabeledEvent", "unlabeled": "UnlabeledEvent",
                 "renamed": "RenamedTitleEvent"}
        owner = r.full_name.split("/")[0]

        def association(login: str) -> str:   # what GitHub derives from the repo's people
            return "OWNER" if login == owner else "COLLABORATOR" if login in r.permissions \
                else "NONE"
        comments = [{**c, "association": association(c["user"])}
                    for c in r.comments.get(number, [])]
        return {**i, "__comments": comments,
                "__events": [{**e, "__typename": kinds[e["kind"]]} for e in i["events"]]}


_R = r"/repos/([^/]+/[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any, dict[str, str]]]]] = [
    (m, re.compile(p), f) for m, p, f in [
        ("GET", r"/user", GitHubServer.h_user),
        ("GET", _R, GitHubServer.h_repo),
        ("GET", _R + r"/issues", GitHubServer.h_issues),
        ("GET", _R + r"/issues/comments", GitHubServer.h_repo_comments),
        ("POST", _R + r"/issues/comments/(\d+)/reactions", GitHubServer.h_comment_reaction),
        ("GET", _R + r"/issues/(\d+)/timeline", GitHubServer.h_timeline),
        ("GET", _R + r"/pulls/comments", GitHubServer.h_repo_review_comments),
        ("POST", _R + r"/pulls/comments/(\d+)/reactions", GitHubServer.h_review_comment_reaction),
        ("PATCH", _R + r"/pulls/(\d+)", GitHubServer.h_pull_edit),
        ("POST", _R + r"/pulls/(\d+)/requested_reviewers", GitHubServer.h_requested_reviewers),
        ("GET", _R + r"/pulls/(\d+)/comments", GitHubServer.h_pull_comments),
        ("POST", _R + r"/pulls/(\d+)/comments", GitHubServer.h_pull_comment_create),
        ("POST", _R + r"/pulls/(\d+)/comments/(\d+)/replies", GitHubServer.h_pull_comment_reply),
        ("GET", _R + r"/pulls/(\d+)/reviews", GitHubServer.h_reviews),
        ("POST", _R + r"/pulls/(\d+)/reviews", GitHubServer.h_review_create),
        ("GET", _R + r"/pulls/(\d+)/reviews/(\d+)/comments", GitHubServer.h_review_comments),
        ("GET", _R + r"/issues/comments/(\d+)", GitHubServer.h_comment_get),
        ("PATCH", _R + r"/issues/comments/(\d+)", GitHubServer.h_comment_edit),
        ("GET", _R + r"/issues/(\d+)", GitHubServer.h_issue),
        ("PATCH", _R + r"/issues/(\d+)", GitHubServer.h_issue_edit),
        ("GET", _R + r"/issues/(\d+)/comments", GitHubServer.h_comments),
        ("POST", _R + r"/issues/(\d+)/comments", GitHubServer.h_comment_create),
        ("GET", _R + r"/issues/(\d+)/labels", GitHubServer.h_issue_labels),
        ("POST", _R + r"/issues/(\d+)/labels", GitHubServer.h_issue_labels_add),
        ("PUT", _R + r"/issues/(\d+)/labels", GitHubServer.h_issue_labels_set),
        ("DELETE", _R + r"/issues/(\d+)/labels/([^/]+)", GitHubServer.h_issue_label_remove),
        ("GET", _R + r"/collaborators/([^/]+)/permission", GitHubServer.h_permission),
        ("GET", _R + r"/pulls", GitHubServer.h_pulls),
        ("POST", _R + r"/pulls", GitHubServer.h_pull_create),
        ("GET", _R + r"/pulls/(\d+)", GitHubServer.h_pull),
        ("GET", _R + r"/labels", GitHubServer.h_repo_labels),
        ("POST", _R + r"/labels", GitHubServer.h_repo_label_create),
        ("GET", _R + r"/labels/([^/]+)", GitHubServer.h_repo_label),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    """One HTTP/1.1 keep-alive connection; all state lives in `server_obj`."""

    server_obj: GitHubServer
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle on, the body waits for
    # the client's delayed ACK of the headers (~40 ms a request on loopback), a stall
    # GitHub's servers do not have. TCP_NODELAY sends both at once.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:   # quiet: tests read .requests
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        gh = self.server_obj
        split = urlsplit(self.path)
        raw_path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        path = raw_path[len(API_PREFIX):] if raw_path.startswith(API_PREFIX) else raw_path
        record = Request(method, path, query, headers, body)
        with gh._lock:
            gh.requests.append(record)

        fault = gh._take_fault(method, path)
        if fault is not None:
            record.fault = True
            if fault.delay:
                gh._wait(fault.delay)
            if fault.drop:
                self.close_connection = True
                return
            if fault.status is not None and not fault.after:
                self._fail(record, fault.status, fault.message, fault.retry_after)
                return

        status, payload, extra = self._answer(method, raw_path, path, query, body)
        if fault is not None and fault.status is not None and fault.after:
            self._fail(record, fault.status, fault.message, fault.retry_after)
            return
        record.status = status
        self._send(status, payload, extra)

    def _answer(self, method: str, raw_path: str, path: str, query: dict[str, str],
                body: Any) -> tuple[int, Any, dict[str, str]]:
        gh = self.server_obj
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or value.strip() != gh.token:
            return _error_payload(401, "Bad credentials")
        if raw_path == GRAPHQL_PATH and method == "POST":
            with gh._lock:
                return gh.graphql(body)
        if not raw_path.startswith(API_PREFIX + "/"):
            return _error_payload(404, "Not Found")
        try:
            return gh._route(method, path, query, body)
        except _HTTPError as e:
            return _error_payload(e.status, e.message, e.errors)

    def _fail(self, record: Request, status: int, message: str | None,
              retry_after: float | None) -> None:
        code, payload, extra = _error_payload(status, message)
        if retry_after is not None:
            extra["Retry-After"] = f"{retry_after:g}"
        record.status = code
        self._send(code, payload, extra)

    def _send(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-RateLimit-Limit", "5000")
            self.send_header("X-RateLimit-Remaining", "4999")
            self.send_header("X-RateLimit-Reset", str(int(time.time()) + 3600))
            self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):    # the client gave up (timeout)
            self.close_connection = True

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass


def _error_payload(status: int, message: str | None = None,
                   errors: list[dict[str, Any]] | None = None) -> tuple[int, Any, dict[str, str]]:
    payload: dict[str, Any] = {"message": message or HTTPStatus(status).phrase,
                               "documentation_url": "https://docs.github.com/rest"}
    if errors:
        payload["errors"] = errors
    return status, payload, {}


def _when(at: datetime | str | None) -> str:
    """A time for an event: as given (a datetime or GitHub's string), else now."""
    if isinstance(at, str):
        return at
    return _ts(at or datetime.now(UTC))


def _check_full_name(full_name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", full_name):
        raise ValueError(f"repo must be owner/name, got {full_name!r}")


def _git_rev(repo_path: str, branch: str) -> str | None:
    """The commit of refs/heads/<branch> in a local repository, None if absent."""
    try:
        out = subprocess.run(["git", "-C", repo_path, "rev-parse", "--verify", "--quiet",
                              f"refs/heads/{branch}^{{commit}}"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def main() -> None:  # pragma: no cover - manual use
    import argparse
    ap = argparse.ArgumentParser(description="Run the test GitHub server until interrupted.")
    ap.add_argument("--token", default=DEFAULT_TOKEN)
    ap.add_argument("--repo", action="append", default=[], help="owner/name to create")
    args = ap.parse_args()
    with GitHubServer(token=args.token) as gh:
        for name in args.repo:
            gh.add_repo(name)
        print(f"url={gh.url} token={gh.token}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
