"""How a command reaches a host: over SSH (ssh.py) or on this machine (local.py).

Both implement base.Connection; the rest of orch never knows which one it holds.
"""

from __future__ import annotations

from ..config.settings import SSHSettings
from ..core.models import Host
from .base import CommandResult, Connection

__all__ = ["CommandResult", "Connection", "connect"]


async def connect(host: Host, ssh: SSHSettings) -> Connection:
    """Open a connection to `host`; raises errors.HostUnreachable with a reason kind."""
    if host.is_local:
        from .local import LocalConnection
        return LocalConnection(host)
    from .ssh import SSHConnection
    return await SSHConnection.open(host, ssh)
