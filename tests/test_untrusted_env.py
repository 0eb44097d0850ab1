"""Issue 8 item 2: a job gets a small, explicit environment on every transport; a GitHub
issue runs on this machine (`connection: local`) only when the operator opted in.

The job's test command dumps its environment to a file (`env`), read back here: orch's own
environment held GITHUB_TOKEN (the token the GitHub test server accepts), SSH_AUTH_SOCK
and another secret, none of which may reach the job; a name listed in agent.env_pass
does. On an sshd host, the login session's own variables (SSH_CONNECTION, ...) stay out
too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from orchestrator.job import remote
from tests.fixtures_world import REPO, STANDIN

# What a job may see besides JOB_ENV_BASE and agent.env_pass: the shell's own (PWD, SHLVL,
# _, OLDPWD) and what job.sh and its test step set themselves.
JOB_OWN = {"PWD", "SHLVL", "_", "OLDPWD", "CI", "GIT_TERMINAL_PROMPT"}


def _env_names(dump: Path) -> dict[str, str]:
    out = {}
    for line in dump.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.replace("_", "a").isalnum():
            out[name] = value
    return out


def _config(path: Path, github_url: str, clone_url: str, dump: Path, **extra) -> Path:
    agent = {"command": STANDIN, "timeout": "2m", "env_pass": ["ORCH_TEST_PASSED"]}
    if os.geteuid() == 0:
        agent["allow_root"] = True
    data = {"github": {"url": github_url, "timeout": 5, "retries": 1}, "repos": [REPO],
            "repo_urls": {REPO: clone_url}, "agent": agent,
            "tests": {"command": f"env > {dump}", "max_fix_attempts": 0},
            "git": {"author": "orch-bot <orch-bot@example.com>"}}
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    return path


def _orch(root: Path, config: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(GITHUB_TOKEN=token, SSH_AUTH_SOCK="/tmp/orch-test-agent.sock",
               ORCH_TEST_SECRET="operator-only", ORCH_TEST_PASSED="yes",
               ORCH_CONFIG=str(config), ORCH_HOME=str(root / "state"), COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_job_env_names():
    from orchestrator.config.settings import Settings
    s = Settings()
    s.agent.env_pass = ["ANTHROPIC_API_KEY", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "bad name"]
    names = remote.job_env(s)
    assert names[:len(remote.JOB_ENV_BASE)] == remote.JOB_ENV_BASE
    assert "ANTHROPIC_API_KEY" in names
    assert not {"GITHUB_TOKEN", "SSH_AUTH_SOCK", "bad name"} & set(names)
    assert remote.env_command(("PATH", "X_1")) == 'env -i ${PATH+"PATH=$PATH"} ${X_1+"X_1=$X_1"}'


def test_a_github_issue_on_the_local_host_needs_the_opt_in_and_its_job_gets_no_token(
        github_server, github_token, git_remote, tmp_path):
    gh = github_server
    gh.add_repo(REPO, clone_url=git_remote.url)
    gh.set_permission(REPO, "alice", "write")
    n = gh.add_issue(REPO, "Add hello", body="orch-standin: write hello.txt hi\n",
                     labels=["orch"], user="alice")
    dump = tmp_path / "env.txt"
    config = _config(tmp_path / "orch.yml", gh.url, git_remote.url, dump)

    refused = _orch(tmp_path, config, github_token, "dispatch", f"{REPO}#{n}")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "allow_local_github: true" in refused.stderr and "SSH keys" in refused.stderr
    assert not (tmp_path / "state" / "state.json").exists() or "orch/" not in \
        (tmp_path / "state" / "state.json").read_text()
    assert gh.comments(REPO, n) == [] and gh.count("POST") == 0

    hosts = _orch(tmp_path, config, github_token, "hosts")
    assert "local: jobs run on this machine as" in hosts.stdout, hosts.stdout
    assert "unless orch.yml sets allow_local_github: true" in hosts.stdout

    _config(tmp_path / "orch.yml", gh.url, git_remote.url, dump, allow_local_github=True)
    ran = _orch(tmp_path, config, github_token, "dispatch", f"{REPO}#{n}")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "may take this GitHub issue" in ran.stderr
    env = _env_names(dump)
    assert "GITHUB_TOKEN" not in env and github_token not in dump.read_text()
    assert "SSH_AUTH_SOCK" not in env and "ORCH_TEST_SECRET" not in env
    assert env.get("ORCH_TEST_PASSED") == "yes" and env.get("PATH") and env.get("HOME")
    assert set(env) <= set(remote.JOB_ENV_BASE) | {"ORCH_TEST_PASSED"} | JOB_OWN, sorted(env)
    assert len(gh.pulls(REPO)) == 1


def test_a_job_on_an_ssh_host_gets_only_the_explicit_environment(make_world, tmp_path):
    dump = tmp_path / "ssh-env.txt"
    w = make_world(hosts=1, tests={"command": f"env > {dump}", "max_fix_attempts": 0},
                   agent={"env_pass": ["LANG"]})
    n = w.issue("Add hello", "orch-standin: write hello.txt hi\n")
    w.env_extra.update(ORCH_TEST_SECRET="operator-only")
    r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    assert r.returncode == 0, r.stderr
    env = _env_names(dump)
    assert env.get("PATH") and env.get("HOME")
    for leaked in ("SSH_CONNECTION", "SSH_CLIENT", "GITHUB_TOKEN", "ORCH_TEST_SECRET", "MAIL"):
        assert leaked not in env, leaked
    assert set(env) <= set(remote.JOB_ENV_BASE) | JOB_OWN, sorted(env)


def test_agent_env_pass_never_takes_the_token_or_the_agent_socket(tmp_path):
    from orchestrator.config.load import load_settings
    from orchestrator.errors import ConfigError
    for text, line, words in [
        ("agent:\n  env_pass: [LANG, SSH_AUTH_SOCK]\n", 2, "SSH_AUTH_SOCK is never passed"),
        ("agent:\n  env_pass:\n    - LANG\n    - GITHUB_TOKEN\n", 4, "GITHUB_TOKEN holds orch's GitHub token"),
        ("agent:\n  env_pass: [MY_TOKEN]\ngithub:\n  token_env: MY_TOKEN\n", 2, "MY_TOKEN holds"),
        ("allow_local_github: sure\n", 1, "true or false"),
    ]:
        path = tmp_path / "orch.yml"
        path.write_text(text)
        try:
            load_settings(path)
        except ConfigError as exc:
            assert exc.line == line and words in str(exc), (text, str(exc))
        else:
            raise AssertionError(f"accepted: {text!r}")
    path.write_text("agent:\n  env_pass: [ANTHROPIC_API_KEY]\nallow_local_github: true\n")
    s = load_settings(path)
    assert s.agent.env_pass == ["ANTHROPIC_API_KEY"] and s.allow_local_github is True
