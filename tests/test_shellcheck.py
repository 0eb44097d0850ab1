"""shellcheck -s sh on every script orch sends to a host, as rendered (issue 9 item 9):
job.sh (playbooks/dispatch.yml), the bootstrap script and each of its checks
(playbooks/bootstrap.yml), and the probe (fleet/facts.py). Clean means clean: a finding
is fixed, or disabled inline where it is meant, with a comment saying why.

shellcheck is a test tool, not a host requirement; without it these tests skip, except
under CI=true, where a missing shellcheck is a failure (CI must run them).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from orchestrator.config.settings import Settings
from orchestrator.core.models import Host
from orchestrator.fleet import checks as ck
from orchestrator.fleet import facts
from orchestrator.job.playbook import JobSpec, render_job

SHELLCHECK = shutil.which("shellcheck")
if SHELLCHECK is None and os.environ.get("CI") == "true":
    raise RuntimeError("shellcheck is not installed, and CI=true: install it (apt-get install "
                       "shellcheck); these tests must run in CI")
pytestmark = [pytest.mark.integration,   # an external tool, like the tier's sshd and git
              pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")]

HOST = Host(name="h", address="a", workspace_root="~/orch-work", agent="npx @anthropic-ai/claude-code")


def shellcheck(name: str, script: str) -> None:
    proc = subprocess.run([SHELLCHECK, "-s", "sh", "-f", "gcc", "-"], input=script,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"shellcheck on {name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("variant", [
    {},
    {"use_mirror": False, "max_cost_usd": None, "model": "m", "test_command": "make test",
     "agent_env": {"A": "x y", "B": "$(id)"}, "agent_command": "npx '@anthropic-ai/claude-code'",
     "base_branch": "main", "credential_names": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")},
    {"git_via": "orch", "credential_names": ("ANTHROPIC_API_KEY",)},
    {"mode": "integrate", "merge_branches": ("orch/1-x--1-backend", "orch/1-x--2-frontend"),
     "base_branch": "orch/1-x", "base_fallback": "main", "run_tests": True},
    {"mode": "plan", "run_tests": False, "json_schema": '{"type": "object"}'},
], ids=["defaults", "everything-set", "via-orch", "split-integrate", "split-plan"])
def test_job_sh(variant):
    spec = JobSpec(task_id="abcd1234", workspace="~/orch-work/abcd1234", clone_url="u",
                   branch="orch/1-x", commit_message="m", **variant)
    shellcheck("job.sh", render_job(spec))


def test_bootstrap_script_and_every_check():
    playbook = ck.load_playbook(ck.playbook_path(Settings()))
    for repos in ([], [ck.RepoTarget("o/r", "https://x/o/r.git")]):
        script, _ = ck.render_script(playbook, HOST, Settings(), repos)
        shellcheck("the bootstrap script", script)
        for check in ck.render_checks(playbook, HOST, Settings(), repos):
            shellcheck(f"bootstrap check {check.name}", check.snippet)


def test_probe_script():
    for cached in (None, "/usr/bin/claude:1:2:3"):
        shellcheck("the probe", facts.probe_script(HOST, Settings(), cached))
