"""What orch says when a host cannot be reached, whichever SSH engine tried.

asyncssh (transport/ssh.py: probes, jobs) and fabric (transport/fabric.py: provision)
fail in their own exception types; both map them to these HostUnreachable values, so a
user reads the same words and the same hint (`orch trust HOST` for an unknown key) for
the same problem, and code can rely on one set of `reason`s.
"""

from __future__ import annotations

import errno
import socket

from ..errors import HostUnreachable


def known_host_name(address: str, port: int | None) -> str:
    """The known_hosts spelling of a host: `addr` on port 22, else `[addr]:port`."""
    return address if not port or port == 22 else f"[{address}]:{port}"


def hostkey_changed(host_name: str, shown: str, algorithm: str, fp: str) -> HostUnreachable:
    """A key that differs from the recorded one: refused until a person says otherwise."""
    return HostUnreachable(
        host_name, "hostkey-changed",
        f"host key for {shown} has CHANGED (server now offers {algorithm} {fp}); "
        f"refusing to connect",
        hint=f"verify the new key with the host's owner, then `orch trust --replace {host_name}`")


def hostkey_unknown(host_name: str, name: str, port: int, fp: str, kh_file: str) -> HostUnreachable:
    """A key that known_hosts does not list: never accepted, `orch trust` is the way."""
    shown = known_host_name(name, port)
    scan = f"ssh-keyscan -p {port} {name}" if port != 22 else f"ssh-keyscan {name}"
    return HostUnreachable(
        host_name, "hostkey-unknown",
        f"host key for {shown} is not in known_hosts {kh_file} (server offers {fp})",
        hint=f"`orch trust {host_name}`, or `{scan} >> {kh_file}` after checking the fingerprint")


def auth_refused(host_name: str, where: str, exc: BaseException) -> HostUnreachable:
    return HostUnreachable(host_name, "auth", f"authentication refused by {where}: {exc}",
                           hint="check the user, identity_file / ssh.client_keys and the "
                                "host's authorized_keys")


def key_unusable(host_name: str, exc: BaseException) -> HostUnreachable:
    return HostUnreachable(host_name, "auth", f"cannot use an identity file: {exc}",
                           hint="an encrypted key needs ssh-agent; check identity_file")


def dropped(host_name: str, where: str, during: str, exc: BaseException | None) -> HostUnreachable:
    return HostUnreachable(host_name, "disconnected",
                           f"connection to {where} dropped during {during}: {exc or 'EOF'}")


def network_failure(host_name: str, exc: BaseException, *, where: str, address: str,
                    connect_timeout: float) -> HostUnreachable:
    """A failure below SSH (timeout, refused, DNS, routing), or "other" for the rest."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return HostUnreachable(host_name, "timeout",
                               f"no SSH answer from {where} within {connect_timeout:g}s",
                               hint="is the host up and sshd listening? (ssh.connect_timeout)")
    if isinstance(exc, ConnectionRefusedError):
        return HostUnreachable(host_name, "refused", f"connection refused by {where}",
                               hint="sshd is not running or listens on another port")
    if isinstance(exc, socket.gaierror):
        return HostUnreachable(host_name, "dns", f"cannot resolve {address}: {exc.strerror}",
                               hint="check the address, or the alias in your ssh config")
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return HostUnreachable(host_name, "other", f"no route to {where}: {exc.strerror}")
    if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
        return HostUnreachable(host_name, "timeout", f"connection to {where} timed out")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return HostUnreachable(host_name, "other", f"cannot reach {where}: {detail}")
