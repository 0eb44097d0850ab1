"""SSH through fabric, for `orch provision` only: run, run as root (sudo), upload a file.

Why fabric here when asyncssh carries every probe and job: provisioning is a short,
ordered list of steps per host that needs exactly what fabric (with invoke) does well:
`sudo` whose password prompt is answered for us on the channel (never in argv, never
in a file), SFTP uploads, and plain sequential code per host (hosts run in threads).
asyncssh stays the engine where speed and streaming matter (fan-out probes, detached
jobs, live logs); see docs/provision.md.

Held to asyncssh's strictness (transport/ssh.py), because fabric's defaults are not:
- fabric's Connection sets paramiko's AutoAddPolicy (an unknown host key is accepted);
  every Connection here, ProxyJump hops included, gets a RejectPolicy and loads orch's
  `ssh.known_hosts` only. An unknown or changed key fails the host with the same words
  and hint (`orch trust HOST`) as the asyncssh path.
- The ssh config is orch's `ssh.config` only (not /etc/ssh/ssh_config, not ~/.ssh/config
  when orch.yml points elsewhere), read by fabric: aliases, HostName, Port, User,
  IdentityFile, ProxyJump, ProxyCommand; HostKeyAlias is honoured for the key lookup.
  The inventory's user/port/identity_file win over it.
- When any identity is configured (the host's identity_file, ssh.client_keys, the ssh
  config's IdentityFile), exactly those keys are offered: no agent, no ~/.ssh guessing.
- The ssh-agent is never forwarded (not even with `ForwardAgent yes` in the ssh config),
  no fabric/invoke config file or FABRIC_* variable is read (a `lazy` Config), local
  stdin is never forwarded, and no PTY is asked for.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Only `orch provision` imports this module (through fleet/provision/): fabric and
# paramiko never slow down `orch --help` or the other commands.
import fabric  # type: ignore[import-untyped]
import invoke
import paramiko  # type: ignore[import-untyped]

from ..config.settings import SSHSettings
from ..core import shell
from ..core.models import Host
from ..errors import HostUnreachable
from . import failures
from .base import CommandResult

# fabric and paramiko ship no type information: their objects are `Any` here. A fabric
# Connection is called `fab`, never `conn` (that name is orch's Connection protocol).
TIMED_OUT = 124          # the exit status reported for a command that ran out of time, as timeout(1)


class PrivilegeError(Exception):
    """A command needs root and cannot get it: `message` says why, `fix` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path))


def _sh(command: str) -> str:
    """Every command runs in POSIX sh with C messages, whatever the login shell is."""
    return "sh -c " + shell.quote("LC_ALL=C; export LC_ALL\n" + command)


def _ssh_config(ssh: SSHSettings) -> Any:
    path = _expand(ssh.config) if ssh.config else ""
    return paramiko.SSHConfig.from_path(path) if path and os.path.isfile(path) else paramiko.SSHConfig()


class _RecordingReject:
    """paramiko's RejectPolicy, remembering the key it refused (for the message)."""

    def __init__(self) -> None:
        self.offered: tuple[str, Any] | None = None

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        self.offered = (hostname, key)
        paramiko.RejectPolicy().missing_host_key(client, hostname, key)   # raises


def _chain(fab: Any) -> list[Any]:
    """The connection and every ProxyJump hop fabric built for it."""
    out = [fab]
    gateway = fab.gateway
    while isinstance(gateway, fabric.Connection):
        out.append(gateway)
        gateway = gateway.gateway
    return out


def _harden(fab: Any, host: Host, ssh: SSHSettings, explicit: list[str]) -> _RecordingReject:
    """RejectPolicy, orch's known_hosts, exactly the configured keys, no agent forwarding.
    Returns the policy."""
    policy = _RecordingReject()
    fab.client.set_missing_host_key_policy(policy)
    fab.forward_agent = False    # whatever the ssh config says: a host never gets our agent
    known = _expand(ssh.known_hosts)
    if os.path.isfile(known):
        fab.client.load_host_keys(known)
    alias = fab.ssh_config.get("hostkeyalias")
    if alias:   # paramiko looks keys up by HostName; the ssh config says another name
        keys = fab.client.get_host_keys()
        entry = keys.lookup(failures.known_host_name(alias, fab.port))
        for keytype, key in (entry or {}).items():
            keys.add(failures.known_host_name(fab.host, fab.port), keytype, key)
    files: list[str] = []
    for k in fab.connect_kwargs.get("key_filename") or []:
        p = _expand(str(k))
        if p in files:
            continue
        if os.path.isfile(p):
            files.append(p)
        elif k in explicit:
            raise HostUnreachable(host.name, "auth", f"identity file {k} does not exist",
                                  hint="fix identity_file in the inventory or ssh.client_keys")
    kwargs = {k: v for k, v in fab.connect_kwargs.items() if k != "key_filename"}
    if files:
        kwargs.update(key_filename=files, allow_agent=False, look_for_keys=False)
    fab.connect_kwargs = kwargs
    return policy


