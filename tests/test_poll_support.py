"""Quick checks of the small pieces the `orch poll` guarantee tests stand on (the helpers
those tests share are in tests/helpers_poll.py)."""

from __future__ import annotations

import subprocess

import pytest


def test_claimant_alive_tells_dead_local_processes_apart():
    import socket
    import sys

    from orchestrator.lifecycle.claims import claimant_alive, me
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    assert claimant_alive(me()) is True
    assert claimant_alive(f"{host}:{dead}") is False
    assert claimant_alive("some-other-machine:1") is None
    assert claimant_alive(None) is None


def test_serial_forge_fails_fast_once_down_but_remembers_repo_facts():
    import asyncio

    from orchestrator.errors import ForgeUnavailable
    from orchestrator.lifecycle.poll import _SerialForge

    class Flaky:
        kind = "github"
        calls = 0
        down = False

        def get_issue(self, *a):
            self.calls += 1
            raise ForgeUnavailable("GitHub API at X unavailable after 4 attempts: 502")

        def default_branch(self, repo):
            if self.down:
                raise ForgeUnavailable("down")
            return "main"

        def clone_url(self, repo):
            if self.down:
                raise ForgeUnavailable("down")
            return "/srv/git/" + repo

    inner = Flaky()
    forge = _SerialForge(inner)
    asyncio.run(forge.repo_facts("o/r"))
    inner.down = True
    with pytest.raises(ForgeUnavailable):
        forge.get_issue("o/r", 1)
    with pytest.raises(ForgeUnavailable):
        forge.get_issue("o/r", 2)
    assert inner.calls == 1, "the second call did not wait out a second round of retries"
    assert forge.default_branch("o/r") == "main" and forge.clone_url("o/r") == "/srv/git/o/r"
    with pytest.raises(ForgeUnavailable):
        forge.default_branch("o/other")          # never read: fails fast like the rest
    assert forge.kind == "github"


def test_previous_hosts_are_the_lost_and_failed_starts_only():
    from orchestrator.core.models import Task
    from orchestrator.lifecycle.poll import _previous_hosts
    t = Task(id="abcd1234", repo="o/r", issue=1, title="t", specialty="backend", history=[
        {"to": "queued", "reason": "created"},
        {"to": "queued", "reason": "lost: host h1 unreachable", "previous": {"host": "h1"}},
        {"to": "queued", "reason": "start failed: could not start", "previous": {"host": "h2"}},
        {"to": "queued", "reason": "retried by user", "previous": {"host": "h3"}},
    ])
    assert _previous_hosts(t) == {"h1", "h2"}


def test_start_grace_comes_from_the_environment(monkeypatch):
    from orchestrator.app import App
    from orchestrator.errors import UsageError
    from orchestrator.lifecycle.reconcile import START_GRACE_SECONDS, start_grace_seconds
    app = App()
    app.__dict__["settings"] = __import__("orchestrator.config.settings", fromlist=["Settings"]).Settings()
    monkeypatch.delenv("ORCH_START_GRACE", raising=False)
    assert start_grace_seconds(app) == START_GRACE_SECONDS
    monkeypatch.setenv("ORCH_START_GRACE", "7s")
    assert start_grace_seconds(app) == 7.0
    monkeypatch.setenv("ORCH_START_GRACE", "soon")
    with pytest.raises(UsageError):
        start_grace_seconds(app)
