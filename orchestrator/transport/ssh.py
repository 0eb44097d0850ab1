"""The Connection protocol over SSH, with asyncssh.

Why these choices (see docs/FIELD-NOTES.md, checked against OpenSSH 9.2):
- `connect_timeout` and keepalives are always set: asyncssh has neither by default, so a
  silent host would hang a whole `orch poll` for two minutes and a cut link forever.
- Host keys are checked against the configured known_hosts file only, strictly: an
  unknown or changed key is an error with a hint (`orch trust`), never auto-accepted.
- The ssh config file is honoured (aliases, HostName, Port, User, IdentityFile,
  ProxyJump); the inventory's port/user/identity_file win when set.
- One connection carries many sessions, but sshd's MaxSessions (10) refuses more, so a
  semaphore (ssh.max_sessions, 8) bounds the sessions open at once on a connection.
- No PTY, ever: stream-json must arrive byte for byte, and detached jobs must survive.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import getpass
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..config.settings import SSHSettings
from ..core.models import Host
from ..errors import HostUnreachable
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
    from asyncssh.config import SSHClientConfig


def _expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path))


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _config_paths(ssh: SSHSettings) -> list[str]:
    """The ssh config to honour: [] when disabled (None) or when the file is missing."""
    if not ssh.config:
        return []
    path = _expand(ssh.config)
    return [path] if os.path.isfile(path) else []


_CONFIG_KEYS = ("Hostname", "Port", "User", "IdentityFile", "HostKeyAlias")


def _config_values(config: Any) -> dict[str, Any]:
    return {k: config.get(k) for k in _CONFIG_KEYS if config.get(k) is not None}


# -- the ssh config, read once per run ----------------------------------------------------
#
# asyncssh parses the whole ssh config for every connection, shlex-splitting every line of
# every Host block (~5 ms for a 400-line file): with 50 hosts, ~0.25 s of CPU per `orch
# hosts`, all of it before the first packet. The lines of a file never change within a
# run, only which of them apply: so each file is tokenized once (per version on disk),
# and each host replays the tokens through asyncssh's own handlers, which decide what
# matches and what each option means exactly as asyncssh's `parse` would.

_TOKENS: dict[tuple, list[tuple[int, str | None, tuple[str, ...] | str]]] = {}
# No quote, no backslash, and no whitespace that str.split() knows but shlex does not.
_PLAIN_LINE = re.compile(r"[^'\"\\\x0b\x0c\x1c-\x1f]*\Z")


def _tokenize(cls: type[SSHClientConfig], path: Path) -> list[tuple[int, str | None, tuple[str, ...] | str]]:
    """(line number, lowercased option, its arguments) for every line of an ssh config,
    split as asyncssh's SSHConfig.parse splits them; a line shlex cannot split becomes
    (line, None, message), raised when a parse reaches it (as asyncssh would)."""
    import shlex
    st = os.stat(path)
    key = (cls, str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _TOKENS.get(key)
    if cached is not None:
        return cached
    conditionals, no_split = cls._conditionals, cls._no_split
    entries: list[tuple[int, str | None, tuple[str, ...] | str]] = []
    with open(path) as file:
        for line_no, line in enumerate(file, 1):
            line = line.strip()
            if not line or line[0] == "#":
                continue
            if line.isascii() and _PLAIN_LINE.match(line):
                split_args = line.split()  # what shlex.split gives for such a line, 20x faster
            else:
                try:
                    split_args = shlex.split(line)
                except ValueError as exc:
                    entries.append((line_no, None, str(exc)))
                    continue
            args: list[str] = []
            loption = ""
            allow_equal = True
            for i, arg in enumerate(split_args, 1):
                if arg.startswith("="):
                    if len(arg) > 1:
                        args.append(arg[1:])
                elif not allow_equal:
                    args.extend(split_args[i - 1:])
                    break
                elif arg.endswith("="):
                    args.append(arg[:-1])
                elif "=" in arg:
                    arg, val = arg.split("=", 1)
                    args.append(arg)
                    args.append(val)
                else:
                    args.append(arg)
                if i == 1:
                    loption = args.pop(0).lower()
                    allow_equal = loption in conditionals
            if loption in no_split:
                args = [line.lstrip()[len(loption):].strip()]
            entries.append((line_no, loption, tuple(args)))
    if len(_TOKENS) > 32:
        _TOKENS.clear()
    _TOKENS[key] = entries
    return entries


@functools.cache
def _config_class() -> type[SSHClientConfig] | None:
    """asyncssh's SSHClientConfig with `parse` replaying cached tokens; None if this
    asyncssh lacks an internal it relies on (then asyncssh parses, as before)."""
    try:
        from asyncssh.config import SSHClientConfig
    except ImportError:  # pragma: no cover
        return None
    needed = ("_conditionals", "_no_split", "_handlers", "_percent_expand", "_set_tokens",
              "_expand_val", "_error", "parse", "has_match_final", "load", "get")
    if not all(hasattr(SSHClientConfig, n) for n in needed):
        return None  # pragma: no cover

    from asyncssh.pattern import WildcardPatternList

    stock_match_host = getattr(SSHClientConfig, "_match_host", None)
    # A `Host` line's patterns, compiled once per run rather than once per host and line
    # (what asyncssh's _match_host builds each time; the objects are immutable).
    host_patterns = functools.lru_cache(maxsize=4096)(WildcardPatternList)

    class _ReplayedClientConfig(SSHClientConfig):
        def parse(self, path: Path) -> None:
            # The body of asyncssh's SSHConfig.parse (2.14-2.24), minus the tokenizing.
            self._path = path
            self._line_no = 0
            self._matching = True
            self._tokens = {"%": "%"}
            for line_no, loption, args in _tokenize(type(self), path):
                self._line_no = line_no
                if loption is None:
                    self._error(str(args))
                if not self._matching and loption not in self._conditionals:
                    continue
                try:
                    option, handler = self._handlers[loption]
                except KeyError:
                    continue
                if not args:
                    self._error(f"Missing {option} value")
                if handler is stock_match_host:  # asyncssh's _match_host, pattern cached
                    self._matching = host_patterns(",".join(args)).matches(self._orig_host)
                    continue
                rest = list(args)
                handler(self, option, rest)
                if rest:
                    self._error(f"Extra data at end: {' '.join(rest)}")
            self._set_tokens()
            for option in self._percent_expand:
                try:
                    value = self._options[option]
                except KeyError:
                    continue
                if isinstance(value, list):
                    value = [self._expand_val(item) for item in value]
                elif isinstance(value, str):
                    value = self._expand_val(value)
                self._options[option] = value

    return _ReplayedClientConfig


def _load_config(host: Host, ssh: SSHSettings, paths: list[str]) -> SSHClientConfig:
    """The ssh config as it applies to `host` (an asyncssh SSHClientConfig), as asyncssh
    itself would load it for a connection with this host's address, port and user."""
    from asyncssh.config import SSHClientConfig
    cls = _config_class() or SSHClientConfig
    # load() is a classmethod that builds `cls`; asyncssh's annotation says the base class
    config = cls.load(None, paths, False, False, False, getpass.getuser(),
                      host.user if host.user else (), host.address, host.port if host.port else ())
    return cast(SSHClientConfig, config)


