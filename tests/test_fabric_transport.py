"""transport/fabric.py against real sshd: as strict as the asyncssh path, and the ssh
config (aliases, ProxyJump, HostKeyAlias) honoured. Client-side files only: the shared
fleet's hosts are not touched."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading

import pytest

from orchestrator.core.models import Host
from orchestrator.errors import HostUnreachable
from orchestrator.transport.fabric import open_remote


def _ssh(fleet, tmp_path, *, config: str | None = "fleet", known: str | None = None, keys=None):
    settings = fleet.settings(connect_timeout=5)
    ssh = settings.ssh
    return dataclasses.replace(
        ssh, config=str(fleet.ssh_config) if config == "fleet" else config,
        known_hosts=known or ssh.known_hosts,
        client_keys=ssh.client_keys if keys is None else keys)


def _whoami(host: Host, ssh) -> str:
    with open_remote(host, ssh) as remote:
        return remote.run("echo ok-$(id -u)").stdout.strip()


def test_an_alias_of_the_ssh_config_is_honoured_and_only_that_config(ssh_fleet, tmp_path):
    alias = Host(name="h1", address="h1")                 # no port, no user: all from the config
    assert _whoami(alias, _ssh(ssh_fleet, tmp_path, keys=[])) == f"ok-{os.geteuid()}"
    with pytest.raises(HostUnreachable) as err:            # no ssh config: "h1" is no host name
        _whoami(alias, _ssh(ssh_fleet, tmp_path, config=None, keys=[]))
    assert err.value.reason in ("dns", "other")


@pytest.fixture
def ssh_agent(ssh_fleet, tmp_path, monkeypatch):
    """An ssh-agent holding the fleet's (authorized) client key, in SSH_AUTH_SOCK."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(ssh_fleet.client_key)], env=env, check=True,
                       capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_only_the_configured_key_is_offered_never_the_agent(ssh_fleet, tmp_path, ssh_agent):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    h = ssh_fleet.host("h1")
    base = Host(name="h1", address=h.address, port=h.port, user=ssh_fleet.user)
    no_config = _ssh(ssh_fleet, tmp_path, config=None, keys=[])
    # Nothing configured: the agent may serve (this is what would let a wrong key pass).
    assert _whoami(base, no_config).startswith("ok-")
    # An identity configured: exactly it, and it is not authorized: refused.
    with pytest.raises(HostUnreachable) as err:
        _whoami(dataclasses.replace(base, identity_file=str(other)), no_config)
    assert err.value.reason == "auth"
    with pytest.raises(HostUnreachable) as err:
        _whoami(dataclasses.replace(base, identity_file=str(tmp_path / "typo")), no_config)
    assert err.value.reason == "auth" and "does not exist" in err.value.detail


def test_the_agent_is_never_forwarded_even_when_the_ssh_config_asks(ssh_fleet, tmp_path, ssh_agent):
    h = ssh_fleet.host("h1")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host fwd\n    HostName {h.address}\n    Port {h.port}\n"
                      f"    User {ssh_fleet.user}\n    ForwardAgent yes\n")
    ssh = _ssh(ssh_fleet, tmp_path, config=str(config), keys=[])
    with open_remote(Host(name="fwd", address="fwd"), ssh) as remote:   # logs in with the agent
        seen = remote.run('echo "sock=${SSH_AUTH_SOCK:-none}"').stdout.strip()
    assert seen == "sock=none"


def _jump_config(fleet, tmp_path, *, extra: str = "") -> str:
    h1, h2 = fleet.host("h1"), fleet.host("h2")
    path = tmp_path / "ssh_config"
    path.write_text(f"""\
Host jumped
    HostName {h2.address}
    Port {h2.port}
    User {fleet.user}
    IdentityFile {fleet.client_key}
    ProxyJump hop
{extra}
Host hop
    HostName {h1.address}
    Port {h1.port}
    User {fleet.user}
    IdentityFile {fleet.client_key}
""")
    return str(path)


def test_proxyjump_works_and_every_hop_is_checked_strictly(ssh_fleet, tmp_path):
    config = _jump_config(ssh_fleet, tmp_path)
    target = Host(name="jumped", address="jumped")
    assert _whoami(target, _ssh(ssh_fleet, tmp_path, config=config, keys=[])).startswith("ok-")
    without_hop = ssh_fleet.write_known_hosts(tmp_path / "kh", names=["h2"])
    before = without_hop.read_bytes()
    with pytest.raises(HostUnreachable) as err:
        _whoami(target, _ssh(ssh_fleet, tmp_path, config=config, known=str(without_hop), keys=[]))
    h1 = ssh_fleet.host("h1")
    assert err.value.reason == "hostkey-unknown"
    assert f"[{h1.address}]:{h1.port}" in err.value.detail     # the hop's key is the unknown one
    assert without_hop.read_bytes() == before                   # and it was not recorded


def test_host_key_alias_names_the_known_hosts_entry(ssh_fleet, tmp_path):
    h3 = ssh_fleet.host("h3")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host box\n    HostName {h3.address}\n    Port {h3.port}\n"
                      f"    User {ssh_fleet.user}\n    HostKeyAlias box-key\n")
    known = tmp_path / "kh"
    known.write_text(f"[box-key]:{h3.port} {h3.host_key_line}\n")
    box = Host(name="box", address="box")
    ssh = _ssh(ssh_fleet, tmp_path, config=str(config), known=str(known))
    assert _whoami(box, ssh).startswith("ok-")
    known.write_text(f"[box-key]:{h3.port} {ssh_fleet.host('h4').host_key_line}\n")
    with pytest.raises(HostUnreachable) as err:
        _whoami(box, ssh)
    assert err.value.reason == "hostkey-changed" and "orch trust --replace box" in err.value.hint


def test_a_link_that_drops_mid_command_is_reported_never_silently_reopened(make_ssh_fleet):
    fleet = make_ssh_fleet(1, prefix="d")
    host = fleet.inventory()[0]
    remote = open_remote(host, fleet.settings(connect_timeout=5).ssh)
    try:
        assert remote.run("echo up").stdout.strip() == "up"
        stopper = threading.Timer(0.5, fleet.stop, args=("d1",))
        stopper.start()
        with pytest.raises(HostUnreachable) as err:
            remote.run("sleep 30", timeout=60)
        stopper.join()
        assert err.value.reason == "disconnected"
        fleet.start("d1")                         # back, but this run does not reconnect
        with pytest.raises(HostUnreachable) as err:
            remote.run("echo again")
        assert err.value.reason == "disconnected"
    finally:
        remote.close()


def test_a_host_that_refuses_is_refused_and_an_unknown_name_is_dns(ssh_fleet, tmp_path):
    h = ssh_fleet.host("h5")
    closed = Host(name="gone", address=h.address, port=1, user=ssh_fleet.user)
    with pytest.raises(HostUnreachable) as err:
        _whoami(closed, _ssh(ssh_fleet, tmp_path, config=None))
    assert err.value.reason == "refused" and "sshd is not running" in err.value.hint
    nowhere = Host(name="nowhere", address="no-such-host.invalid", port=22)
    with pytest.raises(HostUnreachable) as err:
        _whoami(nowhere, _ssh(ssh_fleet, tmp_path, config=None))
    assert err.value.reason == "dns"
