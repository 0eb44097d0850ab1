"""Gather what `orch top` shows, refresh after refresh, over connections kept open.

Why kept connections: the key exchange is the expensive part of a probe (a warm re-probe
of 50 hosts costs ~0.15 s on a 2-core machine against ~1.1 s cold), and a view refreshed
every 2 s would otherwise pay it at every refresh. The Fleet keeps one connection per
host for the watcher's whole life.

Why one probe per host, each on its own: a host that stops answering must not hold up
the others. Each probe is bounded: ssh.connect_timeout to connect, then, over a link that
answered last time, the same again for the probe (the first probe on a new link gets the
bounds of `orch hosts`: a cold start of many hosts is slow, not down). A refresh
waits for the probes at most as long as it is told and shows the others with their last
answer and how long the current question has been outstanding. A probe that fails forgets
the host's connection (a dropped link, a wedged host), so a later refresh connects afresh
instead of reusing a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..app import App
from ..core.models import HostFacts, Task
from ..errors import HostUnreachable, OrchError
from ..fleet.pool import Fleet
from ..job import remote
from . import snapshot as snap_mod
from .snapshot import HostSample, Snapshot

LOG_LINES = 80                 # raw job.log lines fetched for the selected task
LOCAL_LOG_TAIL_BYTES = 256 * 1024


class Watcher:
    """`await watcher.refresh()` -> Snapshot; or `start_round()` + `snapshot()` for a
    view that draws while probes are out (`changed` is set whenever an answer arrives)."""

    def __init__(self, app: App, fleet: Fleet, *, interval: float,
                 log_lines: int = LOG_LINES) -> None:
        self.app = app
        self.fleet = fleet
        self.interval = interval
        self.timeout = fleet.settings.ssh.connect_timeout   # per probe on an open link
        self.log_lines = log_lines
        self.selected: str | None = None
        self.changed = asyncio.Event()
        self._tasks: list[Task] = []
        self._spent = 0.0
        self._samples: dict[str, HostSample] = {}
        self._probes: dict[str, tuple[asyncio.Task[None], float]] = {}   # name -> (probe, asked at)
        self._log_read: asyncio.Task[None] | None = None
        self._log: tuple[str, list[str]] | None = None
        self.log_note: str | None = None
        self._crash: BaseException | None = None
        self._blank = [HostFacts(name=h.name, address=h.address, reachable=False,
                                 specialties=list(h.specialties), max_tasks=h.max_tasks,
                                 enabled=h.enabled) for h in fleet.hosts.values()]

    # ------------------------------------------------------------------ rounds
    async def start_round(self) -> None:
        """Read the store, ask every host that has no question outstanding, and fetch the
        selected task's log tail. Returns once the store is read; the rest runs on."""
        self._raise_crash()
        self._tasks, self._spent = await asyncio.to_thread(self._read_store)
        now = time.time()
        for name in self.fleet.hosts:
            if name not in self._probes:
                self._probes[name] = (self._spawn(self._sample(name)), now)
        self.fetch_log()

    def fetch_log(self) -> None:
        """Fetch the selected task's log tail now, unless a fetch is already out."""
        self._raise_crash()
        if self._log_read is not None and not self._log_read.done():
            return
        target = self.snapshot().selected
        task = self.task(target) if target else None
        if task is not None:
            self._log_read = self._spawn(self._read_log(task))

    async def refresh(self, wait: float | None = None) -> Snapshot:
        """One round; waits for its answers at most `wait` seconds (None: until every
        probe has answered or timed out, which its own bounds guarantee)."""
        await self.start_round()
        pending = [p for p, _ in self._probes.values()]
        if self._log_read is not None and not self._log_read.done():
            pending.append(self._log_read)
        if pending:
            await asyncio.wait(pending, timeout=wait)
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        self._raise_crash()
        now = time.time()
        waiting = {}
        for name, (_, asked) in self._probes.items():
            sample = self._samples.get(name)
            if sample is None or sample.taken_at < asked:
                waiting[name] = max(0.0, now - asked)
        log_task, log = self._log if self._log is not None else (None, [])
        return snap_mod.build(tasks=self._tasks, facts=self._blank, samples=self._samples,
                              waiting=waiting, spent_usd=self._spent,
                              limit_usd=self.app.settings.agent.daily_budget_usd, now=now,
                              interval=self.interval, selected=self.selected,
                              log_task=log_task, log=log, log_note=self.log_note)

    def task(self, task_id: str) -> Task | None:
        """The task as the last round read it."""
        return next((t for t in self._tasks if t.id == task_id), None)

    async def close(self) -> None:
        pending = [p for p, _ in self._probes.values()]
        if self._log_read is not None:
            pending.append(self._log_read)
        for p in pending:
            p.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._probes.clear()

    # ------------------------------------------------------------------ the parts
    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A background part of a round; a bug in it surfaces at the next round or
        snapshot instead of vanishing with the task."""
        task = asyncio.create_task(work)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None and self._crash is None:
                self._crash = t.exception()
                self.changed.set()
        task.add_done_callback(done)
        return task

    def _raise_crash(self) -> None:
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash

    def _read_store(self) -> tuple[list[Task], float]:
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return self.app.store.list(), self.app.store.spent_since(midnight)

    async def _sample(self, name: str) -> None:
        """Probe one host, then read the status of each job the store runs there."""
        # Over a link that answered last time, the tight bound: a host that stops answering
        # shows down within one interval plus it. A first probe on a new link gets the
        # Fleet's usual bounds (those of `orch hosts`): a cold start of many hosts is slow,
        # and that is no outage. The Fleet bounds the connect and the probe either way.
        last = self._samples.get(name)
        warm = last is not None and snap_mod.host_is_up(last.facts)
        try:
            facts = await self.fleet.probe_one(name, timeout=self.timeout if warm else None)
            up = snap_mod.host_is_up(facts)
            statuses = await self._statuses(name) if up else {}
            self._samples[name] = HostSample(facts=facts, taken_at=time.time(), statuses=statuses)
            self.changed.set()
            if not up:
                # A refused connect is remembered by the Fleet, a probe that timed out may
                # sit on a dead link: either way the next round must try afresh.
                await self.fleet.forget(name)
        finally:
            self._probes.pop(name, None)

    async def _statuses(self, name: str) -> dict[str, remote.JobStatus]:
        mine = [t for t in self._tasks if t.status == "running" and t.host == name and t.workspace]
        if not mine:
            return {}
        try:
            conn = await self.fleet.connection(name)
        except HostUnreachable:
            return {}

        async def one(t: Task) -> remote.JobStatus | None:
            return await asyncio.wait_for(remote.read_status(conn, t.workspace or ""), self.timeout)

        got = await asyncio.gather(*(one(t) for t in mine), return_exceptions=True)
        out: dict[str, remote.JobStatus] = {}
        for t, status in zip(mine, got, strict=True):
            if isinstance(status, remote.JobStatus):
                out[t.id] = status
            elif isinstance(status, BaseException) and not isinstance(
                    status, (OrchError, TimeoutError)):
                raise status       # a bug, not a host's trouble: _spawn surfaces it
        return out

    async def _read_log(self, task: Task) -> None:
        """The last lines of the task's log: from its host while it runs, else orch's copy."""
        try:
            if task.status == "running" and task.host and task.workspace:
                sample = self._samples.get(task.host)
                if sample is not None and not snap_mod.host_is_up(sample.facts):
                    raise HostUnreachable(task.host, "other", f"{task.host} is down")
                conn = await asyncio.wait_for(self.fleet.connection(task.host),
                                              self.fleet.settings.ssh.connect_timeout + 1.0)
                text = await asyncio.wait_for(
                    remote.log_tail(conn, task.workspace, self.log_lines), self.timeout)
                lines = text.splitlines()
            else:
                lines = await asyncio.to_thread(self.local_log, task, self.log_lines)
            self._log, self.log_note = (task.id, lines), None
        except (OrchError, TimeoutError, OSError) as exc:
            why = exc.message if isinstance(exc, OrchError) else (str(exc) or "timed out")
            self._log, self.log_note = (task.id, []), f"log unavailable: {why}"
        self.changed.set()

    def local_log(self, task: Task, lines: int) -> list[str]:
        """The last `lines` lines of orch's own copy of the task's log ([] if none)."""
        path = Path(task.log_path) if task.log_path else self.app.task_log_path(task.id)
        if not path.is_file():
            return []
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOCAL_LOG_TAIL_BYTES))
            data = fh.read()
        found = data.decode("utf-8", errors="replace").splitlines()
        if size > LOCAL_LOG_TAIL_BYTES and found:
            found = found[1:]          # the first line was cut
        return found[-lines:]


@contextlib.asynccontextmanager
async def watching(app: App, *, interval: float) -> AsyncIterator[Watcher]:
    """A Watcher over a Fleet of the inventory's hosts, both closed at exit."""
    async with app.fleet() as fleet:
        watcher = Watcher(app, fleet, interval=interval)
        try:
            yield watcher
        finally:
            await watcher.close()
