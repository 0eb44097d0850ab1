"""The Connection protocol: run a command, stream its lines, put a file, close.

Commands are POSIX sh command lines run by the host's shell (sshd runs them with the
user's login shell; local runs /bin/sh). Callers quote with orchestrator.core.shell.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from ..core.models import Host


@dataclass
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Connection(Protocol):
    host: Host

    async def run(self, command: str, *, input: str | bytes | None = None,
                  timeout: float | None = None) -> CommandResult:
        """Run to completion; stdin gets `input` (then EOF). Raises HostUnreachable if the
        link drops, asyncio.TimeoutError if `timeout` passes (the remote command is not
        killed: detached jobs are stopped with job.remote.kill)."""
        ...

    def stream(self, command: str, *, input: str | bytes | None = None) -> AsyncGenerator[str, None]:
        """Yield stdout+stderr lines (without the newline) as the host writes them."""
        ...

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600) -> None:
        """Write a file atomically (temporary name, then rename). `remote_path` may start
        with ~/ and is created with its parent directories."""
        ...

    async def close(self) -> None:
        ...