def _config_lookup(host: Host, ssh: SSHSettings) -> dict[str, Any]:
    """What the ssh config says about this host (HostName, Port, User, IdentityFile...).

    asyncssh applies the config itself; we read it too to name the real address in
    messages and to add explicit keys *on top of* the config's IdentityFile (asyncssh
    would otherwise replace them). Uses asyncssh's own handlers; on any surprise, {}.
    """
    paths = _config_paths(ssh)
    if not paths:
        return {}
    try:
        return _config_values(_load_config(host, ssh, paths))
    except Exception:  # noqa: BLE001 - the config is applied by asyncssh anyway
        return {}


@functools.cache
def _base_options() -> asyncssh.SSHClientConnectionOptions:
    """An empty SSHClientConnectionOptions to carry a host's loaded config into
    create_connection (which builds the real options from its kwargs and that config).
    client_keys=None: no default key loading here; the real keys come in the kwargs."""
    import asyncssh
    return asyncssh.SSHClientConnectionOptions(config=[], client_keys=None)


def _needs_asyncssh_parse(config: Any) -> bool:
    """Whether asyncssh must see the config paths itself: a ProxyJump hop is resolved by
    `connect(config=...)`, and hostname canonicalization or `Match final` re-parse the
    files for the canonical name."""
    return bool(config.get("ProxyJump") or config.get("CanonicalizeHostname")
                or config.has_match_final())


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
    cfg = _config_lookup(host, ssh)
    address = str(cfg.get("Hostname") or host.address)
    port = host.port or int(cfg.get("Port") or 22)
    return address, port


def key_target(host: Host, ssh: SSHSettings) -> tuple[str, int]:
    """(name, port) under which known_hosts must list this host's key: the config's
    HostKeyAlias, else its HostName, else the inventory address; port as connected."""
    cfg = _config_lookup(host, ssh)
    name = str(cfg.get("HostKeyAlias") or cfg.get("Hostname") or host.address)
    port = host.port or int(cfg.get("Port") or 22)
    return name, port


async def fetch_host_key(host: Host, ssh: SSHSettings) -> asyncssh.SSHKey:
    """The host key the server presents (an asyncssh SSHKey), without checking it:
    this is `orch trust`'s first step, shown to a person before anything is recorded."""
    import asyncssh
    kwargs: dict[str, Any] = {"config": _config_paths(ssh)}
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
        # The ssh config is applied once per host, here, from tokens read once per run
        # (see _tokenize), and handed to asyncssh as the connection's already-loaded
        # config: asyncssh then neither re-reads the file nor re-splits its lines.
        # orch reads HostName/IdentityFile... from the same object.
        paths = _config_paths(ssh)
        kwargs: dict[str, Any] = {}
        try:
            config = _load_config(host, ssh, paths) if paths else None
            known_hosts = _known_hosts(ssh)
            if config is None:
                # No ssh config: say so, or asyncssh would fall back to ~/.ssh/config.
                kwargs["config"] = []
            elif _needs_asyncssh_parse(config):
                kwargs["config"] = paths  # asyncssh's own path, hop and re-parse included
            else:
                options = copy.copy(_base_options())
                options.config = config  # the base of the connection's own config
                kwargs.update(options=options, config=None)
        except HostUnreachable:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad config: reported like any failure
            raise classify_error(host, ssh, exc) from None
        cfg = _config_values(config) if config is not None else {}
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

    async def stream(self, command: str, *, input: str | bytes | None = None) -> AsyncIterator[str]:
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
