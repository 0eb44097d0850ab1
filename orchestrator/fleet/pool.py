"""The hosts of one orch run and their connections: opened lazily, at most one per host.

Why one per host: a key exchange is the expensive part of talking to a host, and sshd
drops unauthenticated connections beyond MaxStartups; every command of a run (probe,
dispatch, poll, logs) shares the host's one connection, which multiplexes sessions.

Concurrent callers asking for the same host share one connection attempt. A failed
attempt is remembered for the rest of the run (a dead host costs one connect_timeout,
not one per caller); `forget(name)` allows a fresh attempt. A connection whose link
dropped is replaced by a new one on the next `connection(name)`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from ..config.settings import Settings
from ..core.models import Host, HostFacts
from ..errors import HostUnreachable, UsageError
from ..transport import connect
from ..transport.base import Connection
from . import facts as facts_mod
from .agent_cache import AgentVersionCache


class Fleet:
    """`async with Fleet(hosts, settings) as fleet:` ... every connection closed at exit."""

    def __init__(self, hosts: Iterable[Host], settings: Settings, *,
                 version_cache: AgentVersionCache | None = None) -> None:
        self.hosts: dict[str, Host] = {}
        for h in hosts:
            self.hosts[h.name] = h
        self.settings = settings
        # Agent versions known from earlier probes (None: every probe runs --version).
        self.version_cache = version_cache
        self._attempts: dict[str, asyncio.Future[Connection]] = {}

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts) or "none"
            raise UsageError(f"no host named {name!r} in the inventory (known: {known})") from None

    async def connection(self, name: str) -> Connection:
        """The host's connection, opened on first use; raises HostUnreachable."""
        host = self.host(name)
        attempt = self._attempts.get(name)
        if attempt is not None and _is_dead(attempt):
            attempt = None  # the link dropped since: a new connection, not a dead one
        if attempt is None:
            attempt = asyncio.ensure_future(connect(host, self.settings.ssh))
            self._attempts[name] = attempt
        # shield: one impatient caller cancelling must not cancel the shared attempt.
        return await asyncio.shield(attempt)

    async def forget(self, name: str) -> None:
        """Close and drop the host's connection (or failed attempt): the next
        `connection(name)` tries again."""
        attempt = self._attempts.pop(name, None)
        if attempt is not None:
            await _close_attempt(attempt)

    async def probe_one(self, name: str, *, timeout: float | None = None) -> HostFacts:
        """Facts for one host; an unreachable host is reported, never raised.

        The connect is bounded by ssh.connect_timeout. With `timeout`, the probe on the
        open connection is bounded by it as a whole (a live view, `orch top`, re-probing
        over a kept connection). Without, the probe script gets connect_timeout, at least
        10 s, and opening its session as long again (a host under heavy load is slow to
        fork a session; that is not a hung host).
        """
        host = self.host(name)
        started = time.monotonic()
        cache = self.version_cache
        cached = cache.lookup(name, facts_mod.agent_of(host, self.settings)) if cache else None
        if timeout is None:
            script = max(self.settings.ssh.connect_timeout, 10.0)
            whole = 2 * script
        else:
            script = whole = timeout
        try:
            conn = await self.connection(name)
            # The probe itself is bounded too: a wedged host must not hold up the report.
            # Bounded here as a whole, session open included: over a link whose host hangs,
            # the channel open itself never completes.
            result = await asyncio.wait_for(
                facts_mod.probe(conn, host, self.settings, cached=cached, timeout=script), whole)
        except TimeoutError:
            exc = HostUnreachable(name, "timeout", f"no answer on the open connection to "
                                                   f"{host.address} within {whole:g}s")
            return facts_mod.unreachable(host, exc, time.monotonic() - started)
        except HostUnreachable as exc:
            return facts_mod.unreachable(host, exc, time.monotonic() - started)
        result.probe_seconds = time.monotonic() - started
        return result

    async def probe(self, names: Iterable[str] | None = None) -> list[HostFacts]:
        """Probe the hosts (all, enabled or not, by default) concurrently, in inventory
        order. Disabled hosts are probed and reported with enabled=False."""
        chosen = list(names) if names is not None else list(self.hosts)
        for n in chosen:
            self.host(n)  # unknown names fail before any connection is made
        found = list(await asyncio.gather(*(self.probe_one(n) for n in chosen)))
        if self.version_cache is not None:
            self.version_cache.record(
                (f, facts_mod.agent_of(self.hosts[f.name], self.settings)) for f in found)
        return found

    async def close(self) -> None:
        attempts, self._attempts = list(self._attempts.values()), {}
        if attempts:
            await asyncio.gather(*(_close_attempt(a) for a in attempts))


def _is_dead(attempt: asyncio.Future[Connection]) -> bool:
    """A connection that was open and has since dropped (a failed attempt is not
    "dead": it stays cached until forget(), so a down host costs one timeout per run)."""
    if not attempt.done() or attempt.cancelled() or attempt.exception() is not None:
        return False
    return bool(getattr(attempt.result(), "closed", False))


async def _close_attempt(attempt: asyncio.Future[Connection]) -> None:
    if not attempt.done():
        attempt.cancel()
        try:
            await attempt
        except BaseException:  # noqa: BLE001 - cancelled or failed: nothing to close
            return
        return
    if attempt.cancelled() or attempt.exception() is not None:
        return
    try:
        await attempt.result().close()
    except Exception:  # noqa: BLE001 - closing a dead link must not fail the run
        pass
