"""Issue 8 item 9 (orch's part): a GitHub URL that would send the token in clear and clone
URLs with credentials in them are refused with file:line; orch's state directory, its
log copies and its lock files are the user's alone (0700 / 0600).

(The hosts' side of item 9, bootstrap's workspace_root check and the agent's
--strict-mcp-config flag, belongs to the remote job's owner: playbooks/, fleet/.)
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.load import load_settings
from orchestrator.errors import ConfigError


@pytest.mark.parametrize("text, line, words", [
    ("github:\n  url: http://ghe.example.com/api/v3\n", 2, "would send the GitHub token in clear"),
    ("github:\n  url: http://10.0.0.5/api/v3\n", 2, "in clear"),
    ("github:\n  url: https://bot:pw@ghe.example.com/api/v3\n", 2, "holds credentials"),
    ("repo_urls:\n  octo/app: https://ghp_abc123@github.com/octo/app.git\n", 2, "credential helper"),
    ("repo_urls:\n  octo/app: https://x-access-token:T0K3N@github.com/octo/app.git\n", 2,
     "holds credentials"),
    ("repo_urls:\n  octo/app: ssh://git:secret@git.example.com/octo/app.git\n", 2, "or an SSH key"),
    # agent.credentials (issue 12): the agent never gets the GitHub token, nor the ssh-agent
    ("agent:\n  credentials:\n    GH: GITHUB_TOKEN\n", 3, "GITHUB_TOKEN holds orch's GitHub token"),
    ("github:\n  token_env: T\nagent:\n  credentials: {ANTHROPIC_API_KEY: T}\n", 4, "T holds orch's"),
    ("agent:\n  credentials:\n    SSH_AUTH_SOCK: X\n", 3, "SSH_AUTH_SOCK is never passed"),
    ("agent:\n  credentials:\n    ANTHROPIC_API_KEY: sk-ant-1\n", 3, "not an environment variable name"),
])
def test_clear_text_tokens_and_embedded_credentials_are_refused(tmp_path, text, line, words):
    path = tmp_path / "orch.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.line == line and words in str(caught.value), str(caught.value)
    assert "hint:" in str(caught.value)


def test_https_loopback_http_and_plain_clone_urls_are_fine(tmp_path):
    path = tmp_path / "orch.yml"
    path.write_text("github:\n  url: http://127.0.0.1:8080/api/v3\n"
                    "repo_urls:\n  octo/a: git@github.com:octo/a.git\n"
                    "  octo/b: https://github.com/octo/b.git\n"
                    "  octo/c: ssh://git@git.example.com/octo/c.git\n  octo/d: /srv/git/d.git\n")
    s = load_settings(path)
    assert s.github.url == "http://127.0.0.1:8080/api/v3" and len(s.repo_urls) == 4
    for ok in ("https://ghe.example.com/api/v3", "http://localhost:3000/api/v3", "http://[::1]/api/v3"):
        path.write_text(f"github:\n  url: {ok}\n")
        assert load_settings(path).github.url == ok


def test_the_cli_refuses_a_clear_text_github_url_with_exit_2(tmp_path):
    (tmp_path / "orch.yml").write_text("github:\n  url: http://github.example.com/api/v3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    r = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(tmp_path / "orch.yml"),
                        "--state-dir", str(tmp_path / "state"), "poll"],
                       capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "orch.yml:2: github.url:" in r.stderr, r.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_logs_and_locks_are_private(tmp_path):
    """Through the real CLI with a permissive umask: what orch creates is 0700/0600."""
    state = tmp_path / "deep" / "state"
    issue = tmp_path / "fix.md"
    issue.write_text("---\ntitle: Add hello\n---\norch-standin: write hello.txt hi\n")
    repo = tmp_path / "app"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("x\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "seed"], check=True)
    config = tmp_path / "orch.yml"
    standin = Path(sys.executable).parent / "orch-standin-agent"
    config.write_text(f"agent:\n  command: {standin}\n  allow_root: {str(os.geteuid() == 0).lower()}\n"
                      "tests:\n  command: 'true'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    r = subprocess.run(f"umask 000; exec {sys.executable} -m orchestrator --config {config} "
                       f"--state-dir {state} dispatch {issue} --repo {repo} --json",
                       shell=True, capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _mode(state) == 0o700
    assert _mode(state / "logs") == 0o700
    for name in ("state.json", "state.lock", "forge.lock"):
        assert _mode(state / name) == 0o600, name
    [log] = list((state / "logs").iterdir())
    assert _mode(log) == 0o600
    r = subprocess.run(f"umask 000; exec {sys.executable} -m orchestrator --config {config} "
                       f"--state-dir {state} poll", shell=True, capture_output=True, text=True,
                       env=env, timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert _mode(state / "poll.lock") == 0o600, r.stderr
