"""orch hands asyncssh a copy of the ssh config cut down to the lines that can apply to
the host (transport/ssh_config.py), for speed, through asyncssh's public `config=` paths:
what asyncssh loads from the copy must be exactly what it loads from the whole file, for
every kind of line, match and mistake; and the cut must really happen (that is the speed),
without any private attribute of asyncssh."""

from __future__ import annotations

import getpass
import os
import re
import time
from pathlib import Path

import pytest
from asyncssh.config import SSHClientConfig

from orchestrator.config.settings import SSHSettings
from orchestrator.core.models import Host
from orchestrator.transport import ssh as ssh_mod
from orchestrator.transport import ssh_config

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


# Every option the configs above set, as asyncssh names them (SSHConfig.get is public).
OPTIONS = ("Hostname", "Port", "User", "IdentityFile", "IdentitiesOnly", "SendEnv",
           "ProxyCommand", "ServerAliveInterval", "ServerAliveCountMax", "HostKeyAlias",
           "ConnectTimeout", "Compression", "GlobalKnownHostsFile", "ProxyJump")


def _stock(path: Path, host: Host):
    return SSHClientConfig.load(None, [str(path)], False, False, False, getpass.getuser(),
                                host.user or (), host.address, host.port or ())


def _host(address: str, user=(), port=()) -> Host:
    return Host(name="h", address=address, user=user or None, port=port or None,
                workspace_root="/tmp/x")


def _same(path: Path, address: str, user=(), port=()) -> list[str]:
    host = _host(address, user, port)
    ours, given = ssh_config.for_host(host, [str(path)])
    stock = _stock(path, host)
    for option in OPTIONS:
        assert ours.get(option) == stock.get(option), (address, option)
    assert ours.has_match_final() == stock.has_match_final()
    # What asyncssh itself will read for the connection loads the same again.
    again = SSHClientConfig.load(None, given, False, False, False, getpass.getuser(),
                                 host.user or (), host.address, host.port or ())
    assert all(again.get(o) == stock.get(o) for o in OPTIONS)
    return given


def _error(path: Path, address: str = "alias1") -> str:
    host = _host(address)
    with pytest.raises(Exception) as stock:
        _stock(path, host)
    with pytest.raises(Exception) as ours:
        ssh_config.for_host(host, [str(path)])
    assert type(ours.value) is type(stock.value)
    assert str(ours.value) == str(stock.value)
    return str(ours.value)


