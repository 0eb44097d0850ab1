"""Metrics: the text parses as Prometheus exposition and carries the expected samples."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.core.models import HostFacts, Task
from orchestrator.errors import UsageError
from orchestrator.ops.metrics import (
    DURATION_BUCKETS,
    ERROR_TYPES,
    daily_spend,
    error_type,
    render,
    write_textfile,
)

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def task(n: int, status: str, minutes: float | None = None, host: str | None = "h1",
         error: str | None = None, cost: float | None = None,
         finished: datetime | None = None) -> Task:
    end = finished or NOW - timedelta(hours=1)
    started = end - timedelta(minutes=minutes) if minutes is not None else None
    done = status in ("succeeded", "failed", "cancelled")
    return Task(id=f"{n:08x}", repo="acme/w", issue=n, title="t", specialty="backend",
                status=status, host=host, error=error, cost_usd=cost,
                started_at=iso(started) if started else (iso(end) if status != "queued" else None),
                finished_at=iso(end) if done else None)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


TASKS = [
    task(1, "succeeded", minutes=3, cost=0.5),
    task(2, "succeeded", minutes=40, cost=1.5, finished=NOW - timedelta(days=1)),   # yesterday
    task(3, "failed", minutes=45, error="timeout: agent ran past 45m", cost=2.0),
    task(4, "failed", minutes=10, error="tests failed after 2 fix attempts"),
    task(5, "failed", minutes=1, error="git push refused: protected branch"),
    task(6, "cancelled", minutes=0.5),
    task(7, "running", host="h1"),
    task(8, "running", host="h2"),
    task(9, "queued", host=None),
    task(10, "lost", host="h3"),
]
FACTS = [
    HostFacts(name="h1", address="a", reachable=True, load1=1.5, cpus=4, running_tasks=2),
    HostFacts(name="h2", address="b", reachable=False, error="timeout"),
]


def test_render_parses_and_has_every_family() -> None:
    text = render(TASKS, FACTS, now=NOW)
    assert families(text) == {
        "orch_task_execution_seconds": "histogram",
        "orch_tasks_completed": "counter",
        "orch_tasks": "gauge",
        "orch_agent_current_tasks": "gauge",
        "orch_host_up": "gauge",
        "orch_host_load1": "gauge",
        "orch_host_cpus": "gauge",
        "orch_host_slots": "gauge",
        "orch_claude_code_errors": "counter",
        "orch_daily_spend_usd": "gauge",
    }
    assert "_created" not in text and "python_" not in text and "process_" not in text


def test_histogram_of_finished_durations() -> None:
    s = samples(render(TASKS, FACTS, now=NOW))
    h = "orch_task_execution_seconds"
    assert s[(f"{h}_count", ())] == 6
    assert s[(f"{h}_sum", ())] == pytest.approx(60 * (3 + 40 + 45 + 10 + 1 + 0.5))
    assert s[(f"{h}_bucket", (("le", "30.0"),))] == 1      # exactly 30s: le is inclusive
    assert s[(f"{h}_bucket", (("le", "60.0"),))] == 2      # 30s and 60s
    assert s[(f"{h}_bucket", (("le", "300.0"),))] == 3
    assert s[(f"{h}_bucket", (("le", "600.0"),))] == 4
    assert s[(f"{h}_bucket", (("le", "2700.0"),))] == 6
    assert s[(f"{h}_bucket", (("le", "+Inf"),))] == 6
    assert max(DURATION_BUCKETS) >= 4 * 3600 and min(DURATION_BUCKETS) <= 60


def test_counts_by_status_and_completed_total() -> None:
    s = samples(render(TASKS, FACTS, now=NOW))
    assert s[("orch_tasks_completed_total", (("status", "succeeded"),))] == 2
    assert s[("orch_tasks_completed_total", (("status", "failed"),))] == 3
    assert s[("orch_tasks_completed_total", (("status", "cancelled"),))] == 1
    expected = {"queued": 1, "running": 2, "succeeded": 2, "failed": 3, "cancelled": 1, "lost": 1}
    for status, n in expected.items():
        assert s[("orch_tasks", (("status", status),))] == n


def test_hosts_current_tasks_load_and_up() -> None:
    s = samples(render(TASKS, FACTS, now=NOW))
    # h1: host says 2, store 1 -> 2; h2 unreachable: store's 1
    assert s[("orch_agent_current_tasks", (("agent_id", "h1"),))] == 2
    assert s[("orch_agent_current_tasks", (("agent_id", "h2"),))] == 1
    assert ("orch_agent_current_tasks", (("agent_id", "h3"),)) not in s   # lost, not running
    assert s[("orch_host_load1", (("host", "h1"),))] == 1.5
    assert ("orch_host_load1", (("host", "h2"),)) not in s                 # unknown, not 0
    assert s[("orch_host_up", (("host", "h1"),))] == 1
    assert s[("orch_host_up", (("host", "h2"),))] == 0


def test_errors_by_type_and_daily_spend() -> None:
    s = samples(render(TASKS, FACTS, now=NOW))
    errs = {k: s[("orch_claude_code_errors_total", (("error_type", k),))] for k in ERROR_TYPES}
    assert errs == {"timeout": 1, "max_turns": 0, "cost": 0, "agent_error": 0,
                    "tests_failed": 1, "push_failed": 1, "lost": 0, "other": 0}
    assert s[("orch_daily_spend_usd", ())] == pytest.approx(2.5)     # yesterday's 1.5 excluded
    assert daily_spend(TASKS, NOW + timedelta(days=1)) == 0.0


def test_label_values_are_escaped() -> None:
    weird = 'pc "7"\\\nx'
    text = render([task(1, "running", host=weird)],
                  [HostFacts(name=weird, address="a", reachable=True, load1=0.1)], now=NOW)
    s = samples(text)
    assert s[("orch_host_load1", (("host", weird),))] == 0.1


def test_empty_store_renders_zeros() -> None:
    s = samples(render([], [], now=NOW))
    assert s[("orch_task_execution_seconds_count", ())] == 0
    assert s[("orch_tasks", (("status", "running"),))] == 0
    assert s[("orch_daily_spend_usd", ())] == 0


@pytest.mark.parametrize("text,kind", [
    (None, "other"), ("", "other"),
    ("timeout: agent ran past 45m", "timeout"),
    ("agent timed out after 2700s", "timeout"),
    ("max_turns: reached 40 turns", "max_turns"),
    ("agent error: error_max_turns", "max_turns"),
    ("Reached maximum number of turns (40)", "max_turns"),
    ("cost: $5.20 > max_cost_usd 5.0", "cost"),
    ("max cost exceeded", "cost"),
    ("agent_error: exit status 1", "agent_error"),
    ("claude exited with is_error=true", "agent_error"),
    ("agent error: error_during_execution", "agent_error"),
    ("tests failed after 2 fix attempts", "tests_failed"),
    ("tests_failed: 3 failing", "tests_failed"),
    ("2 tests still failing", "tests_failed"),
    ("push_failed: remote rejected", "push_failed"),
    ("git push refused (protected branch)", "push_failed"),
    ("lost: host h1 unreachable for 10m", "lost"),
    ("host backend-1 vanished; gave up after 3 attempts", "lost"),
    ("workspace disk full", "other"),
])
def test_error_type(text: str | None, kind: str) -> None:
    assert error_type(text) == kind


def test_write_textfile_is_atomic_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "orch.prom"
    target.write_text("old\n")
    text = render(TASKS, FACTS, now=NOW)
    assert write_textfile(target, text) == target
    assert target.read_text() == text
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["orch.prom"]      # no temp left


def test_write_textfile_failed_replace_keeps_old(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "orch.prom"
    target.write_text("old\n")

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr("orchestrator.ops.metrics.os.replace", boom)
    with pytest.raises(OSError):
        write_textfile(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["orch.prom"]


def test_write_textfile_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write metrics"):
        write_textfile(tmp_path / "nope" / "orch.prom", "x\n")
