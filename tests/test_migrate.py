"""Upgrades lose nothing: task records written by the previous version (no kind, parent,
pr_number, session_id, error_kind, avoid_hosts) load with defaults, and what can be
derived is derived once (core/migrate.py) and stored at the task's next write.

tests/data/state-before-kinds.json is a state.json written by orch at commit 228c9bc
(before these fields existed), by real runs on the local host: a succeeded task, failed
ones (tests still failing, max turns, agent error, timeout, no result, lost three times),
two cancelled ones and a queued retry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.migrate import avoid_hosts_from_history, error_kind_from_message, upgrade_task
from orchestrator.core.models import DERIVED_FIELDS, ERROR_KINDS, Task
from orchestrator.job.remote import JobStatus
from orchestrator.lifecycle.finalize import verdict_of
from orchestrator.store import Store

LEGACY = Path(__file__).parent / "data" / "state-before-kinds.json"

# task id -> (status, the error_kind its old message stands for)
EXPECTED = {
    "f8bd2d4c": ("succeeded", None),
    "5fd0e1d1": ("failed", "tests_failed"),
    "8e26c804": ("failed", "max_turns"),
    "19a0263a": ("failed", "agent_error"),
    "2532cdd1": ("failed", "agent_error"),
    "cfebb7de": ("failed", "timeout"),
    "9a4ae2b4": ("failed", "no_result"),
    "b6a01395": ("failed", "lost"),
    "b990f245": ("cancelled", "cancelled"),
    "c04044bb": ("queued", None),
}


@pytest.fixture
def legacy_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(LEGACY, state / "state.json")
    return state


def test_the_fixture_is_really_from_before_the_fields(legacy_state):
    raw = json.loads((legacy_state / "state.json").read_text())["tasks"]
    for doc in raw.values():
        assert not {"kind", "parent", "pr_number", "session_id", "error_kind",
                    "avoid_hosts"} & set(doc)


def test_old_tasks_load_with_defaults_and_derived_kinds(legacy_state):
    tasks = {t.id: t for t in Store(legacy_state).list()}
    assert set(tasks) == set(EXPECTED)
    for task_id, (status, kind) in EXPECTED.items():
        t = tasks[task_id]
        assert (t.status, t.error_kind) == (status, kind), task_id
        assert t.kind == "issue" and t.parent is None and t.pr_number is None
        assert t.session_id is None
    # The task lost three times on `local` avoids it; the others avoid nothing.
    assert tasks["b6a01395"].avoid_hosts == ["local"]
    assert all(t.avoid_hosts == [] for i, t in tasks.items() if i != "b6a01395")
    # Nothing else changed: titles, errors, history are as the old version wrote them.
    raw = json.loads(LEGACY.read_text())["tasks"]
    for doc in raw.values():
        t = tasks[doc["id"]]
        assert {k: getattr(t, k) for k in doc} == doc


def test_the_derived_fields_are_stored_at_the_next_write(legacy_state):
    store = Store(legacy_state)
    store.update("8e26c804", comment_id=77)
    raw = {d["id"]: d for d in json.loads((legacy_state / "state.json").read_text())["tasks"].values()}
    assert raw["8e26c804"]["error_kind"] == "max_turns"
    assert raw["8e26c804"]["kind"] == "issue" and raw["8e26c804"]["avoid_hosts"] == []
    assert "error_kind" not in raw["5fd0e1d1"]          # untouched records stay as they were
    # Once stored, the record is current: it is not derived again (Task.from_json does
    # not upgrade it), even if its message would say something else.
    doc = dict(raw["8e26c804"], error="tests still failing after 2 fix attempt(s)")
    assert Task.from_json(doc).error_kind == "max_turns"


def test_a_queued_old_task_moves_on_with_the_new_code(legacy_state):
    """The old queued retry can be cancelled (a transition, written back with its new
    fields), and the old failed ones retried, as if this version had written them."""
    store = Store(legacy_state)
    cancelled = store.cancel("c04044bb", "cancelled by user", error="cancelled by user",
                             error_kind="cancelled")
    assert cancelled.status == "cancelled" and cancelled.error_kind == "cancelled"
    again = store.requeue("8e26c804", "retried by user", reset_attempts=True)
    assert again.status == "queued" and again.error_kind is None and again.attempts == 0


def _orch(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_HOME=str(state), NO_COLOR="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=state,
                          stdin=subprocess.DEVNULL)


def test_the_cli_reads_an_old_state_file(legacy_state):
    listed = _orch(legacy_state, "tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = {t["id"]: t["error_kind"] for t in json.loads(listed.stdout)}
    assert kinds == {i: k for i, (_, k) in EXPECTED.items()}
    metrics = _orch(legacy_state, "metrics", "--no-probe")
    assert metrics.returncode == 0, metrics.stderr
    counts = {}
    for line in metrics.stdout.splitlines():
        if line.startswith("orch_claude_code_errors_total{"):
            label = line.split('error_type="', 1)[1].split('"', 1)[0]
            counts[label] = float(line.rsplit(" ", 1)[1])
    assert set(counts) == set(ERROR_KINDS)
    assert {k: v for k, v in counts.items() if v} == {
        "tests_failed": 1, "max_turns": 1, "agent_error": 2, "timeout": 1, "no_result": 1,
        "lost": 1}


@pytest.mark.parametrize("text,kind", [
    (None, "other"), ("", "other"),
    # what the previous job.sh wrote (playbooks/dispatch.yml `fail` lines)
    ("timeout: the agent ran over agent.timeout (20s) and was stopped", "timeout"),
    ("max turns exceeded: the agent went past agent.max_turns (5) and was stopped", "max_turns"),
    ("max turns: the agent hit agent.max_turns (5) (error_max_turns)", "max_turns"),
    ("cost limit: the agent hit its budget of $1 (error_max_budget_usd)", "budget"),
    ("cost limit exceeded: $5.2 spent, agent.max_cost_usd is $5", "budget"),
    ("the agent ended without a result (exit 3): {\"type\":\"assistant\"}", "no_result"),
    ("the agent reported an error (success, exit 1): API Error: 500", "agent_error"),
    ("the agent exited with status 2: boom", "agent_error"),
    ("the agent command is not found on this host: claude (set agent.command)", "agent_missing"),
    ("git clone failed: fatal: repository not found", "clone_failed"),
    ("git is not installed on this host", "git_missing"),
    ("refusing to run the agent as root: set agent.allow_root", "root_refused"),
    ("invalid branch name: orch/..", "branch_failed"),
    ("cannot create orch/1-x from origin/main: fatal", "branch_failed"),
    ("tests still failing after 2 fix attempt(s) (exit 1): 1 failed", "tests_failed"),
    ("the test command could not run (exit 127): nope", "tests_error"),
    ("the agent made no changes", "no_changes"),
    ("git commit failed: nothing", "commit_failed"),
    ("push refused: ! [rejected] (non-fast-forward)", "push_failed"),
    ("job.sh exited unexpectedly in step tests", "job_error"),
    ("step npm-ci failed (exit 1): npm ERR!", "step_failed"),
    ("stopped by SIGTERM in step agent", "cancelled"),
    # what the previous orch wrote
    ("could not start the job on h1: h1: connection refused", "start_failed"),
    ("lost and out of attempts: task x is lost after 3 of 3 attempts", "lost"),
    ("lost; the issue has another live task abcd1234", "lost"),
    ("no longer dispatchable: octo/app#3 is closed", "not_dispatchable"),
    ("cancelled by user; the job's process group was stopped", "cancelled"),
    ("timeout: step agent ran over 1860s; the job's process group was killed by orch", "timeout"),
    # older free text (the keyword rules metrics used before kinds)
    ("agent timed out after 2700s", "timeout"),
    ("Reached maximum number of turns (40)", "max_turns"),
    ("max cost exceeded", "budget"),
    ("claude exited with is_error=true", "agent_error"),
    ("2 tests still failing", "tests_failed"),
    ("git push refused (protected branch)", "push_failed"),
    ("host backend-1 vanished; gave up after 3 attempts", "lost"),
    ("workspace disk full", "other"),
])
def test_old_messages_give_their_kind(text, kind):
    assert error_kind_from_message(text) == kind
    assert kind in ERROR_KINDS


def test_avoid_hosts_come_from_lost_and_failed_start_requeues_only():
    history = [
        {"to": "queued", "reason": "created"},
        {"to": "queued", "reason": "lost: host h1 unreachable", "previous": {"host": "h1"}},
        {"to": "queued", "reason": "start failed: could not start", "previous": {"host": "h2"}},
        {"to": "queued", "reason": "retried by user", "previous": {"host": "h3"}},
        {"to": "queued", "reason": "lost: again", "previous": {"host": "h1"}},
    ]
    assert avoid_hosts_from_history(history) == ["h1", "h2"]


def test_what_migrate_derives_is_what_marks_a_record_current():
    """Task.from_json upgrades a record lacking one of DERIVED_FIELDS (and loads
    core/migrate.py only then): the fields upgrade_task adds are exactly those."""
    old = {"id": "0ld0ld00", "repo": "octo/app", "issue": 1, "title": "t", "specialty": "general",
           "status": "failed", "error": "max turns reached"}
    assert set(upgrade_task(old)) - set(old) == set(DERIVED_FIELDS)
    assert Task.from_json(old).error_kind == "max_turns"


@pytest.mark.parametrize("said, kind", [("tests_failed", "tests_failed"), ("new_word", "other"),
                                        (None, "max_turns")])
def test_a_failed_job_gives_its_kind_and_one_of_the_previous_job_sh_its_message_does(said, kind):
    status = JobStatus(state="failed", alive=False, error="max turns reached", error_kind=said)
    assert verdict_of(status).error_kind == kind
