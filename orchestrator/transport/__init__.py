"""How a command reaches a host: the transport registry.

A transport kind is one row of TRANSPORTS (pyinfra's connectors: one table, one class
per way of reaching a host): the name an inventory host gives as `connection:`, how a
connection is opened, and what the rest of orch may need to know about hosts reached
that way, so that nothing outside transport/ asks which transport a host uses.
Both classes implement base.Connection; a module is imported only when a host uses it.

Adding a transport (a container, a serial line, ...): a module with a Connection class
that has an `open(host, ssh_settings)` coroutine, and one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..config.settings import SSHSettings
from ..core.models import Host
from ..registry import lookup
from .base import CommandResult, Connection

__all__ = ["TRANSPORTS", "CommandResult", "Connection", "TransportKind", "connect", "runs_here",
           "transport"]


@dataclass(frozen=True)
class TransportKind:
    name: str
    target: str                # "module:Class" of its Connection, imported on first use
    needs_address: bool        # the inventory must say where the host is (`address:`)
    host_keys: bool            # the host proves itself with a key known_hosts records
    provisioned: bool          # `orch provision` sets such hosts up (over SSH, with fabric)
    where: str | None = None   # how listings show where such a host is; None: its address
    # Its jobs run on this machine, as the user who holds orch's state, its environment
    # and its SSH keys (core/trust.py: a stranger's issue runs there only by opt-in).
    runs_here: bool = False

    async def open(self, host: Host, ssh: SSHSettings) -> Connection:
        module, _, name = self.target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return await cls.open(host, ssh)


TRANSPORTS: dict[str, TransportKind] = {k.name: k for k in (
    TransportKind("ssh", "orchestrator.transport.ssh:SSHConnection",
                  needs_address=True, host_keys=True, provisioned=True),
    # This machine, without SSH: the embedded default, and `connection: local` hosts.
    TransportKind("local", "orchestrator.transport.local:LocalConnection",
                  needs_address=False, host_keys=False, provisioned=False, where="local",
                  runs_here=True),
)}


def transport(name: str) -> TransportKind:
    return lookup(TRANSPORTS, name, "connection")


def runs_here(host: Host) -> bool:
    """Whether `host`'s jobs run on this machine (TransportKind.runs_here)."""
    return transport(host.connection).runs_here


async def connect(host: Host, ssh: SSHSettings) -> Connection:
    """Open a connection to `host`; raises errors.HostUnreachable with a reason kind."""
    return await transport(host.connection).open(host, ssh)
