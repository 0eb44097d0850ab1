"""`orch provision` for a login user who is not root and whose sudo asks a password.

Needs root (it creates the user and a sudoers rule) and sudo; skipped otherwise. The
host's sessions get a PATH without git (sshd's SetEnv), and sudo's secure_path for the
user is the same directory, where `apt-get` is a stand-in that records "<uid> <args>"
and links the real git in: the package-manager step is observable, and this machine's
git is never reinstalled (tests/helpers_provision.py says why).

The password goes through the real `--ask-sudo-pass` path: orch runs on a pseudo-terminal
(its controlling terminal, as in a person's shell) and the test types the password at
getpass's prompt.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.fixtures_ssh import SSHFleet
from tests.helpers_provision import SudoUser, agent_file, fakebin, remove_git, snapshot, wipe

pytestmark = [
    pytest.mark.integration,   # its own sshd (SSHFleet with another user), which tests/tiers.py cannot see
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a user and a sudoers rule: needs root"),
    pytest.mark.skipif(shutil.which("sudo") is None or shutil.which("useradd") is None,
                       reason="needs sudo and useradd (scripts/test-deps.sh installs sudo)"),
]

PROMPT = b"sudo password"


@pytest.fixture(scope="module")
def sudo_world():
    root = Path(tempfile.mkdtemp(prefix="orch-sudo-"))
    root.chmod(0o755)                       # the test user's sshd reads authorized_keys here
    log = root / "apt.log"
    fake = fakebin(root / "fakebin", log)
    user = SudoUser(fake)
    fleet = None
    try:
        fleet = SSHFleet(root / "fleet", 1, "s", user=user.name)
        fleet.authorized_keys.chmod(0o644)
        host = fleet.hosts[0]
        with open(host.config_path, "a") as f:
            f.write(f"SetEnv PATH={fake}\n")
        fleet.stop(host.name)
        fleet.start(host.name)
        agent = agent_file(root / "dist" / "claude", "2.1.197")
        yield {"root": root, "fleet": fleet, "user": user, "log": log, "fake": fake, "agent": agent}
    finally:
        if fleet is not None:
            fleet.close()
        user.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def world(sudo_world, tmp_path):
    w = dict(sudo_world, tmp=tmp_path)
    wipe(w["user"].home)
    remove_git(w["fake"])
    w["log"].write_text("")
    Path(str(w["log"]) + ".ps").unlink(missing_ok=True)
    w["fleet"].write_inventory(tmp_path / "hosts.yml", extra={
        "s1": {"agent": "~/.local/bin/claude", "workspace_root": "~/orch-work"}})
    w["fleet"].write_config(tmp_path / "orch.yml", provision={"agent_source": str(w["agent"])})
    return w


def orch_argv(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "--config", str(tmp / "orch.yml"),
            "--inventory", str(tmp / "hosts.yml"), "--state-dir", str(tmp / "state"), *args]


def clean_env() -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200")
    for k in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME"):
        env.pop(k, None)
    return env


def run_on_tty(tmp: Path, *args: str, answer: str | None, timeout: float = 120) -> dict:
    """orch with a pseudo-terminal as its controlling terminal (stdout/stderr to files);
    `answer` is typed when the password prompt shows. Returns rc, tty text, stdout, stderr."""
    out, err = tmp / "tty.out", tmp / "tty.err"
    argv, env = orch_argv(tmp, *args), clean_env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        try:
            os.chdir(tmp)
            o = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            e = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(o, 1)
            os.dup2(e, 2)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    seen, answered, status = b"", 0, None
    deadline = time.monotonic() + timeout
    try:
        while status is None:
            if time.monotonic() > deadline:
                pytest.fail(f"orch did not finish within {timeout}s; the terminal showed {seen!r}")
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:      # EIO: the child closed its side
                    chunk = b""
                seen += chunk
                if answer is not None and seen.count(PROMPT) > answered:
                    os.write(fd, answer.encode() + b"\n")
                    answered += 1
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(code)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return {"rc": status, "tty": seen.decode(errors="replace"), "stdout": out.read_text(),
            "stderr": err.read_text(), "prompts": seen.count(PROMPT)}


def steps_of(entry: dict) -> dict[str, dict]:
    return {s["step"]: s for s in entry["steps"]}


def test_missing_git_is_installed_through_sudo_with_the_password_asked_once(world):
    tmp, user = world["tmp"], world["user"]
    before = subprocess.run(orch_argv(tmp, "bootstrap", "--json"), capture_output=True, text=True,
                            env=clean_env(), timeout=120)
    assert before.returncode == 1
    assert not json.loads(before.stdout)[0]["checks"][0]["ok"]   # git: not on this PATH
    result = run_on_tty(tmp, "provision", "--ask-sudo-pass", "--json", answer=user.password)
    assert result["rc"] == 0, result
    assert result["prompts"] == 1
    entry = json.loads(result["stdout"])[0]
    assert entry["ok"] is True
    git = steps_of(entry)["git"]
    assert git["status"] == "changed" and "installed with apt-get" in git["detail"]
    assert world["log"].read_text().splitlines() == ["0 install -y -q git"]   # as root, once
    assert entry["changed"] == ["git", "agent", "workspace", "git-identity"]
    home = user.home
    assert (home / ".local" / "bin" / "claude").read_bytes() == world["agent"].read_bytes()
    ws = home / "orch-work"
    uid = int(subprocess.run(["id", "-u", user.name], capture_output=True, text=True).stdout)
    assert ws.stat().st_uid == uid and ws.stat().st_mode & 0o777 == 0o700
    # The password went nowhere but the channel: not in any process's command line on the
    # host while sudo ran the install, nor in any output, state or host file.
    secret = user.password.encode()
    argv_seen = Path(str(world["log"]) + ".ps").read_bytes()
    assert b"apt-get install -y -q git" in argv_seen and b"sudo -S -p" in argv_seen
    assert secret not in argv_seen
    assert secret not in (result["stdout"] + result["stderr"]).encode()
    for root in (tmp / "state", home):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
    # Git is there now: a run without the password needs no sudo and changes nothing.
    again = subprocess.run(orch_argv(tmp, "provision", "--json"), capture_output=True, text=True,
                           env=clean_env(), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)[0]["changed"] == []
    assert world["log"].read_text().splitlines() == ["0 install -y -q git"]


def test_without_the_password_the_git_step_fails_with_the_fix_and_the_rest_is_done(world):
    tmp = world["tmp"]
    proc = subprocess.run(orch_argv(tmp, "provision", "--json"), capture_output=True, text=True,
                          env=clean_env(), timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    entry = json.loads(proc.stdout)[0]
    git = steps_of(entry)["git"]
    assert git["status"] == "failed" and "asks for a password" in git["detail"]
    assert "--ask-sudo-pass" in git["fix"] and "sudo apt-get install git" in git["fix"]
    assert steps_of(entry)["git-identity"]["status"] == "skipped"
    assert entry["changed"] == ["agent", "workspace"]
    assert world["log"].read_text() == ""


def test_a_wrong_password_fails_the_step_and_installs_nothing(world):
    result = run_on_tty(world["tmp"], "provision", "--ask-sudo-pass", "--json", answer="not it")
    assert result["rc"] == 1, result
    git = steps_of(json.loads(result["stdout"])[0])["git"]
    assert git["status"] == "failed" and "refused the password" in git["detail"]
    assert world["log"].read_text() == ""


def test_ask_sudo_pass_without_a_terminal_is_bad_input_and_changes_nothing(world):
    home = world["user"].home
    before = snapshot(home)
    proc = subprocess.run(orch_argv(world["tmp"], "provision", "--ask-sudo-pass"),
                          capture_output=True, text=True, env=clean_env(), timeout=120,
                          stdin=subprocess.DEVNULL, start_new_session=True)   # no controlling tty
    assert proc.returncode == 2
    assert "terminal" in proc.stderr and "hint:" in proc.stderr
    assert snapshot(home) == before
    assert world["log"].read_text() == ""


def test_check_predicts_the_sudo_step_without_running_it(world):
    tmp = world["tmp"]
    proc = subprocess.run(orch_argv(tmp, "provision", "--check", "--json"), capture_output=True,
                          text=True, env=clean_env(), timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1          # the real run would fail: sudo wants a password
    assert "asks for a password" in steps_of(json.loads(proc.stdout)[0])["git"]["detail"]
    result = run_on_tty(tmp, "provision", "--check", "--ask-sudo-pass", "--json", answer="unused")
    assert result["rc"] == 0 and result["prompts"] == 0   # nothing runs as root: no prompt
    git = steps_of(json.loads(result["stdout"])[0])["git"]
    assert git["status"] == "changed" and git["detail"] == "would install git: sudo apt-get install git"
    assert world["log"].read_text() == ""
