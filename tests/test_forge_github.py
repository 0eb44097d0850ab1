"""GithubForge through the real PyGithub against tests/ghserver.py (no mocks)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.config.settings import GithubSettings
from orchestrator.errors import UsageError, WorkError
from orchestrator.forge import Forge, parse_issue_ref, permission_at_least
from orchestrator.forge.github import GithubForge
from tests.ghserver import Fault, GitHubServer

REPO = "octo/app"


@pytest.fixture
def gh(github_server: GitHubServer, github_token: str) -> GitHubServer:
    github_server.add_repo(REPO, default_branch="trunk")
    return github_server


def forge_for(server: GitHubServer, **kw) -> GithubForge:
    settings = GithubSettings(url=server.url, timeout=kw.pop("timeout", 2.0),
                              retries=kw.pop("retries", 3))
    kw.setdefault("backoff_factor", 0.01)
    kw.setdefault("max_retry_wait", 2.0)
    return GithubForge(settings, **kw)


def bare_repo(tmp_path: Path, branches: list[str]) -> Path:
    """A bare repository with `branches` (all at one commit)."""
    work, bare = tmp_path / "work", tmp_path / "remote.git"
    env_git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*env_git, "-C", str(work), "commit", "-q", "--allow-empty", "-m", "init"],
                   check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    for b in branches:
        subprocess.run(["git", "-C", str(bare), "branch", b, "main"], check=True)
    return bare


# -- reading -----------------------------------------------------------------------------

def test_forge_satisfies_protocol(github_forge):
    assert isinstance(github_forge, Forge)
    assert github_forge.kind == "github"


def test_get_issue_full(gh, github_forge):
    gh.set_clone_url(REPO, "/srv/git/app.git")
    n = gh.add_issue(REPO, "Add /health", "It should say ok.", labels=["orch", "backend"],
                     user="alice", comments=[f"c{i}" for i in range(7)])
    issue = github_forge.get_issue(REPO, n)
    assert (issue.repo, issue.number, issue.title, issue.body) == (REPO, n, "Add /health",
                                                                   "It should say ok.")
    assert issue.labels == ("orch", "backend")
    assert issue.author == "alice" and issue.state == "open" and not issue.is_pull_request
    assert issue.clone_url == "/srv/git/app.git"
    # every comment (up to COMMENTS_SCANNED), oldest first, with its author: trust decides
    assert [(c.body, c.author) for c in issue.comments] == [(f"c{i}", "alice") for i in range(7)]
    assert [(e.kind, e.actor, e.label) for e in issue.events] == [
        ("labeled", "alice", "orch"), ("labeled", "alice", "backend")]
    assert issue.created_at == "2024-01-01T00:01:00Z"
    assert issue.url == f"{gh.web_url}/{REPO}/issues/{n}"
    assert github_forge.default_branch(REPO) == "trunk"
    assert gh.count("GET", f"/repos/{REPO}") == 2               # repo, issue: once each
    assert gh.count("POST", "/api/graphql") == 1                # who wrote what: one query
    assert not any("Authorization" in q.headers or "authorization" in q.headers
                   for q in gh.requests)


def test_closed_issue_and_pull_request_entries(gh, github_forge):
    closed = gh.add_issue(REPO, "old", state="closed")
    pr = gh.add_issue(REPO, "a PR", pull_request=True)
    assert github_forge.get_issue(REPO, closed).state == "closed"
    got = github_forge.get_issue(REPO, pr)
    assert got.is_pull_request and got.url.endswith(f"/pull/{pr}")


def test_missing_issue_and_repo_are_usage_errors(gh, github_forge):
    with pytest.raises(UsageError, match=r"issue octo/app#42 not found"):
        github_forge.get_issue(REPO, 42)
    with pytest.raises(UsageError, match=r"repository octo/nope not found"):
        github_forge.get_issue("octo/nope", 1)
    with pytest.raises(UsageError, match="not a GitHub repository name"):
        github_forge.get_issue("not a repo", 1)


def test_repo_urls_override_clone_url(gh):
    forge = forge_for(gh, repo_urls={REPO: "git@internal:octo/app.git"})
    assert forge.clone_url(REPO) == "git@internal:octo/app.git"


def test_author_permission(gh, github_forge):
    for role in ("read", "triage", "write", "maintain", "admin"):
        gh.set_permission(REPO, f"u-{role}", role)
        assert github_forge.author_permission(REPO, f"u-{role}") == role
    assert github_forge.author_permission(REPO, "stranger") == "none"


def test_permission_at_least():
    assert permission_at_least("admin", "write")
    assert permission_at_least("write", "write")
    assert permission_at_least("maintain", "triage")
    assert not permission_at_least("triage", "write")
    assert not permission_at_least("something-new", "read")
    assert permission_at_least("none", "none")
    with pytest.raises(UsageError, match="unknown permission"):
        permission_at_least("admin", "owner")


def test_list_open_issues_oldest_first_across_pages(gh):
    forge = forge_for(gh, per_page=2)
    # numbers and creation order disagree on purpose
    gh.add_issue(REPO, "newest", labels=["orch"], created_at="2024-03-01T00:00:00Z")
    gh.add_issue(REPO, "oldest", labels=["orch"], created_at="2024-01-01T00:00:00Z")
    gh.add_issue(REPO, "a PR", labels=["orch"], pull_request=True,
                 created_at="2024-01-15T00:00:00Z")
    gh.add_issue(REPO, "middle", labels=["orch", "ui"], created_at="2024-02-01T00:00:00Z")
    gh.add_issue(REPO, "closed", labels=["orch"], state="closed",
                 created_at="2024-01-02T00:00:00Z")
    gh.add_issue(REPO, "unlabelled", created_at="2024-01-03T00:00:00Z")
    gh.add_issue(REPO, "second", labels=["orch"], created_at="2024-01-10T00:00:00Z")
    got = forge.list_open_issues(REPO, "orch")
    assert [i.title for i in got] == ["oldest", "second", "middle", "newest"]
    assert all(i.comments == () and not i.is_pull_request for i in got)
    assert gh.count("GET", f"/repos/{REPO}/issues") == 3           # 5 entries, 2 per page
    assert not gh.requests_matching("GET", f"/repos/{REPO}/issues/")  # no per-item fetches


# -- pull requests -------------------------------------------------------------------------

def test_open_pull_request_is_idempotent(gh, github_forge):
    url1 = github_forge.open_pull_request(REPO, head="orch/1-x", base="trunk", title="T",
                                          body="Closes #1")
    url2 = github_forge.open_pull_request(REPO, head="orch/1-x", base="trunk", title="T",
                                          body="Closes #1")
    assert url1 == url2 == f"{gh.web_url}/{REPO}/pull/1"
    (pr,) = gh.pulls(REPO)
    assert (pr["head"], pr["base"], pr["title"], pr["body"]) == ("orch/1-x", "trunk", "T",
                                                                 "Closes #1")
    # The first opens it without a lookup; the second meets GitHub's 422 "already exists"
    # and looks the PR up by its head.
    assert gh.count("POST", "/pulls") == 2
    assert [q.query.get("head") for q in gh.requests_matching("GET", "/pulls")] == ["octo:orch/1-x"]
    assert github_forge.find_pull_request(REPO, "orch/1-x") == url1
    assert github_forge.find_pull_request(REPO, "orch/2-other") is None


def test_retried_pr_post_that_already_succeeded_returns_the_existing_pr(gh, github_forge):
    # GitHub created the PR but the answer was lost: urllib3 retries the POST, which meets
    # 422 "A pull request already exists"; the forge finds and returns that PR.
    gh.inject(Fault(status=502, after=True, method="POST", path="/pulls"))
    url = github_forge.open_pull_request(REPO, head="orch/3-y", base="trunk", title="T", body="B")
    assert len(gh.pulls(REPO)) == 1 and url == gh.pulls(REPO)[0]["html_url"]
    assert gh.count("POST", "/pulls") == 2


def test_pull_request_for_an_unpushed_branch_fails_clearly(gh, github_forge, tmp_path):
    gh.set_clone_url(REPO, str(bare_repo(tmp_path, ["orch/5-pushed"])))
    url = github_forge.open_pull_request(REPO, head="orch/5-pushed", base="main", title="T",
                                         body="")
    assert gh.pulls(REPO)[0]["commit"] and url.endswith("/pull/1")
    with pytest.raises(WorkError, match=r"opening a pull request orch/6-lost -> main .*422"):
        github_forge.open_pull_request(REPO, head="orch/6-lost", base="main", title="T", body="")


# -- comments and labels -------------------------------------------------------------------

def test_upsert_comment_edits_in_place(gh, github_forge):
    n = gh.add_issue(REPO, "x", comments=["from alice"])
    cid = github_forge.upsert_comment(REPO, n, "started on host-1", None)
    assert github_forge.upsert_comment(REPO, n, "done: PR #2", cid) == cid
    assert [c["body"] for c in gh.comments(REPO, n)] == ["from alice", "done: PR #2"]
    # finalize running again without the id: the identical last comment is reused
    assert github_forge.upsert_comment(REPO, n, "done: PR #2", None) == cid
    assert len(gh.comments(REPO, n)) == 2
    # a deleted comment is replaced by a new one
    new = github_forge.upsert_comment(REPO, n, "again", 999999)
    assert new != cid and gh.comments(REPO, n)[-1]["body"] == "again"


def test_a_comment_after_reading_the_issue_lists_no_comments(gh, github_forge):
    # get_issue's GraphQL answer already says which comment is last: upsert_comment
    # compares with that instead of listing every comment (one request, more pages).
    n = gh.add_issue(REPO, "x", comments=["from alice"])
    github_forge.get_issue(REPO, n)
    cid = github_forge.upsert_comment(REPO, n, "started on host-1", None)
    assert gh.count("GET", f"/issues/{n}/comments") == 0
    # The same text again without its id (a finalize repeated): that comment, no copy.
    assert github_forge.upsert_comment(REPO, n, "started on host-1", None) == cid
    assert github_forge.upsert_comment(REPO, n, "done: PR #2", cid) == cid
    assert github_forge.upsert_comment(REPO, n, "done: PR #2", None) == cid
    assert [c["body"] for c in gh.comments(REPO, n)] == ["from alice", "done: PR #2"]
    # A command that has not read the issue lists its comments, and finds ours last.
    other = forge_for(gh)
    assert other.upsert_comment(REPO, n, "done: PR #2", None) == cid
    assert gh.count("GET", f"/issues/{n}/comments") == 1
    assert len(gh.comments(REPO, n)) == 2


def test_upsert_comment_on_missing_issue(gh, github_forge):
    with pytest.raises(UsageError, match=r"issue octo/app#77 not found"):
        github_forge.upsert_comment(REPO, 77, "hi", None)


def test_set_labels(gh, github_forge):
    n = gh.add_issue(REPO, "x", labels=["orch", "backend"])
    github_forge.set_labels(REPO, n, add=["orch:running"], remove=["orch", "never-there"])
    assert gh.labels(REPO, n) == ["backend", "orch:running"]
    assert "orch:running" in gh.repo_labels(REPO)
    github_forge.set_labels(REPO, n, add=["orch:running", "orch:done"], remove=["orch:running"])
    assert gh.labels(REPO, n) == ["backend", "orch:running", "orch:done"]   # add wins
    assert gh.count("GET", f"/repos/{REPO}/labels") == 1                   # cached per forge
    assert gh.count("POST", f"/repos/{REPO}/labels") == 2                  # each created once


def test_set_labels_removes_only_labels_the_issue_has(gh, github_forge):
    # The add's answer lists the issue's labels: a label not among them costs no DELETE.
    n = gh.add_issue(REPO, "x", labels=["orch", "orch:running"])
    github_forge.set_labels(REPO, n, add=["orch:done"],
                            remove=["orch:running", "orch", "orch:failed"])
    assert gh.labels(REPO, n) == ["orch:done"]
    deleted = [q.path.rsplit("/", 1)[1] for q in gh.requests_matching("DELETE", "/labels/")]
    assert deleted == ["orch%3Arunning", "orch"]
    # Without anything to add there is no answer to go by: every removal is tried.
    github_forge.set_labels(REPO, n, add=[], remove=["orch:done", "never-there"])
    assert gh.labels(REPO, n) == []
    assert gh.count("DELETE", "/labels/") == 4


# -- retries, timeouts, outages ------------------------------------------------------------

def test_502_twice_then_success(gh, github_forge):
    n = gh.add_issue(REPO, "x")
    gh.inject(Fault(status=502), times=2)
    assert github_forge.get_issue(REPO, n).title == "x"
    assert [q.status for q in gh.requests_matching("GET", f"/repos/{REPO}")][:3] == [502, 502, 200]


def test_secondary_rate_limit_with_retry_after_is_honoured(gh, github_forge):
    n = gh.add_issue(REPO, "x")
    gh.inject(Fault.secondary_rate_limit(retry_after=1))
    t0 = time.monotonic()
    assert github_forge.get_issue(REPO, n).number == n
    assert 0.9 <= time.monotonic() - t0 < 3
    assert gh.requests[0].status == 403


def test_retry_after_is_capped(gh):
    forge = forge_for(gh, max_retry_wait=0.2)
    gh.inject(Fault.secondary_rate_limit(retry_after=120))
    t0 = time.monotonic()
    assert forge.default_branch(REPO) == "trunk"
    assert time.monotonic() - t0 < 2


def test_secondary_rate_limit_without_retry_after_waits_the_cap(gh):
    forge = forge_for(gh, max_retry_wait=0.3)
    gh.inject(Fault.secondary_rate_limit(retry_after=None), times=2)
    t0 = time.monotonic()
    assert forge.default_branch(REPO) == "trunk"
    assert 0.5 <= time.monotonic() - t0 < 3               # two waits of the 0.3 s cap


def test_primary_rate_limit_far_away_fails_fast(gh, github_forge):
    gh.inject(Fault(status=403, message="API rate limit exceeded for user ID 1."))
    t0 = time.monotonic()
    with pytest.raises(WorkError, match="rate limiting"):
        github_forge.default_branch(REPO)
    assert time.monotonic() - t0 < 2


def test_timeout_then_success(gh):
    forge = forge_for(gh, timeout=1)
    n = gh.add_issue(REPO, "slow")
    gh.inject(Fault(delay=2.5), times=1)
    t0 = time.monotonic()
    assert forge.get_issue(REPO, n).title == "slow"
    assert 0.9 <= time.monotonic() - t0 < 2.5


def test_persistent_outage_is_a_work_error_in_bounded_time(gh, github_forge):
    gh.set_outage(502)
    t0 = time.monotonic()
    with pytest.raises(WorkError) as info:
        github_forge.get_issue(REPO, 1)
    assert time.monotonic() - t0 < 3
    assert str(info.value).splitlines()[0] == (
        f"GitHub API at {gh.url} unavailable after 4 attempts: 502 Bad Gateway")
    assert info.value.exit_code == 1
    assert gh.count() == 4


def test_persistent_timeouts(gh):
    forge = forge_for(gh, timeout=1, retries=1)
    gh.inject(Fault(delay=3), times=2)
    t0 = time.monotonic()
    with pytest.raises(WorkError, match=r"unavailable after 2 attempts: timed out"):
        forge.default_branch(REPO)
    assert time.monotonic() - t0 < 4


def test_dropped_connection_then_success(gh, github_forge):
    gh.inject(Fault(drop=True))
    assert github_forge.default_branch(REPO) == "trunk"


def test_connection_refused(github_token):
    server = GitHubServer().start()
    url = server.url
    server.stop()
    forge = GithubForge(GithubSettings(url=url, timeout=1, retries=2), backoff_factor=0.01)
    with pytest.raises(WorkError, match=r"unavailable after 3 attempts: connection refused"):
        forge.default_branch(REPO)


# -- the token -------------------------------------------------------------------------------

def test_missing_token_names_the_variable(github_server, monkeypatch):
    monkeypatch.delenv("ORCH_TEST_NO_TOKEN", raising=False)
    with pytest.raises(UsageError, match=r"\$ORCH_TEST_NO_TOKEN is not set") as info:
        GithubForge(GithubSettings(url=github_server.url, token_env="ORCH_TEST_NO_TOKEN"))
    assert info.value.exit_code == 2


def _chain(exc: BaseException | None) -> str:
    """Everything an exception and its causes would show."""
    out = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out += [str(exc), repr(exc), repr(getattr(exc, "args", ""))]
        for attr in ("data", "headers", "message", "hint"):
            out.append(repr(getattr(exc, attr, "")))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def test_token_never_in_logs_or_errors(gh, github_token, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("github", "urllib3", "orchestrator"):
        caplog.set_level(logging.DEBUG, logger=name)
    forge = forge_for(gh)
    n = gh.add_issue(REPO, "x", labels=["orch"])
    gh.set_permission(REPO, "alice", "write")
    forge.get_issue(REPO, n)
    forge.list_open_issues(REPO, "orch")
    forge.author_permission(REPO, "alice")
    forge.open_pull_request(REPO, head="orch/1-x", base="trunk", title="T", body="B")
    forge.upsert_comment(REPO, n, "hello", None)
    forge.set_labels(REPO, n, ["orch:done"], ["orch"])
    gh.inject(Fault(status=502), times=1)
    gh.inject(Fault.secondary_rate_limit(retry_after=0.1))
    forge.default_branch(REPO)
    errors = []
    for call in (lambda: forge.get_issue(REPO, 99), lambda: forge.get_issue("octo/none", 1)):
        with pytest.raises(UsageError) as info:
            call()
        errors.append(info.value)
    gh.set_outage(503)
    with pytest.raises(WorkError) as info:
        forge_for(gh).get_issue(REPO, n)
    errors.append(info.value)
    gh.set_outage(None)
    # a wrong token: rejected with a message naming the variable, not the value
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrongwrongwrong")
    with pytest.raises(UsageError, match=r"rejected the token in \$GITHUB_TOKEN") as info:
        forge_for(gh).default_branch(REPO)
    errors.append(info.value)

    assert any(r.name.startswith("github") for r in caplog.records)   # PyGithub did log
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for secret in (github_token, "ghp_wrongwrongwrong"):
        assert secret not in logged
        assert secret not in caplog.text
        for e in errors:
            assert secret not in _chain(e)
    assert github_token not in repr(forge) and github_token not in repr(vars(forge))


# -- references ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("octo/app#12", ("octo/app", 12)),
    ("  my-org/my.repo_1#3 ", ("my-org/my.repo_1", 3)),
    ("https://github.com/octo/app/issues/12", ("octo/app", 12)),
    ("https://ghe.example.com/octo/app/issues/7#issuecomment-1", ("octo/app", 7)),
    ("http://127.0.0.1:8080/octo/app/pull/9", ("octo/app", 9)),
])
def test_parse_issue_ref(text, expected):
    assert parse_issue_ref(text) == expected


@pytest.mark.parametrize("text", ["octo/app", "octo#1", "octo/app#x", "octo/app#0", "#3", "",
                                  "a/b/c#1", "https://github.com/octo/app"])
def test_parse_issue_ref_rejects(text):
    with pytest.raises(UsageError, match="not an issue reference") as info:
        parse_issue_ref(text)
    assert "OWNER/NAME#NUMBER" in str(info.value)


# -- the test server itself --------------------------------------------------------------------

def _get(url: str, token: str | None):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_server_requires_the_token(gh):
    assert _get(f"{gh.url}/repos/{REPO}", None)[0] == 401
    assert _get(f"{gh.url}/repos/{REPO}", "wrong")[2]["message"] == "Bad credentials"
    assert _get(f"{gh.url}/repos/{REPO}", gh.token)[0] == 200


def test_server_pagination_and_head_filter(gh, github_forge):
    for i in range(5):
        gh.add_issue(REPO, f"i{i}")
    status, headers, page = _get(f"{gh.url}/repos/{REPO}/issues?per_page=2&page=2", gh.token)
    assert [i["title"] for i in page] == ["i2", "i1"]                  # newest first by default
    assert 'rel="next"' in headers["Link"] and 'rel="prev"' in headers["Link"]
    assert all(u.startswith(gh.url) for u in re.findall(r"<([^>]+)>", headers["Link"]))
    github_forge.open_pull_request(REPO, head="b1", base="trunk", title="t", body="")
    assert len(_get(f"{gh.url}/repos/{REPO}/pulls?head=nope", gh.token)[2]) == 1   # ignored
    assert _get(f"{gh.url}/repos/{REPO}/pulls?head=octo:nope", gh.token)[2] == []
    assert len(_get(f"{gh.url}/repos/{REPO}/pulls?head=octo:b1", gh.token)[2]) == 1