def _unreachable(host: Host, ssh: SSHSettings, fab: Any, exc: BaseException,
                 policies: list[_RecordingReject]) -> HostUnreachable:
    """A failed connect -> HostUnreachable with one of its REASONS, as asyncssh's path says it."""
    where = failures.known_host_name(fab.host, fab.port)
    for hop, policy in zip(_chain(fab), policies, strict=True):
        if policy.offered is not None:
            _name, key = policy.offered
            name = hop.ssh_config.get("hostkeyalias") or hop.host
            return failures.hostkey_unknown(host.name, name, hop.port, key.fingerprint, ssh.known_hosts)
    if isinstance(exc, paramiko.BadHostKeyException):
        return failures.hostkey_changed(host.name, exc.hostname, exc.key.get_name(), exc.key.fingerprint)
    if isinstance(exc, paramiko.PasswordRequiredException):
        return failures.key_unusable(host.name, exc)
    if isinstance(exc, paramiko.AuthenticationException):
        return failures.auth_refused(host.name, where, exc)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        inner = list(exc.errors.values())   # one per address tried: refused on all is "refused"
        refused = inner and all(isinstance(e, ConnectionRefusedError) for e in inner)
        exc = ConnectionRefusedError() if refused else (inner[0] if inner else exc)
    if isinstance(exc, (EOFError, paramiko.SSHException, ConnectionResetError)):
        return failures.dropped(host.name, where, "connect", exc)
    return failures.network_failure(host.name, exc, where=where, address=fab.host,
                           connect_timeout=ssh.connect_timeout)