def _meaningful(path: str) -> list[str]:
    return [ln.strip() for ln in Path(path).read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_cut_copy_loads_what_the_whole_file_loads(tmp_path):
    path = tmp_path / "config"
    path.write_text(CONFIG)
    for host, user, port in HOSTS:
        _same(path, host, user, port)
    ours, _ = ssh_config.for_host(_host("alias1"), [str(path)])
    assert ours.get("Hostname") == "10.0.0.1" and ours.get("Port") == 2201
    assert ours.get("HostKeyAlias") == "one.example"
    assert ours.get("IdentityFile")[1].endswith("/keys/10.0.0.1-alice")
    ours, _ = ssh_config.for_host(_host("tabbed"), [str(path)])
    assert ours.get("IdentityFile") == ["~/.ssh/with space"]


def test_asyncssh_reads_only_the_lines_that_can_apply(tmp_path):
    """The speed: a host's copy holds its own Host block, the Match blocks and Host *, not
    the other hosts' blocks."""
    path = tmp_path / "config"
    blocks = "".join(f"Host pc{i}\n    HostName 10.9.0.{i}\n    Port {2000 + i}\n"
                     f"    User u{i}\n    IdentityFile ~/.ssh/k{i}\n" for i in range(80))
    path.write_text(blocks + "Match originalhost pc7\n    User seven\nHost *\n    Compression yes\n")
    given = _same(path, "pc7")
    assert given != [str(path)]
    kept = _meaningful(given[0])
    assert kept == ["Host pc7", "HostName 10.9.0.7", "Port 2007", "User u7",
                    "IdentityFile ~/.ssh/k7", "Match originalhost pc7", "User seven",
                    "Host *", "Compression yes"]
    assert len(Path(given[0]).read_text().splitlines()) == len(kept)
    assert oct(os.stat(given[0]).st_mode & 0o777) == "0o600"
    # A host no block names still gets Host * (and the Match block), nothing else.
    assert _meaningful(_same(path, "elsewhere")[0]) == kept[5:]
    # One copy per distinct content: asking again reuses it.
    assert _same(path, "pc7") == given


def test_whole_file_when_cutting_could_change_the_meaning(tmp_path):
    path = tmp_path / "config"
    path.write_text(CONFIG)
    # ProxyJump: asyncssh resolves the hop with the same config, so it needs it all.
    assert _same(path, "jumped") == [str(path)]
    assert ssh_config.for_host(_host("jumped"), [str(path)])[0].get("ProxyJump")
    # Hostname canonicalization re-reads the file for another name.
    path.write_text("Host c1\n    CanonicalizeHostname yes\n    CanonicalDomains x.test\n" + CONFIG)
    assert _same(path, "c1") == [str(path)]
    assert _same(path, "alias1") != [str(path)]


def test_include_and_match_final(tmp_path):
    extra = tmp_path / "extra.conf"
    extra.write_text("Host inc\n    HostName 10.1.1.1\n    Port 2300\n")
    path = tmp_path / "config"
    path.write_text(f"Include {extra}\n\nMatch final host 10.1.1.1\n    User finaluser\n"
                    + CONFIG)
    for host in ("inc", "alias1", "other"):
        assert _same(path, host) == [str(path)]   # Match final: the whole file
    ours, _ = ssh_config.for_host(_host("inc"), [str(path)])
    assert ours.get("Hostname") == "10.1.1.1" and ours.has_match_final()
    path.write_text(f"Include {extra}\n" + CONFIG)
    given = _same(path, "inc")
    assert given != [str(path)] and f"Include {extra}" in _meaningful(given[0])


@pytest.mark.parametrize("text", [
    "Host alias1\n    Port notanumber\n",
    "Host other\n    User ok\nHost alias1\n    User \"unclosed\n",
    "Host nomatch\n    User \"unclosed\n",          # a split error counts even off-match
    "Host alias1\n    Compression maybe\n",
    "Host alias1\n    Port 22 23\n",
    "Host alias1\n    Port\n",
    "Host other\n    Port 1\nHost\n    Port 2\n",
    "Match nonsense x\n",
])
def test_errors_are_asyncssh_own_and_name_the_users_file(tmp_path, text):
    path = tmp_path / "config"
    path.write_text("Host unrelated\n    Port 3\n" + text)
    message = _error(path)
    assert str(path) in message


def test_cuts_follow_the_file_on_disk(tmp_path):
    path = tmp_path / "config"
    path.write_text("Host a\n    Port 1111\nHost b\n    Port 3\n")
    ssh = SSHSettings(config=str(path))
    host = Host(name="a", address="a", workspace_root="/tmp/x")
    assert ssh_config.lookup(host, ssh)["Port"] == 1111
    time.sleep(0.01)
    path.write_text("Host a\n    Port 2222\n    User someone\nHost b\n    Port 3\n")
    os.utime(path)
    assert ssh_config.lookup(host, ssh) == {"Port": 2222, "User": "someone"}


def test_inventory_port_and_user_win_over_the_config(tmp_path):
    path = tmp_path / "config"
    path.write_text(CONFIG)
    ssh = SSHSettings(config=str(path))
    host = Host(name="a", address="alias1", port=2500, user="zed", workspace_root="/tmp/x")
    values = ssh_config.lookup(host, ssh)
    assert values["Port"] == 2500 and values["User"] == "zed"
    assert values["Hostname"] == "10.0.0.1"
    assert ssh_mod.target_of(host, ssh) == ("10.0.0.1", 2500)
    assert ssh_mod.key_target(host, ssh) == ("one.example", 2500)


def test_no_private_attribute_of_asyncssh_is_used():
    """transport/ relies on asyncssh's public names only (issue 9 item 4)."""
    here = Path(ssh_mod.__file__).parent
    for module in ("ssh.py", "ssh_config.py"):
        source = (here / module).read_text()
        used = set(re.findall(r"\b(?:asyncssh|SSHClientConfig|config|conn|options|cls)"
                              r"\.(_[A-Za-z]\w*)", source))
        assert not used, (module, used)
        assert "_handlers" not in source and "_conditionals" not in source, module


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
    # A config: asyncssh reads the host's cut copy, nothing of the other hosts' blocks.
    seen = _captured_kwargs(monkeypatch, Host(name="a", address="alias1", workspace_root="/x"),
                            SSHSettings(config=str(path), known_hosts=str(kh)))
    [given] = seen["config"]
    assert given != str(path) and "options" not in seen
    kept = "\n".join(_meaningful(given))
    assert "HostName 10.0.0.1" in kept and "10.0.0.2" not in kept and "jumped" not in kept
    # ProxyJump: asyncssh gets the user's file, to resolve the hop with it.
    seen = _captured_kwargs(monkeypatch, Host(name="j", address="jumped", workspace_root="/x"),
                            SSHSettings(config=str(path), known_hosts=str(kh)))
    assert seen["config"] == [str(path)] and "options" not in seen
