"""What finding commands costs (issue 11, item 6): a constant number of GitHub API calls
per repository and pass, not one per issue or pull request. Counted against the
GitHub-style server with 500 open issues and 50 open pull requests of orch's, through
the real PyGithub client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from orchestrator.app import App
from orchestrator.forge.github import GithubForge
from orchestrator.lifecycle.conversation import scan_commands

REPO = "octo/app"


def _world(tmp_path, gh):
    gh.add_repo(REPO)
    gh.set_permission(REPO, "alice", "write")
    config = tmp_path / "orch.yml"
    config.write_text(f"github:\n  url: {gh.url}\n  timeout: 5\n  retries: 1\nrepos: [{REPO}]\n")
    app = App(config_path=str(config), inventory_path=None, state_dir=str(tmp_path / "state"))
    for i in range(500):
        gh.add_issue(REPO, f"issue {i}", body="text", labels=[], user="alice")
    for i in range(50):
        branch = f"orch/{i + 1}-issue-{i}"
        gh.add_pull(REPO, branch)
        t = app.store.create(REPO, i + 1, f"issue {i}", "general")
        app.store.start(t.id, host="h1", branch=branch, workspace=f"/w/{t.id}")
        app.store.succeed(t.id, "PR", pr_url=f"{gh.web_url}/{REPO}/pull/{i}", finalized=True)
    return app


def _scan(app, gh) -> int:
    forge = GithubForge(app.settings.github)
    before = len(gh.requests)
    scan = asyncio.run(scan_commands(app, forge, REPO, {}))
    assert scan.reservations == []
    return len(gh.requests) - before


def test_a_pass_finds_commands_with_a_constant_number_of_calls(tmp_path, github_server, github_token):
    gh = github_server
    app = _world(tmp_path, gh)
    name = f"commands:github:{REPO}"
    # The last pass was just now: nothing has changed since.
    app.store.set_cursor(name, (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    quiet = _scan(app, gh)
    assert quiet == 6, [(r.method, r.path) for r in gh.requests[-quiet:]]
    # /user, the repository-wide comment and line-comment lists, the open pull requests,
    # the issues labelled orch:plan (and the repository, read once per pass by any listing)
    paths = sorted(r.path for r in gh.requests[-quiet:])
    assert paths == ["/repos/octo/app", "/repos/octo/app/issues", "/repos/octo/app/issues/comments",
                     "/repos/octo/app/pulls", "/repos/octo/app/pulls/comments", "/user"]

    # Comments on 200 issues since the last pass (none a command): a second page of the
    # comment list; and every pull request of orch's changed in the window (they were all
    # opened in it), so each has its reviews read once: the only per-PR call, and only for
    # orch's PRs that changed since the last pass.
    app.store.set_cursor(name, (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for n in range(60, 260):
        gh.add_comment(REPO, n, "looks good", user="alice")
    busy = _scan(app, gh)
    assert busy == 6 + 1 + 50, busy
    app.store.set_cursor(name, (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert _scan(app, gh) == 6
