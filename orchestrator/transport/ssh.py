"""The Connection protocol over SSH, with asyncssh.

Why these choices (see docs/FIELD-NOTES.md, checked against OpenSSH 9.2):
- `connect_timeout` and keepalives are always set: asyncssh has neither by default, so a
  silent host would hang a whole `orch poll` for two minutes and a cut link forever.
- Host keys are checked against the configured known_hosts file only, strictly: an
  unknown or changed key is an error with a hint (`orch trust`), never auto-accepted.
- The ssh config file is honoured (aliases, HostName, Port, User, IdentityFile,
  ProxyJump); the inventory's port/user/identity_file win when set. asyncssh reads it,
  cut down per host to the lines that can apply (transport/ssh_config.py: speed).
- One connection carries many sessions, but sshd's MaxSessions (10) refuses more, so a
  semaphore (ssh.max_sessions, 8) bounds the sessions open at once on a connection.
- No PTY, ever: stream-json must arrive byte for byte, and detached jobs must survive.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ..config.settings import SSHSettings
from ..core.models import Host
from ..errors import HostUnreachable
from . import ssh_config
from .base import CommandResult
from .failures import (
    auth_refused,
    dropped,
    hostkey_changed,
    hostkey_unknown,
    key_unusable,
    known_host_name,
    network_failure,
)

if TYPE_CHECKING:  # pragma: no cover
    import asyncssh


def _expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path))


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data




# -- known_hosts, read once per run --------------------------------------------------------

_KNOWN_HOSTS: dict[tuple, Any] = {}


def _known_hosts(ssh: SSHSettings) -> asyncssh.SSHKnownHosts:
    """The known_hosts file as an asyncssh SSHKnownHosts, parsed once per version of the
    file (asyncssh would re-read it for every connection); an empty one, which trusts
    nothing, when the file is missing."""
    import asyncssh
    path = _expand(ssh.known_hosts)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not os.path.isfile(path):
        return asyncssh.import_known_hosts("")
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    known = _KNOWN_HOSTS.get(key)
    if known is None:
        known = asyncssh.read_known_hosts(path)
        _KNOWN_HOSTS.clear()
        _KNOWN_HOSTS[key] = known
    return known


def target_of(host: Host, ssh: SSHSettings) -> tuple[str, int]:
    """(address, port) that a connection to `host` really reaches, after the ssh config."""
    cfg = ssh_config.lookup(host, ssh)
    address = str(cfg.get("Hostname") or host.address)
    port = host.port or int(cfg.get("Port") or 22)
    return address, port


def key_target(host: Host, ssh: SSHSettings) -> tuple[str, int]:
    """(name, port) under which known_hosts must list this host's key: the config's
    HostKeyAlias, else its HostName, else the inventory address; port as connected."""
    cfg = ssh_config.lookup(host, ssh)
    name = str(cfg.get("HostKeyAlias") or cfg.get("Hostname") or host.address)
    port = host.port or int(cfg.get("Port") or 22)
    return name, port


async def fetch_host_key(host: Host, ssh: SSHSettings) -> asyncssh.SSHKey:
    """The host key the server presents (an asyncssh SSHKey), without checking it:
    this is `orch trust`'s first step, shown to a person before anything is recorded."""
    import asyncssh
    kwargs: dict[str, Any] = {"config": ssh_config.config_paths(ssh)}
    if host.port:
        kwargs["port"] = host.port
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host.address, **kwargs),
                                     ssh.connect_timeout)
    except BaseException as exc:
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            raise
        raise classify_error(host, ssh, exc, during="key exchange") from None
    if key is None:
        raise HostUnreachable(host.name, "other", "the server presented no host key")
    return key


def _client_keys(host: Host, ssh: SSHSettings, cfg: dict[str, Any]) -> list[str]:
    """Identity files to offer: the config's (if present on disk), then the host's
    identity_file, then ssh.client_keys. [] lets asyncssh use ~/.ssh/id_* and the agent.

    A missing file named by orch's own inventory/config is an error (a typo should not
    silently turn into "permission denied"); a missing one from ssh config is skipped,
    as OpenSSH does.
    """
    explicit = ([host.identity_file] if host.identity_file else []) + list(ssh.client_keys)
    keys: list[str] = []
    for k in cfg.get("IdentityFile") or ():
        p = _expand(str(k))
        if os.path.isfile(p) and p not in keys:
            keys.append(p)
    for k in explicit:
        p = _expand(k)
        if not os.path.isfile(p):
            raise HostUnreachable(host.name, "auth", f"identity file {k} does not exist",
                                  hint="fix identity_file in the inventory or ssh.client_keys")
        if p not in keys:
            keys.append(p)
    return keys


