"""Counts over tasks that metrics and the daily budget need, without the tasks themselves.

The store keeps only live and recent tasks in memory-sized form; the rest are counted
where they are kept (the archive answers with these same counts). So every number that
describes "all tasks" is a TaskTally: tallied here for a list of tasks, by the archive for
its rows, and added up. The rules (what a duration is, which stamp a spend counts at)
live here only, so both sides count alike. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .models import TASK_STATUSES, Task

FINISHED = ("succeeded", "failed", "cancelled")


def parse_stamp(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp field as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def duration_seconds(task: Task) -> float | None:
    """Wall time of a task's last run (started to finished), or None if unknown."""
    start, end = parse_stamp(task.started_at), parse_stamp(task.finished_at)
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def spend_stamp(task: Task) -> datetime | None:
    """When a task's cost counts against a day's budget: when it finished, or for a lost
    task (its agent ran and cost, even if it never finished) when it started."""
    return parse_stamp(task.finished_at or (task.started_at if task.status == "lost" else None))


@dataclass
class TaskTally:
    """How many tasks of each kind, and what they cost since `since`."""

    since: datetime
    by_status: Counter[str] = field(default_factory=Counter)
    # (status, seconds) -> tasks: finished tasks whose duration is known
    durations: Counter[tuple[str, float]] = field(default_factory=Counter)
    failed_errors: Counter[str] = field(default_factory=Counter)   # error text ('' = none)
    running_by_host: Counter[str] = field(default_factory=Counter)
    spent: float = 0.0                                             # USD since `since`

    def add(self, other: TaskTally) -> TaskTally:
        """self + other (same `since`), as a new tally."""
        return TaskTally(self.since, self.by_status + other.by_status,
                         self.durations + other.durations,
                         self.failed_errors + other.failed_errors,
                         self.running_by_host + other.running_by_host,
                         self.spent + other.spent)

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)

    def statuses(self) -> dict[str, int]:
        """Every status (zero included) with its count."""
        return {s: self.count(s) for s in TASK_STATUSES}


def tally(tasks: Iterable[Task], since: datetime) -> TaskTally:
    """The tally of `tasks` (any iterable of Task)."""
    out = TaskTally(since)
    for t in tasks:
        out.by_status[t.status] += 1
        if t.status in FINISHED:
            d = duration_seconds(t)
            if d is not None:
                out.durations[(t.status, d)] += 1
        if t.status == "failed":
            out.failed_errors[t.error or ""] += 1
        if t.status == "running" and t.host:
            out.running_by_host[t.host] += 1
        stamp = spend_stamp(t)
        if t.cost_usd and stamp is not None and stamp >= since:
            out.spent += float(t.cost_usd)
    return out