class FabricRemote:
    """One host over one fabric Connection: `run`, `run_as_root`, `put`, `close`.

    Sync (fabric is): callers run hosts in threads. A link that drops mid-command raises
    HostUnreachable("disconnected").
    """

    def __init__(self, host: Host, fab: Any, sudo_password: str | None,
                 sudo_prompt: str) -> None:
        self.host = host
        self._fab = fab
        self._password = sudo_password
        self._prompt = sudo_prompt
        self._uid: str | None = None
        self._sudo: str | None = None   # "nopass" | "password" once known

    def _dropped(self, exc: BaseException | None) -> HostUnreachable:
        return HostUnreachable(self.host.name, "disconnected",
                               f"connection to {self.host.address} dropped: {exc or 'the link closed'}",
                               hint="the host went away or the network cut; run provision again")

    def _invoke(self, method: Callable[..., Any], command: str, timeout: float,
                **kwargs: Any) -> CommandResult:
        # fabric reopens a dropped connection by itself on the next command; provision
        # says the host went away instead (a half-provisioned host is reported, not hidden).
        if not self._fab.is_connected:
            raise self._dropped(None)
        try:
            result = method(command, hide=True, warn=True, in_stream=False, pty=False,
                            timeout=timeout, **kwargs)
        except invoke.exceptions.CommandTimedOut as exc:
            out = exc.result.stdout if exc.result is not None else ""
            return CommandResult(TIMED_OUT, out, f"timed out after {timeout:g}s")
        except (paramiko.SSHException, EOFError, OSError, invoke.exceptions.ThreadException) as exc:
            raise self._dropped(exc) from None
        if result.exited == -1 or not self._fab.is_connected:   # no exit status: the link went
            raise self._dropped(None)
        return CommandResult(result.exited, result.stdout, result.stderr)

    def run(self, command: str, *, timeout: float = 60) -> CommandResult:
        """Run a POSIX sh snippet as the login user."""
        return self._invoke(self._fab.run, _sh(command), timeout)

    @property
    def is_root(self) -> bool:
        if self._uid is None:
            self._uid = self.run("id -u").stdout.strip()
        return self._uid == "0"

    def _route(self) -> str:
        """How this login user becomes root: "root" (it is), "nopass" (sudo asks for
        nothing) or "password"; PrivilegeError when the host has no sudo."""
        if self.is_root:
            return "root"
        if self._sudo is None:
            if not self.run("command -v sudo").ok:
                raise PrivilegeError(
                    f"{self.host.name}: needs root and sudo is not installed",
                    "log in as root to install it, or run the command below yourself")
            self._sudo = "nopass" if self.run("sudo -n true", timeout=30).ok else "password"
        return self._sudo

    def check_root(self, password_available: bool) -> None:
        """Raise PrivilegeError if run_as_root would (for --check: nothing is run as root)."""
        if self._route() == "password" and not (password_available or self._password is not None):
            raise self._needs_password()

    def _needs_password(self) -> PrivilegeError:
        return PrivilegeError(
            f"sudo on {self.host.name} asks for a password",
            "run `orch provision --ask-sudo-pass` (the password is read once, from the "
            "terminal), or give the login user passwordless sudo, or run the command "
            "below yourself")

    def run_as_root(self, command: str, *, timeout: float = 600) -> CommandResult:
        """Run a snippet as root: directly when the login user is root, else through sudo
        (without a password when sudo needs none, else with the one given, answered on
        the channel). Raises PrivilegeError when root cannot be had."""
        route = self._route()
        if route == "root":
            return self.run(command, timeout=timeout)
        if route == "nopass":
            return self.run("sudo -n " + _sh(command), timeout=timeout)
        if self._password is None:
            raise self._needs_password()
        try:
            result = self._invoke(self._fab.sudo, _sh(command), timeout,
                                  password=self._password, user="root")
        except invoke.exceptions.AuthFailure:
            raise PrivilegeError(f"sudo on {self.host.name} refused the password",
                                 "check the password (--ask-sudo-pass asks again)") from None
        # The prompt sudo printed (to stderr) is not part of what the command said.
        return CommandResult(result.exit_status, result.stdout,
                             result.stderr.replace(self._prompt, ""))

    def put(self, local: Path, remote: str) -> None:
        """Upload a file to an absolute remote path (SFTP, as the login user). OSError for
        a refused write (the caller reports it), HostUnreachable for a dropped link."""
        if not self._fab.is_connected:
            raise self._dropped(None)
        try:
            self._fab.put(str(local), remote=remote)
        except (paramiko.SSHException, EOFError) as exc:
            raise self._dropped(exc) from None

    def close(self) -> None:
        for fab in reversed(_chain(self._fab)):
            try:
                fab.close()
            except Exception:  # noqa: BLE001 - closing a dead link must not fail the run
                pass

    def __enter__(self) -> FabricRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _quiet_paramiko() -> None:
    """paramiko logs a dropped link from its own thread; orch reports it, once, itself."""
    logging.getLogger("paramiko").addHandler(logging.NullHandler())


def open_remote(host: Host, ssh: SSHSettings, *, sudo_password: str | None = None) -> FabricRemote:
    """Connect to `host` as strictly as transport/ssh.py does; raises HostUnreachable."""
    _quiet_paramiko()
    timeout = max(1, math.ceil(ssh.connect_timeout))
    explicit = ([host.identity_file] if host.identity_file else []) + list(ssh.client_keys)
    keys: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
    if explicit:
        keys["key_filename"] = list(explicit)
    # A prompt nobody else prints: the password is typed only after this exact text.
    prompt = f"[orch-sudo-{secrets.token_hex(6)}] password: "
    try:
        config = fabric.Config(ssh_config=_ssh_config(ssh), lazy=True, overrides={
            "connect_kwargs": keys, "timeouts": {"connect": timeout},
            "run": {"hide": True, "warn": True, "in_stream": False, "pty": False},
            "sudo": {"prompt": prompt}})
        fab = fabric.Connection(host.address, user=host.user or None, port=host.port or None,
                                config=config, connect_timeout=timeout, forward_agent=False)
    except Exception as exc:  # noqa: BLE001 - a bad ssh config: reported like any failure
        raise HostUnreachable(host.name, "other", f"cannot set up the connection: {exc}",
                              hint=f"check the host's address, user and port, and {ssh.config}") from None
    policies = [_harden(c, host, ssh, explicit) for c in _chain(fab)]
    try:
        fab.open()
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        for c in _chain(fab):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        raise _unreachable(host, ssh, fab, exc, policies) from None
    if ssh.keepalive_interval and fab.transport is not None:
        fab.transport.set_keepalive(max(1, int(ssh.keepalive_interval)))
    return FabricRemote(host, fab, sudo_password, prompt)


__all__ = ["FabricRemote", "PrivilegeError", "TIMED_OUT", "open_remote"]