def _client_class() -> type[asyncssh.SSHClient]:
    import asyncssh

    class _Client(asyncssh.SSHClient):
        """Remembers why the link went away and which host key the server offered."""

        def __init__(self) -> None:
            self.lost: Exception | None = None
            self.closed = False
            self.offered: tuple[str, str, int, Any] | None = None

        def connection_lost(self, exc: Exception | None) -> None:
            self.closed = True
            self.lost = exc

        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            # Called only for a key that known_hosts does not list: record it, refuse it.
            self.offered = (host, addr, port, key)
            return False

    return _Client


def _hostkey_error(host: Host, ssh: SSHSettings, client: Any, exc: Exception) -> HostUnreachable:
    """Tell an unknown key from a changed one by looking the host up in known_hosts."""
    import asyncssh
    kh_file = ssh.known_hosts
    if client is None or client.offered is None:
        # Refused before our client saw it: a revoked key, or a ProxyJump hop's key.
        reason = "hostkey-unknown" if "not trusted" in str(exc) else "hostkey-changed"
        return HostUnreachable(host.name, reason, f"host key refused: {exc}",
                               hint=f"check {kh_file} (and the known_hosts of any ProxyJump "
                                    f"hop) for a missing, revoked or conflicting entry")
    name, addr, port, key = client.offered
    shown = known_host_name(name, port)
    fp = key.get_fingerprint("sha256")
    known: list = []
    path = _expand(kh_file)
    if os.path.isfile(path):
        try:
            known = list(asyncssh.read_known_hosts(path).match(
                name, addr, port if port != 22 else None)[0])
        except Exception:  # noqa: BLE001 - an unreadable file: treat as unknown
            known = []
    if known:
        return hostkey_changed(host.name, shown, key.get_algorithm(), fp)
    return hostkey_unknown(host.name, name, port, fp, kh_file)


def classify_error(host: Host, ssh: SSHSettings, exc: BaseException,
                   client: Any = None, *, during: str = "connect") -> HostUnreachable:
    """Any failure to reach a host -> HostUnreachable with one of its REASONS."""
    import asyncssh
    if isinstance(exc, HostUnreachable):
        return exc
    address, port = target_of(host, ssh)
    where = known_host_name(address, port)
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return _hostkey_error(host, ssh, client, exc)
    if isinstance(exc, asyncssh.PermissionDenied):
        return auth_refused(host.name, where, exc)
    if isinstance(exc, asyncssh.KeyImportError):
        return key_unusable(host.name, exc)
    if isinstance(exc, (asyncssh.ConnectionLost, asyncssh.DisconnectError,
                        asyncssh.ChannelOpenError, BrokenPipeError, ConnectionResetError,
                        ConnectionAbortedError)):
        return dropped(host.name, where, during, exc)
    return network_failure(host.name, exc, where=where, address=host.address,
                           connect_timeout=ssh.connect_timeout)


