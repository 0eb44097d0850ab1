"""`connection: local`: the Connection protocol on this machine, without SSH.

The embedded default: orch works with no inventory and no sshd at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator

from ..config.settings import SSHSettings
from ..core import shell
from ..core.models import Host
from .base import CommandResult, Connection


def _as_bytes(data: str | bytes | None) -> bytes | None:
    if data is None:
        return None
    return data.encode() if isinstance(data, str) else data


class LocalConnection:
    def __init__(self, host: Host) -> None:
        self.host = host

    @classmethod
    async def open(cls, host: Host, ssh: SSHSettings | None = None) -> LocalConnection:
        """The transport registry's way in (transport/__init__.py); no settings needed."""
        return cls(host)

    async def run(self, command: str, *, input: str | bytes | None = None,
                  timeout: float | None = None) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=os.path.expanduser("~"))
        out, err = await asyncio.wait_for(proc.communicate(_as_bytes(input)), timeout)
        return CommandResult(proc.returncode or 0, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    async def stream(self, command: str, *, input: str | bytes | None = None) -> AsyncGenerator[str, None]:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=os.path.expanduser("~"), limit=16 * 1024 * 1024,
            start_new_session=True)   # its own group: stopped whole when walked away from
        if input is not None:
            assert proc.stdin is not None
            proc.stdin.write(_as_bytes(input) or b"")
            await proc.stdin.drain()
            proc.stdin.close()
        assert proc.stdout is not None
        drained = False
        try:
            async for raw in _lines(proc.stdout):
                yield raw.decode(errors="replace").rstrip("\n")
            drained = True
        finally:
            # Kill only what the caller walked away from (a cancelled `orch logs -f`, a
            # Ctrl-C), and the whole process group: a pipeline's other members (tail -F |
            # grep) would hold stdout open, and wait() would hang until they end. killpg
            # does not reap, unlike Popen.kill(), which could reap a child that just exited
            # behind asyncio's watcher ("Unknown child process").
            if not drained:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            await proc.wait()

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600) -> None:
        await put_with_shell(self, data, remote_path, mode=mode)

    async def close(self) -> None:
        return None


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The reader's lines; a line longer than the reader's limit comes in pieces of that
    size instead of ending the stream (asyncio's readline raises and drops the data: one
    hostile log line would stop `orch logs -f`)."""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                yield exc.partial
            return
        except asyncio.LimitOverrunError as exc:
            yield await reader.readexactly(exc.consumed)
            continue
        yield line


async def put_with_shell(conn: Connection, data: bytes, remote_path: str, *, mode: int = 0o600) -> None:
    """Write a file in one round trip: data on stdin, temporary name, atomic rename.

    Shared by both transports so that `~/` paths expand the same way everywhere.
    """
    target = shell.path(remote_path)
    cmd = (f"umask 077; t={target}; d=$(dirname \"$t\"); mkdir -p \"$d\" && "
           f"cat > \"$t.tmp.$$\" && chmod {mode:o} \"$t.tmp.$$\" && mv -f \"$t.tmp.$$\" \"$t\"")
    result = await conn.run(cmd, input=data)
    if not result.ok:
        from ..errors import WorkError
        raise WorkError(f"{conn.host.name}: could not write {remote_path}: {result.stderr.strip()}")
