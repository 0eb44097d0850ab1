"""orch reads each ssh config file once per run and replays its tokens per host
(transport/ssh.py `_tokenize`, `_config_class`): the result must be exactly what
asyncssh's own parser gives, for every kind of line, match and mistake."""

from __future__ import annotations

import getpass
import os
import time
from pathlib import Path

import pytest
from asyncssh.config import SSHClientConfig

from orchestrator.config.settings import SSHSettings
from orchestrator.core.models import Host
from orchestrator.transport import ssh as ssh_mod

CONFIG = """\
# a comment, then a blank line

Host alias1
    HostName 10.0.0.1
    Port 2201
    User alice
    IdentityFile ~/.ssh/id_one
    IdentityFile %d/keys/%h-%r
    IdentitiesOnly yes

Host alias2 alias3
    HostName=10.0.0.2
    Port = 2202
    SendEnv LANG LC_*
    SendEnv EXTRA
    ProxyCommand ssh -W %h:%p "jump host"

Host !alias3 alias*
    ServerAliveInterval 7
    User bob

Match originalhost alias2 user carol
    Port 2999

Match host 10.0.0.1
    HostKeyAlias one.example
    ConnectTimeout 4

Host jumped
    HostName 10.0.0.9
    ProxyJump alias1

Host "quoted name"
    User "quoted user"

Host tabbed
	HostName	10.0.0.7
	IdentityFile ~/.ssh/with\\ space
	SendEnv A_* B

Host *
    ServerAliveCountMax 5
    Compression yes
    UnknownOption whatever
    GlobalKnownHostsFile /etc/a /etc/b
"""

HOSTS = [("alias1", (), ()), ("alias2", (), ()), ("alias2", "carol", ()), ("alias3", (), 22),
         ("aliasX", "dave", 2022), ("jumped", (), ()), ("10.0.0.1", (), ()),
         ("quoted name", (), ()), ("tabbed", (), ()), ("nothing-matches", (), ())]


def _pair(path: Path, host: str, user, port):
    cls = ssh_mod._config_class()
    assert cls is not None
    args = (getpass.getuser(), user, host, port)
    ours = cls.load(None, [str(path)], False, False, False, *args)
    stock = SSHClientConfig.load(None, [str(path)], False, False, False, *args)
    return ours, stock


def _same(path: Path, host: str, user=(), port=()) -> None:
    ours, stock = _pair(path, host, user, port)
    assert ours._options == stock._options, host
    assert ours.has_match_final() == stock.has_match_final()


def _same_error(path: Path, host: str = "alias1") -> str:
    cls = ssh_mod._config_class()
    args = (None, [str(path)], False, False, False, getpass.getuser(), (), host, ())
    with pytest.raises(Exception) as stock:
        SSHClientConfig.load(*args)
    with pytest.raises(Exception) as ours:
        cls.load(*args)
    assert type(ours.value) is type(stock.value)
    assert str(ours.value) == str(stock.value)
    return str(ours.value)


def test_replay_matches_asyncssh(tmp_path):
    path = tmp_path / "config"
    path.write_text(CONFIG)
    for host, user, port in HOSTS:
        _same(path, host, user, port)
    ours, _ = _pair(path, "alias1", (), ())
    assert ours.get("Hostname") == "10.0.0.1" and ours.get("Port") == 2201
    assert ours.get("HostKeyAlias") == "one.example"
    assert ours.get("IdentityFile")[1].endswith("/keys/10.0.0.1-alice")
    ours, _ = _pair(path, "tabbed", (), ())
    assert ours.get("IdentityFile") == ["~/.ssh/with space"]


def test_replay_include_and_match_final(tmp_path):
    extra = tmp_path / "extra.conf"
    extra.write_text("Host inc\n    HostName 10.1.1.1\n    Port 2300\n")
    path = tmp_path / "config"
    path.write_text(f"Include {extra}\n\nMatch final host 10.1.1.1\n    User finaluser\n"
                    + CONFIG)
    for host in ("inc", "alias1", "other"):
        _same(path, host)
    ours, _ = _pair(path, "inc", (), ())
    assert ours.get("Hostname") == "10.1.1.1" and ours.has_match_final()
    assert ssh_mod._needs_asyncssh_parse(ours)


