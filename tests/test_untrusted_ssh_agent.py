"""Issue 8 item 7: the operator's ssh-agent never reaches a host, whatever ~/.ssh/config says.

With `ForwardAgent yes` in the ssh config and a real ssh-agent holding the fleet's key in
$SSH_AUTH_SOCK, a command on a real sshd host sees no SSH_AUTH_SOCK and cannot list the
agent's keys (a job there could otherwise use them to log in anywhere the operator can,
for as long as orch's connection is open). (X11 forwarding is turned off the same way;
the test sshd refuses X11, so that part is not exercised here.)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.fleet.pool import Fleet

SSH_AGENT = shutil.which("ssh-agent")
SSH_ADD = shutil.which("ssh-add")


@pytest.fixture
def agent_socket(make_ssh_fleet, tmp_path, monkeypatch):
    if not SSH_AGENT or not SSH_ADD:
        pytest.skip("ssh-agent/ssh-add not installed")
    sock = Path("/tmp") / f"orch-agent-{os.getpid()}-{time.monotonic_ns()}.sock"
    proc = subprocess.Popen([SSH_AGENT, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        sock.unlink(missing_ok=True)


def test_agent_and_x11_forwarding_are_off_whatever_the_ssh_config_says(make_ssh_fleet, agent_socket,
                                                                       tmp_path):
    fleet = make_ssh_fleet(1)
    added = subprocess.run([SSH_ADD, str(fleet.client_key)], capture_output=True, text=True,
                           env={**os.environ, "SSH_AUTH_SOCK": str(agent_socket)})
    assert added.returncode == 0, added.stderr
    config = tmp_path / "ssh_config"
    config.write_text(fleet.ssh_config.read_text()
                      + "\nHost *\n    ForwardAgent yes\n    ForwardX11 yes\n"
                        "    ForwardX11Trusted yes\n")
    settings = fleet.settings(config=str(config))
    hosts = fleet.inventory(via_alias=True)

    async def on_host() -> str:
        async with Fleet(hosts, settings) as f:
            conn = await f.connection(hosts[0].name)
            result = await conn.run('echo "sock=${SSH_AUTH_SOCK:-}"; ssh-add -l; echo "rc=$?"')
            return result.stdout + result.stderr
    out = asyncio.run(on_host())
    assert "sock=\n" in out, f"the agent socket reached the host:\n{out}"
    assert "ED25519" not in out and "rc=0" not in out, f"the host could list the agent's keys:\n{out}"
