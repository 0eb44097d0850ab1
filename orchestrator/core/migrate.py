"""Task records written by earlier versions of orch, brought up to date as they are read.

A record from before a field existed loads with the field's default (Task.from_json), and
what can be derived is derived here, once per record: the next write of the task stores
it. This is the only place that reads the English text of old error messages; everything
else decides on `Task.error_kind` (core/models.py ERROR_KINDS).

What is derived:
- `error_kind` of a failed, cancelled or lost task, from its `error` text (the messages the
  job and orch wrote before they wrote a kind; `error_kind_from_message`);
- `avoid_hosts`, the hosts an attempt was lost on or could not start on, from the history
  entries of its requeues (the reasons said "lost: ..." and "start failed: ...").
"""

from __future__ import annotations

import functools
import re
from typing import Any

# The messages of the previous job.sh (playbooks/dispatch.yml `fail` lines) and of orch
# itself, most specific first: the first match gives the kind.
_MESSAGES: tuple[tuple[str, str], ...] = (
    ("start_failed", r"^could not start the job\b"),
    ("not_dispatchable", r"^no longer dispatchable\b"),
    ("lost", r"^lost\b"),
    ("cancelled", r"^cancelled\b|^stopped by SIG"),
    ("timeout", r"^timeout\b"),
    ("max_turns", r"^max turns\b"),
    ("budget", r"^cost limit\b"),
    ("no_result", r"^the agent ended without a result\b"),
    ("agent_missing", r"^the agent command is not found\b"),
    ("agent_error", r"^the agent (reported an error|exited with status)\b"),
    ("root_refused", r"^refusing to run the agent as root\b"),
    ("git_missing", r"^git is not installed\b"),
    ("clone_failed", r"^git clone failed\b"),
    ("branch_failed", r"^invalid branch name\b|^the repository has no default branch\b"
                      r"|^cannot create \S+ from origin/"),
    ("tests_failed", r"^tests still failing\b"),
    ("tests_error", r"^the test command could not run\b"),
    ("no_changes", r"^the agent made no changes\b"),
    ("commit_failed", r"^git (reset|add|commit) failed\b"),
    ("push_failed", r"^push refused\b"),
    ("job_error", r"^job\.sh exited unexpectedly\b|^no checkout at\b"
                  r"|^the prompt file is missing\b|^cannot enter the workspace\b"),
    ("step_failed", r"^step \S+ failed\b"),
)

# Older free text (the keyword rules metrics used before kinds existed), tried last.
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("lost", r"\blost\b|\bhost\b.*\b(vanished|unreachable|gone|died|rebooted)\b"),
    ("timeout", r"\btime(d)?[ _-]?out\b"),
    ("max_turns", r"max[ _-]?turns|maximum (number of )?turns|turn limit"),
    ("budget", r"\bcost\b|max[ _-]?cost|budget|\busd\b"),
    ("tests_failed", r"\btests?\b.*\bfail|\bfail\w*\b.*\btests?\b|^tests_failed\b"),
    ("push_failed", r"\bpush\b"),
    ("agent_error", r"\bagent\b|\bclaude\b|is_error|error_during_execution"),
)

_BY_STATUS = {"cancelled": "cancelled", "lost": "lost"}


@functools.cache
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    # Compiled on first use: an old record without an error message needs none.
    return tuple((kind, re.compile(rx, re.IGNORECASE)) for kind, rx in _MESSAGES + _KEYWORDS)


def error_kind_from_message(message: str | None) -> str:
    """The kind an old error message stands for ("other" when none fits)."""
    text = (message or "").strip()
    if not text:
        return "other"
    for kind, rx in _patterns():
        if rx.search(text):
            return kind
    return "other"


def avoid_hosts_from_history(history: list[dict[str, Any]]) -> list[str]:
    """Hosts of the requeues that followed a lost attempt or a failed start."""
    hosts: list[str] = []
    for entry in history:
        previous = entry.get("previous")
        if not isinstance(previous, dict) or not previous.get("host"):
            continue
        if str(entry.get("reason", "")).startswith(("lost", "start failed")):
            host = str(previous["host"])
            if host not in hosts:
                hosts.append(host)
    return hosts


def upgrade_task(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a record lacking one of core/models.py DERIVED_FIELDS: Task.from_json asks)
    with the fields an older version did not write derived, as a new dict."""
    out = dict(data)
    if "error_kind" not in out:
        status = str(out.get("status") or "")
        if status in ("failed", "cancelled", "lost"):
            error = out.get("error")
            out["error_kind"] = (error_kind_from_message(error) if error or status == "failed"
                                 else _BY_STATUS[status])
        else:
            out["error_kind"] = None
    if "avoid_hosts" not in out:
        history = out.get("history")
        out["avoid_hosts"] = avoid_hosts_from_history(history if isinstance(history, list) else [])
    return out