@pytest.mark.parametrize("text", [
    "Host alias1\n    Port notanumber\n",
    "Host other\n    User ok\nHost alias1\n    User \"unclosed\n",
    "Host nomatch\n    User \"unclosed\n",          # a split error counts even off-match
    "Host alias1\n    Compression maybe\n",
    "Host alias1\n    Port 22 23\n",
    "Host alias1\n    Port\n",
    "Match nonsense x\n",
])
def test_replay_errors_match_asyncssh(tmp_path, text):
    path = tmp_path / "config"
    path.write_text(text)
    message = _same_error(path)
    assert str(path) in message


def test_tokens_follow_the_file_on_disk(tmp_path):
    path = tmp_path / "config"
    path.write_text("Host a\n    Port 1111\n")
    ssh = SSHSettings(config=str(path))
    host = Host(name="a", address="a", workspace_root="/tmp/x")
    assert ssh_mod._config_lookup(host, ssh)["Port"] == 1111
    time.sleep(0.01)
    path.write_text("Host a\n    Port 2222\n    User someone\n")
    os.utime(path)
    assert ssh_mod._config_lookup(host, ssh) == {"Port": 2222, "User": "someone"}


def test_inventory_port_and_user_win_over_the_config(tmp_path):
    path = tmp_path / "config"
    path.write_text(CONFIG)
    ssh = SSHSettings(config=str(path))
    host = Host(name="a", address="alias1", port=2500, user="zed", workspace_root="/tmp/x")
    values = ssh_mod._config_lookup(host, ssh)
    assert values["Port"] == 2500 and values["User"] == "zed"
    assert values["Hostname"] == "10.0.0.1"
    assert ssh_mod.target_of(host, ssh) == ("10.0.0.1", 2500)
    assert ssh_mod.key_target(host, ssh) == ("one.example", 2500)


def _captured_kwargs(monkeypatch, host: Host, ssh: SSHSettings) -> dict:
    """The keyword arguments SSHConnection.open hands to asyncssh.create_connection."""
    import asyncio

    import asyncssh
    seen: dict = {}

    async def fake_create_connection(factory, address, **kwargs):
        seen.update(kwargs, address=address)
        raise ConnectionRefusedError()

    monkeypatch.setattr(asyncssh, "create_connection", fake_create_connection)
    with pytest.raises(Exception):
        asyncio.run(ssh_mod.SSHConnection.open(host, ssh))
    return seen


def test_what_asyncssh_is_given(monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n    Port 2999\n")
    monkeypatch.setenv("HOME", str(home))
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    path = tmp_path / "config"
    path.write_text(CONFIG)
    # No ssh config in orch.yml: asyncssh must not fall back to ~/.ssh/config.
    seen = _captured_kwargs(monkeypatch, Host(name="a", address="alias1", workspace_root="/x"),
                            SSHSettings(config=None, known_hosts=str(kh)))
    assert seen["config"] == [] and "options" not in seen
    # A config: parsed here, handed over loaded (asyncssh parses nothing itself).
    seen = _captured_kwargs(monkeypatch, Host(name="a", address="alias1", workspace_root="/x"),
                            SSHSettings(config=str(path), known_hosts=str(kh)))
    assert seen["config"] is None
    assert seen["options"].config.get("Hostname") == "10.0.0.1"
    assert seen["options"].config.get("Port") == 2201
    # ProxyJump: asyncssh gets the paths, to resolve the hop with them.
    seen = _captured_kwargs(monkeypatch, Host(name="j", address="jumped", workspace_root="/x"),
                            SSHSettings(config=str(path), known_hosts=str(kh)))
    assert seen["config"] == [str(path)] and "options" not in seen