class SSHConnection:
    """One asyncssh connection to one host; many sessions, at most max_sessions at once."""

    def __init__(self, host: Host, ssh: SSHSettings, conn: asyncssh.SSHClientConnection,
                 client: Any) -> None:
        self.host = host
        self.ssh = ssh
        self._conn = conn
        self._client = client
        self._sessions = asyncio.Semaphore(max(1, ssh.max_sessions))

    @classmethod
    async def open(cls, host: Host, ssh: SSHSettings) -> SSHConnection:
        """Connect and authenticate; every failure is a HostUnreachable with a reason."""
        import asyncssh
        # The ssh config as it applies to this host (transport/ssh_config.py): asyncssh
        # reads a copy cut down to the lines that can apply (or the user's file itself),
        # and orch reads HostName/IdentityFile... from what asyncssh loads from it.
        paths = ssh_config.config_paths(ssh)
        try:
            config, given = ssh_config.for_host(host, paths) if paths else (None, [])
            known_hosts = _known_hosts(ssh)
        except HostUnreachable:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad config: reported like any failure
            raise classify_error(host, ssh, exc) from None
        # No ssh config: say so ([]), or asyncssh would fall back to ~/.ssh/config.
        kwargs: dict[str, Any] = {"config": given}
        cfg = ssh_config.values(config) if config is not None else {}
        keys = _client_keys(host, ssh, cfg)
        kwargs.update(
            known_hosts=known_hosts, client_keys=keys,
            connect_timeout=ssh.connect_timeout, keepalive_interval=ssh.keepalive_interval,
            keepalive_count_max=ssh.keepalive_count_max, request_pty=False,
            # An encrypted key file is skipped (ssh-agent serves it), as OpenSSH's
            # BatchMode would: orch never prompts for a passphrase.
            ignore_encrypted=True,
            # Never whatever ~/.ssh/config says (ForwardAgent, ForwardX11Trusted): a job
            # on the host could use the operator's agent to log in anywhere the operator
            # can, for as long as this connection is open. The agent still serves keys
            # for logging in to the host itself.
            agent_forwarding=False, x11_forwarding=False)
        if host.port:
            kwargs["port"] = host.port
        if host.user:
            kwargs["username"] = host.user
        holder: dict[str, Any] = {}
        client_cls = _client_class()

        def factory() -> asyncssh.SSHClient:
            holder["client"] = client_cls()
            return holder["client"]

        try:
            conn, client = await asyncssh.create_connection(factory, host.address, **kwargs)
        except BaseException as exc:
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            raise classify_error(host, ssh, exc, holder.get("client")) from None
        return cls(host, ssh, conn, client)

    def _dropped(self, exc: BaseException | None = None, during: str = "a command") -> HostUnreachable:
        why = exc if exc is not None else (self._client.lost or "the link closed")
        return HostUnreachable(self.host.name, "disconnected",
                               f"connection to {self.host.address} dropped during {during}: {why}",
                               hint="the host went away or the network cut; a detached job "
                                    "keeps running and is picked up again later")

    async def _process(self, command: str, *, stdin_data: bytes | None,
                       merge: bool) -> asyncssh.SSHClientProcess[bytes]:
        import asyncssh
        if self._client.closed:
            raise self._dropped(during="session open")
        try:
            return await self._conn.create_process(
                command, stdin=asyncssh.PIPE if stdin_data is not None else asyncssh.DEVNULL,
                stderr=asyncssh.STDOUT if merge else asyncssh.PIPE, encoding=None,
                request_pty=False)
        except asyncssh.ChannelOpenError as exc:
            if self._client.closed:
                raise self._dropped(exc, "session open") from None
            raise HostUnreachable(self.host.name, "other",
                                  f"{self.host.address} refused a session: {exc.reason}",
                                  hint="sshd's MaxSessions may be below ssh.max_sessions") from None
        except (asyncssh.Error, OSError) as exc:
            raise self._dropped(exc, "session open") from None

    async def run(self, command: str, *, input: str | bytes | None = None,
                  timeout: float | None = None) -> CommandResult:
        import asyncssh
        data = _as_bytes(input) if input is not None else None
        async with self._sessions:
            proc = await self._process(command, stdin_data=data, merge=False)
            try:
                if data is not None:
                    if data:
                        proc.stdin.write(data)
                    proc.stdin.write_eof()
                out, err = await asyncio.wait_for(proc.communicate(), timeout)
            except (TimeoutError, asyncio.CancelledError):
                proc.close()  # frees the session; the remote command is not killed
                raise
            except (asyncssh.Error, OSError) as exc:
                proc.close()
                raise self._dropped(exc) from None
        status = proc.exit_status
        if proc.exit_signal:  # asyncssh reports -1 then; a shell would say 128+N
            status = 128 + _signal_number(proc.exit_signal[0])
        elif status is None:
            if self._client.closed:
                raise self._dropped()
            status = 255  # the channel closed without a status, as OpenSSH's ssh reports
        return CommandResult(status, (out or b"").decode(errors="replace"),
                             (err or b"").decode(errors="replace"))

    async def stream(self, command: str, *, input: str | bytes | None = None) -> AsyncGenerator[str, None]:
        import asyncssh
        data = _as_bytes(input) if input is not None else None
        async with self._sessions:
            # Merge on the host: stdout and stderr travel as separate SSH streams, so
            # merging them here could reorder lines written back to back.
            proc = await self._process("exec 2>&1\n" + command, stdin_data=data, merge=True)
            try:
                if data is not None:
                    if data:
                        proc.stdin.write(data)
                    proc.stdin.write_eof()
                while True:
                    try:
                        raw = await proc.stdout.readline()
                    except (asyncssh.Error, OSError) as exc:
                        raise self._dropped(exc, "streaming") from None
                    if not raw:
                        break
                    yield raw.decode(errors="replace").rstrip("\n").rstrip("\r")
                await proc.wait_closed()
                if proc.exit_status is None and proc.exit_signal is None and self._client.closed:
                    raise self._dropped(during="streaming")
            finally:
                if proc.exit_status is None and proc.exit_signal is None:
                    proc.close()

    async def put(self, data: bytes, remote_path: str, *, mode: int = 0o600) -> None:
        from .local import put_with_shell
        await put_with_shell(self, data, remote_path, mode=mode)

    @property
    def closed(self) -> bool:
        return self._client.closed

    async def close(self) -> None:
        self._conn.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), 5)
        except TimeoutError:
            pass


def _signal_number(name: str) -> int:
    import signal
    try:
        return int(getattr(signal, "SIG" + name.upper().removeprefix("SIG")))
    except (AttributeError, ValueError):
        return 127
