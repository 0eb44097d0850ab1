"""Registries, not string switches: transports and forges are chosen by kind from one table
each (transport/__init__.py TRANSPORTS, forge/__init__.py FORGES). The inventory's
`connection:` choices, whether a host needs an address or has a host key, and how a
connection opens come from its row; nothing outside transport/ asks "is it local?", and
nothing outside forge/ picks a forge by spelling its name."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from orchestrator.config.settings import SSHSettings
from orchestrator.core.models import Host
from orchestrator.errors import UsageError
from orchestrator.fleet.inventory import CONNECTIONS
from orchestrator.transport import TRANSPORTS, connect, transport
from orchestrator.transport.local import LocalConnection


def test_the_table_is_the_inventorys_vocabulary():
    assert CONNECTIONS == tuple(TRANSPORTS) == ("ssh", "local")
    assert transport("ssh").needs_address and transport("ssh").host_keys
    assert not transport("local").needs_address and not transport("local").host_keys
    with pytest.raises(UsageError, match="unknown connection 'telnet'") as info:
        transport("telnet")
    assert "ssh, local" in str(info.value)


def test_connect_opens_through_the_row():
    host = Host(name="here", address="localhost", connection="local", workspace_root="/tmp")
    conn = asyncio.run(connect(host, SSHSettings()))
    assert isinstance(conn, LocalConnection) and conn.host is host
    result = asyncio.run(conn.run("echo ok"))
    assert result.ok and result.stdout == "ok\n"


def test_nothing_outside_transport_asks_which_transport_a_host_uses():
    package = Path(__file__).resolve().parents[1] / "orchestrator"
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "transport":
            continue
        text = path.read_text()
        if re.search(r"\.is_local\b|connection\s*[!=]=\s*[\"']", text):
            offenders.append(str(path.relative_to(package)))
    assert offenders == []


def test_nothing_outside_forge_picks_a_forge_by_its_name():
    """The forge is chosen from Task.forge, a reference (forge.kind_for_ref) or the
    default for `repos:` (forge.DEFAULT_FORGE): never by spelling a forge's name."""
    package = Path(__file__).resolve().parents[1] / "orchestrator"
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "forge":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"[=!]=\s*[\"']github[\"']|forge\([\"']github[\"']\)"
                         r"|from \.+forge\.github import", line):
                offenders.append(f"{path.relative_to(package)}:{n}")
    assert offenders == []
