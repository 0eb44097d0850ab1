"""Prometheus text exposition of the task store and the last host probe.

orch is a CLI, not a daemon: there is no process for Prometheus to scrape. So every
`orch metrics` / `orch poll` computes the metrics from scratch, from the state file
(tasks) and a probe (HostFacts), and writes them for node_exporter's textfile collector.
"Counter" metrics are therefore counts over the store, which only grows, so they behave
as counters should (monotonic) as long as the state file is kept.

Why prometheus_client rather than hand-written text: the exposition format has sharp
edges that are easy to get subtly wrong and hard to notice until a scrape fails -
escaping of label values (host names and error kinds come from users), HELP/TYPE
lines, `_total` suffixes on counters, cumulative histogram buckets with `+Inf`,
`_sum`/`_count`. The library's metric families and `generate_latest` produce text its
own parser (and Prometheus) accept. A fresh CollectorRegistry per call (never the
process-global one) keeps renders independent and free of `_created` samples and of
the python_*/process_* collectors that would describe the short-lived CLI process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..atomic import replace_file
from ..core.models import TASK_STATUSES, HostFacts, Task
from ..core.tally import TaskTally, tally
from ..errors import UsageError

# Agent runs take minutes to hours (agent.timeout defaults to 45m).
DURATION_BUCKETS: tuple[float, ...] = (30, 60, 120, 300, 600, 900, 1200, 1800, 2700,
                                       3600, 5400, 7200, 10800, 14400)
COMPLETED_STATUSES = ("succeeded", "failed", "cancelled")
ERROR_TYPES = ("timeout", "max_turns", "cost", "agent_error", "tests_failed",
               "push_failed", "lost", "other")

# Checked in order: the most specific cause first ("agent error: max turns" is max_turns).
_ERROR_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx, re.IGNORECASE)) for kind, rx in (
        ("lost", r"\blost\b|\bhost\b.*\b(vanished|unreachable|gone|died|rebooted)\b"),
        ("timeout", r"\btime(d)?[ _-]?out\b|\btimeout\b"),
        ("max_turns", r"max[ _-]?turns|maximum (number of )?turns|turn limit"),
        ("cost", r"\bcost\b|max[ _-]?cost|budget|\busd\b"),
        ("tests_failed", r"\btests?\b.*\bfail|\bfail\w*\b.*\btests?\b"),
        ("push_failed", r"\bpush\b"),
        ("agent_error", r"\bagent\b|\bclaude\b|is_error|error_during_execution"),
    ))


def error_type(error: str | None) -> str:
    """Classify a failed task's error text into one of ERROR_TYPES.

    Producers are encouraged to start errors with the kind ("timeout: ran 45m",
    "tests_failed: 3 failing"); free text is matched by keywords, else "other".
    """
    if not error:
        return "other"
    head = error.split(":", 1)[0].strip().lower().replace(" ", "_").replace("-", "_")
    generic = ("agent_error", "other")
    if head in ERROR_TYPES and head not in generic:
        return head
    # "agent error: error_max_turns" says more than its prefix: look inside first.
    for kind, rx in _ERROR_PATTERNS:
        if rx.search(error):
            return kind
    return head if head in generic else "other"


def daily_spend(tasks: Iterable[Task], now: datetime | None = None) -> float:
    """USD spent by tasks finished (or lost) since 00:00 UTC today: the fleet budget's basis.

    Same rule as Store.spent_since (core.tally), so the metric matches what poll enforces.
    """
    return tally(tasks, day_start(now)).spent


def day_start(now: datetime | None = None) -> datetime:
    """00:00 UTC of `now`'s day (default: today): where the daily spend starts."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class _Snapshot(Collector):
    """Yields the metric families of one tally of tasks (Store.tally) and host facts."""

    def __init__(self, counts: TaskTally, facts: list[HostFacts]) -> None:
        self.counts = counts
        self.facts = facts

    def collect(self) -> Iterator[Metric]:
        counts, facts = self.counts, self.facts

        durations = [(d, n) for (status, d), n in counts.durations.items()
                     if status in COMPLETED_STATUSES]
        buckets = [(_le(b), float(sum(n for d, n in durations if d <= b)))
                   for b in DURATION_BUCKETS]
        buckets.append(("+Inf", float(sum(n for _, n in durations))))
        yield HistogramMetricFamily(
            "orch_task_execution_seconds",
            "Wall time of finished tasks (succeeded, failed, cancelled), start to finish.",
            buckets=buckets, sum_value=float(sum(d * n for d, n in durations)))

        completed = CounterMetricFamily(
            "orch_tasks_completed", "Tasks that reached a final status, by status.",
            labels=["status"])
        for status in COMPLETED_STATUSES:
            completed.add_metric([status], counts.count(status))
        yield completed

        by_status = GaugeMetricFamily("orch_tasks", "Tasks in the store, by current status.",
                                      labels=["status"])
        for status in TASK_STATUSES:
            by_status.add_metric([status], counts.count(status))
        yield by_status

        stored = counts.running_by_host
        current = GaugeMetricFamily(
            "orch_agent_current_tasks",
            "Tasks running per host: max(jobs the host reports, tasks the store started there).",
            labels=["agent_id"])
        names = [f.name for f in facts] + sorted(set(stored) - {f.name for f in facts})
        reported = {f.name: f.running_tasks or 0 for f in facts}
        for name in names:
            current.add_metric([name], max(reported.get(name, 0), stored.get(name, 0)))
        yield current

        up = GaugeMetricFamily("orch_host_up", "1 if the host answered the probe, else 0.",
                               labels=["host"])
        load = GaugeMetricFamily("orch_host_load1", "1-minute load average of the host.",
                                 labels=["host"])
        cpus = GaugeMetricFamily("orch_host_cpus", "CPUs of the host (load per CPU: load1 / cpus).",
                                 labels=["host"])
        slots = GaugeMetricFamily("orch_host_slots",
                                  "Task slots of the host (its max_tasks; 0 when drained).",
                                  labels=["host"])
        for f in facts:
            up.add_metric([f.name], 1 if f.reachable else 0)
            if f.load1 is not None:
                load.add_metric([f.name], f.load1)
            if f.cpus:
                cpus.add_metric([f.name], f.cpus)
            slots.add_metric([f.name], f.max_tasks if f.enabled else 0)
        yield up
        yield load
        yield cpus
        yield slots

        errors = CounterMetricFamily(
            "orch_claude_code_errors", "Failed tasks by the kind of failure.",
            labels=["error_type"])
        kinds = dict.fromkeys(ERROR_TYPES, 0)
        for error, n in counts.failed_errors.items():
            kinds[error_type(error)] += n
        for kind, n in kinds.items():
            errors.add_metric([kind], n)
        yield errors

        yield GaugeMetricFamily("orch_daily_spend_usd",
                                "USD spent by tasks finished since 00:00 UTC today.",
                                value=counts.spent)


