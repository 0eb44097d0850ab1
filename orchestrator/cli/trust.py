"""`orch trust HOST...`: explicit trust-on-first-use for host keys.

orch never accepts an unknown host key by itself (docs/SPEC.md "Security"); this command is
the one deliberate step that does, after a person has seen the SHA256 fingerprint. A key
that differs from the recorded one is refused unless `--replace` says the change is
expected (reinstalled host): the old entry is then removed, never silently shadowed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..atomic import replace_file
from ..errors import HostUnreachable, UsageError

if TYPE_CHECKING:
    from asyncssh import SSHKey

    from ..core.models import Host


def entry_name(name: str, port: int) -> str:
    """How known_hosts spells a host: `name` on port 22, `[name]:port` otherwise."""
    return name if port == 22 else f"[{name}]:{port}"


def _ip_of(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError):
        return ""


def trusted_keys(path: Path, name: str, ip: str, port: int) -> list:
    """The keys known_hosts trusts for this host (asyncssh's own matching rules)."""
    import asyncssh
    if not path.is_file():
        return []
    return list(asyncssh.read_known_hosts(str(path)).match(
        name, ip, port if port != 22 else None)[0])


def _pattern_is(pattern: str, candidates: set[str]) -> bool:
    if pattern.startswith("|1|"):  # hashed (HashKnownHosts yes)
        try:
            _, _, salt, digest = pattern.split("|", 3)
            salt_b, digest_b = base64.b64decode(salt), base64.b64decode(digest)
        except ValueError:
            return False
        return any(hmac.compare_digest(hmac.new(salt_b, c.encode(), hashlib.sha1).digest(),
                                       digest_b) for c in candidates)
    return pattern in candidates


def remove_entries(text: str, candidates: set[str]) -> tuple[str, int]:
    """Drop `candidates` from every plain host-key line; a line left with no host
    pattern goes. Comments, @cert-authority/@revoked lines and wildcards stay."""
    out: list[str] = []
    removed = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "@")):
            out.append(line)
            continue
        hosts, _, rest = stripped.partition(" ")
        patterns = hosts.split(",")
        keep = [p for p in patterns if not _pattern_is(p, candidates)]
        if len(keep) == len(patterns):
            out.append(line)
            continue
        removed += len(patterns) - len(keep)
        if keep:
            out.append(",".join(keep) + " " + rest + "\n")
    return "".join(out), removed


def _write_atomic(path: Path, text: str) -> None:
    """Replace known_hosts in one step (ssh never reads half a file), keeping its mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    replace_file(path, text, mode=mode)


def append_entry(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    _write_atomic(path, old + line + "\n")


@dataclass
class Outcome:
    name: str
    address: str = ""
    port: int = 22
    status: str = "unreachable"    # known, added, replaced, changed, declined, unreachable, local
    key_type: str | None = None
    fingerprint: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("known", "added", "replaced", "local")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port,
                "status": self.status, "key_type": self.key_type,
                "fingerprint": self.fingerprint, "ok": self.ok, "message": self.message}


def _ask(prompt: str) -> bool:
    """A yes/no on stdin; no stdin (EOF) means no."""
    try:
        return click.confirm(prompt, default=False, err=True)
    except click.exceptions.Abort:
        click.echo("", err=True)
        return False


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="HOST...")
@click.option("--replace", is_flag=True,
              help="Replace a recorded key that has changed (after you verified the new one).")
@click.option("--yes", "-y", is_flag=True, help="Trust without asking (no stdin needed).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def trust(ctx: click.Context, names: tuple[str, ...], replace: bool, yes: bool,
          as_json: bool) -> None:
    """Show each HOST's key fingerprint and record it in known_hosts (ssh.known_hosts)."""
    from ..transport import transport
    from ..transport.ssh import fetch_host_key, key_target

    app = ctx.obj
    hosts = [app.host(n) for n in dict.fromkeys(names)]  # unknown name: UsageError, exit 2
    ssh = app.settings.ssh
    kh = Path(os.path.expanduser(ssh.known_hosts))
    if kh.exists() and not kh.is_file():
        raise UsageError(f"{kh}: known_hosts is not a file (ssh.known_hosts)")
    from ..core.text import clean

    def say(msg: str) -> None:   # messages quote what hosts answered
        click.echo(clean(msg), err=as_json)

    async def fetch_all() -> list[Any]:
        async def one(h: Host) -> SSHKey | HostUnreachable | None:
            if not transport(h.connection).host_keys:
                return None
            try:
                return await fetch_host_key(h, ssh)
            except HostUnreachable as exc:
                return exc
        return list(await asyncio.gather(*(one(h) for h in hosts)))

    keys = asyncio.run(fetch_all())
    outcomes: list[Outcome] = []
    for host, key in zip(hosts, keys, strict=False):
        if key is None:
            outcomes.append(Outcome(host.name, host.address, status="local",
                                    message=f"connection: {host.connection} has no host key"))
            say(f"{host.name}: connection: {host.connection}, nothing to trust")
            continue
        name, port = key_target(host, ssh)
        out = Outcome(host.name, name, port)
        outcomes.append(out)
        if isinstance(key, HostUnreachable):
            out.message = str(key)
            say(f"{host.name}: cannot fetch the host key: {key.detail}")
            continue
        out.key_type = key.get_algorithm()
        out.fingerprint = key.get_fingerprint("sha256")
        ip = _ip_of(name)
        known = trusted_keys(kh, name, ip, port)
        shown = entry_name(name, port)
        if key in known:
            out.status = "known"
            out.message = f"already trusted in {kh}"
            say(f"{host.name}: {shown} {out.key_type} {out.fingerprint} is already trusted")
            continue
        if known and not replace:
            out.status = "changed"
            out.message = (f"the host key of {shown} has CHANGED: {kh} lists another key; "
                           f"verify with the host's owner, then `orch trust --replace {host.name}`")
            say(f"{host.name}: WARNING: {out.message}\n  now offered: {out.key_type} "
                f"{out.fingerprint}")
            continue
        verb = "Replace the recorded key with" if known else "Trust"
        say(f"{host.name}: {shown} offers {out.key_type} {out.fingerprint}")
        if not yes and not _ask(f"{verb} this key for {host.name} in {kh}?"):
            out.status = "declined"
            out.message = "not trusted (answer was not yes; --yes trusts without asking)"
            say(f"{host.name}: {out.message}")
            continue
        key_type_and_data = key.export_public_key("openssh").decode().split()[:2]
        line = " ".join([shown, *key_type_and_data])
        if known:
            candidates = {shown} | ({entry_name(ip, port)} if ip else set())
            text, _removed = remove_entries(kh.read_text(), candidates)
            _write_atomic(kh, text)
        append_entry(kh, line)
        left = [k for k in trusted_keys(kh, name, ip, port) if k != key]
        if left:
            out.status = "changed"
            out.message = (f"added the new key, but {kh} still lists another key for {shown} "
                           f"(a wildcard or @cert-authority entry?): edit it by hand")
            say(f"{host.name}: {out.message}")
            continue
        out.status = "replaced" if known else "added"
        out.message = f"recorded in {kh}"
        say(f"{host.name}: {out.status} {shown} {out.key_type} {out.fingerprint} in {kh}")
    if as_json:
        from ..render import print_json
        print_json([o.to_json() for o in outcomes])
    if not all(o.ok for o in outcomes):
        sys.stdout.flush()
        ctx.exit(1)
