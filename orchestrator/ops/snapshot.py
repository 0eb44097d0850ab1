"""What `orch top` shows, as data: the hosts, the live and the recently finished tasks,
the day's spend and the tail of one task's log.

Pure: built from the store's tasks, the latest probe of each host (HostFacts) and the
status files of running jobs (JobStatus). It knows nothing of SSH or the terminal, so
the view and `orch top --json` are tested without either; ops/watch.py gathers the
inputs, render/top.py draws them.

Task kinds and parents are `Task.kind` / `Task.parent` (core/models.py; tasks stored
before those fields existed are migrated to plain issues as they are read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.models import FINISHED_STATUSES, LIVE_STATUSES, HostFacts, Task
from ..job.remote import JobStatus
from ..store import parse_time

RECENT_FINISHED = 5        # finished tasks listed under the live ones
SHOWN_FINISHED = FINISHED_STATUSES + ("lost",)


@dataclass
class HostSample:
    """The latest probe of one host as the watcher holds it."""

    facts: HostFacts
    taken_at: float                        # epoch seconds when the probe ended
    statuses: dict[str, JobStatus] = field(default_factory=dict)   # task id -> its job's status


@dataclass
class HostRow:
    name: str
    address: str
    specialties: list[str]
    enabled: bool
    up: bool | None                        # None: no probe has answered yet
    reason: str | None                     # why it is down (or what is wrong with it)
    error_kind: str | None
    load1: float | None
    cpus: int | None
    load_per_cpu: float | None
    mem_available_mb: int | None
    mem_total_mb: int | None
    disk_free_mb: int | None
    slots_used: int
    slots_max: int
    agent_version: str | None
    notes: list[str]
    age_seconds: float | None              # since the shown probe ended
    waiting_seconds: float | None          # a probe asked and not answered for this long


@dataclass
class TaskRow:
    id: str
    kind: str
    parent: str | None
    depth: int                             # 1: listed under its parent
    repo: str
    issue: int
    title: str
    status: str
    host: str | None
    step: str | None
    elapsed_seconds: float | None
    turns: int | None
    cost_usd: float | None
    pr_url: str | None
    error: str | None
    finished_at: str | None

    @property
    def ref(self) -> str:
        return f"{self.repo}#{self.issue}"

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass
class Budget:
    spent_usd: float                       # finished since 00:00 UTC (what poll enforces)
    running_usd: float                     # spent so far by the jobs still running
    limit_usd: float | None                # agent.daily_budget_usd

    @property
    def left_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd - self.running_usd)


@dataclass
class Snapshot:
    taken_at: float
    interval: float
    hosts: list[HostRow]
    tasks: list[TaskRow]                   # live: running first, then queued
    finished: list[TaskRow]                # the most recent first
    budget: Budget
    selected: str | None
    log_task: str | None                   # whose lines `log` holds
    log: list[str]                         # raw job.log lines, oldest first
    log_note: str | None = None            # why there is no log to show

    @property
    def rows(self) -> list[TaskRow]:
        """Every selectable task, in the order shown."""
        return self.tasks + self.finished

    def row(self, task_id: str | None) -> TaskRow | None:
        return next((r for r in self.rows if r.id == task_id), None)


def _at(value: str | None) -> datetime | None:
    """A stored timestamp; None when absent or unreadable (a view never fails on one)."""
    try:
        return parse_time(value) if value else None
    except ValueError:
        return None


def _seconds(start: str | None, end: datetime) -> float | None:
    began = _at(start)
    return None if began is None else max(0.0, (end - began).total_seconds())


def host_is_up(facts: HostFacts) -> bool:
    """Answered, and the probe ran to its end (a probe that timed out is not an answer)."""
    return facts.reachable and not facts.error


def step_label(status: JobStatus | None) -> str | None:
    """The job's step as its status file says, with what the step alone does not say:
    a job that ended (poll has not finalized it yet), one whose process group is gone,
    and the fix loop (the job keeps step=tests while the agent fixes failing tests)."""
    if status is None:
        return None
    if status.final:
        return f"ended: {status.state}"
    step = status.step or "starting"
    if status.vanished:
        return f"{step} (job gone)"
    if step == "tests" and status.tests == "failed":
        return "tests → fix"
    return step


def _host_row(host_name: str, sample: HostSample | None, fallback: HostFacts,
              stored_running: int, now: float, waiting: float | None) -> HostRow:
    facts = sample.facts if sample is not None else fallback
    up = host_is_up(facts) if sample is not None else None
    reported = (facts.running_tasks or 0) if up else 0
    return HostRow(
        name=host_name, address=facts.address, specialties=list(facts.specialties),
        enabled=facts.enabled, up=up, reason=facts.error if sample is not None else None,
        error_kind=facts.error_kind, load1=facts.load1, cpus=facts.cpus,
        load_per_cpu=facts.load_per_cpu, mem_available_mb=facts.mem_available_mb,
        mem_total_mb=facts.mem_total_mb, disk_free_mb=facts.disk_free_mb,
        # A job the store started may not show on its host yet, and the other way round.
        slots_used=max(reported, stored_running), slots_max=facts.max_tasks,
        agent_version=facts.agent_version, notes=list(facts.notes),
        age_seconds=None if sample is None else max(0.0, now - sample.taken_at),
        waiting_seconds=waiting)


def _task_row(task: Task, status: JobStatus | None, now: datetime, depth: int) -> TaskRow:
    live = task.status in LIVE_STATUSES
    if task.status == "running":
        elapsed = _seconds(task.started_at, now)
        step = step_label(status) if status is not None else None
        turns = status.turns if status is not None and status.turns is not None else task.turns
        cost = status.cost_usd if status is not None and status.cost_usd is not None else task.cost_usd
    elif live:
        elapsed, step, turns, cost = _seconds(task.created_at, now), None, task.turns, task.cost_usd
    else:
        end = _at(task.finished_at)
        elapsed = _seconds(task.started_at, end) if end is not None else None
        step, turns, cost = None, task.turns, task.cost_usd
    return TaskRow(id=task.id, kind=task.kind, parent=task.parent, depth=depth,
                   repo=task.repo, issue=task.issue, title=task.title, status=task.status,
                   host=task.host, step=step, elapsed_seconds=elapsed, turns=turns,
                   cost_usd=cost, pr_url=task.pr_url, error=task.error,
                   finished_at=task.finished_at)


def order_live(tasks: Iterable[Task]) -> list[tuple[Task, int]]:
    """Live tasks, running (oldest start first) then queued (oldest first), each task's
    parts right under it (depth 1). A part whose parent is not live is listed alone."""
    live = [t for t in tasks if t.status in LIVE_STATUSES]
    live.sort(key=lambda t: (t.status != "running", t.started_at or t.created_at or "", t.id))
    ids = {t.id for t in live}
    children: dict[str, list[Task]] = {}
    for t in live:
        parent = t.parent
        if parent in ids and parent != t.id:
            children.setdefault(parent, []).append(t)
    out: list[tuple[Task, int]] = []
    for t in live:
        if t.parent in ids and t.parent != t.id:
            continue
        out.append((t, 0))
        out.extend((c, 1) for c in children.get(t.id, []))
    return out


def recent_finished(tasks: Iterable[Task], limit: int = RECENT_FINISHED) -> list[Task]:
    done = [t for t in tasks if t.status in SHOWN_FINISHED]
    done.sort(key=lambda t: t.finished_at or t.started_at or t.created_at or "", reverse=True)
    return done[:limit]


def build(*, tasks: Sequence[Task], facts: Sequence[HostFacts],
          samples: Mapping[str, HostSample], waiting: Mapping[str, float] | None = None,
          spent_usd: float, limit_usd: float | None, now: float, interval: float,
          selected: str | None = None, log_task: str | None = None,
          log: Sequence[str] = (), log_note: str | None = None) -> Snapshot:
    """The snapshot. `facts` lists every host (inventory order; HostFacts with what the
    inventory says, for hosts whose probe has not answered yet); `samples` holds the
    latest probe per host; `waiting` the hosts whose current probe is outstanding."""
    waiting = waiting or {}
    moment = datetime.fromtimestamp(now, UTC)
    stored: dict[str, int] = {}
    for t in tasks:
        if t.status == "running" and t.host:
            stored[t.host] = stored.get(t.host, 0) + 1
    hosts = [_host_row(f.name, samples.get(f.name), f, stored.get(f.name, 0), now,
                       waiting.get(f.name)) for f in facts]
    statuses: dict[str, JobStatus] = {}
    for s in samples.values():
        statuses.update(s.statuses)
    live = [_task_row(t, statuses.get(t.id), moment, depth) for t, depth in order_live(tasks)]
    done = [_task_row(t, None, moment, 0) for t in recent_finished(tasks)]
    running_usd = sum(r.cost_usd or 0.0 for r in live if r.status == "running")
    rows = live + done
    chosen = selected if any(r.id == selected for r in rows) else (rows[0].id if rows else None)
    return Snapshot(taken_at=now, interval=interval, hosts=hosts, tasks=live, finished=done,
                    budget=Budget(spent_usd=spent_usd, running_usd=running_usd,
                                  limit_usd=limit_usd),
                    selected=chosen, log_task=log_task if log_task == chosen else None,
                    log=list(log) if log_task == chosen else [],
                    log_note=log_note if log_task == chosen else None)


def move(snapshot: Snapshot, selected: str | None, step: int) -> str | None:
    """The task `step` rows below (negative: above) `selected`, clamped to the list."""
    ids = [r.id for r in snapshot.rows]
    if not ids:
        return None
    at = ids.index(selected) if selected in ids else 0
    return ids[max(0, min(len(ids) - 1, at + step))]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Figures of time and load have no use for float noise in JSON; costs keep theirs.
_DECIMALS = {"age_seconds": 1, "waiting_seconds": 1, "elapsed_seconds": 1, "load_per_cpu": 3}


def _rounded(data: dict[str, Any]) -> dict[str, Any]:
    for key, places in _DECIMALS.items():
        if isinstance(data.get(key), float):
            data[key] = round(data[key], places)
    return data


def snapshot_json(snap: Snapshot, log_lines: list[str] | None = None) -> dict[str, Any]:
    """`orch top --json` (docs/monitoring.md documents the shape). `log_lines` replaces
    the raw log lines (render/top.py passes them rendered as `orch logs` shows them)."""
    def task(r: TaskRow) -> dict[str, Any]:
        data = asdict(r)
        data["ref"] = r.ref
        return _rounded(data)

    b = snap.budget
    return {
        "taken_at": _iso(snap.taken_at),
        "interval": snap.interval,
        "hosts": [_rounded(asdict(h)) for h in snap.hosts],
        "tasks": [task(r) for r in snap.tasks],
        "finished": [task(r) for r in snap.finished],
        "budget": {"spent_usd": round(b.spent_usd, 6), "running_usd": round(float(b.running_usd), 6),
                   "limit_usd": b.limit_usd,
                   "left_usd": None if b.left_usd is None else round(b.left_usd, 6)},
        "selected": snap.selected,
        "log": {"task_id": snap.log_task, "note": snap.log_note,
                "lines": list(snap.log) if log_lines is None else log_lines},
    }