def _le(bound: float) -> str:
    return str(float(bound))


def render(tasks: Iterable[Task], facts: Iterable[HostFacts] | Mapping[str, HostFacts] = (),
           now: datetime | None = None) -> str:
    """The Prometheus text exposition for `tasks` and the probe results `facts`."""
    return render_tally(tally(tasks, day_start(now)), facts)


def render_tally(counts: TaskTally,
                 facts: Iterable[HostFacts] | Mapping[str, HostFacts] = ()) -> str:
    """The exposition for a tally of tasks (`Store.tally(day_start())`: every task, the
    archived ones counted by the archive) and the probe results `facts`."""
    fact_list = list(facts.values()) if isinstance(facts, Mapping) else list(facts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(counts, fact_list))
    return generate_latest(registry).decode("utf-8")


def write_textfile(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` atomically for node_exporter's textfile collector (name it *.prom).

    prometheus_client.write_to_textfile does the same rename trick but takes a registry;
    we already have the text (the same text `orch metrics` prints). Temp file in the same
    directory, fsync, chmod 0644 (mkstemp makes it 0600, and node_exporter usually runs
    as another user), os.replace: a scrape never sees a half-written file.
    """
    target = Path(path).expanduser()
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        why = "no such directory" if not target.parent.is_dir() else "directory not writable"
        raise UsageError(f"{target}: cannot write metrics: {why}",
                         hint="check metrics.textfile / --textfile and the directory")
    replace_file(target, text, mode=0o644)
    return target
