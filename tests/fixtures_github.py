"""Fixtures for the GitHub edge: a real HTTP server that PyGithub talks to (tests/ghserver.py).

Loaded as a pytest plugin by the root conftest.py. Usage::

    def test_poll_opens_a_pr(github_server, github_token, tmp_path):
        github_server.add_repo("octo/app", clone_url=str(bare))
        github_server.add_issue("octo/app", "Fix the thing", labels=["orch"], user="alice")
        github_server.set_permission("octo/app", "alice", "write")
        # orch.yml: github: {url: <github_server.url>}; $GITHUB_TOKEN is already set
        ...

`github_settings` gives a GithubSettings pointing at the server with short timeouts, and
`github_forge` a GithubForge on it whose retry waits are tiny (tests stay fast).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ghserver import Fault, GitHubServer

__all__ = ["Fault", "GitHubServer", "TOKEN_ENV"]   # Fault re-exported for tests' convenience

TOKEN_ENV = "GITHUB_TOKEN"


@pytest.fixture
def github_server() -> Iterator[GitHubServer]:
    """A fresh, started server per test (starting one takes about a millisecond)."""
    server = GitHubServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def github_token(github_server: GitHubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Puts the server's token in $GITHUB_TOKEN (inherited by subprocesses) and returns it."""
    monkeypatch.setenv(TOKEN_ENV, github_server.token)
    return github_server.token


@pytest.fixture
def github_settings(github_server: GitHubServer, github_token: str):
    """GithubSettings for the server: 2 s timeout, 3 retries."""
    from orchestrator.config.settings import GithubSettings
    return GithubSettings(url=github_server.url, token_env=TOKEN_ENV, timeout=2.0, retries=3)


@pytest.fixture
def github_forge(github_settings):
    """A GithubForge on the server with near-zero backoff and a 2 s cap on Retry-After."""
    from orchestrator.forge.github import GithubForge
    return GithubForge(github_settings, backoff_factor=0.01, max_retry_wait=2.0)
