"""The --json shapes of tasks, dispatches and plans (docs/SPEC.md): plain data.

No rich here: `orch tasks --json` and `orch dispatch --json` print these without loading
the terminal renderers (render/__init__.py).
"""

from __future__ import annotations

from typing import Any

from ..core.models import Placement, Task


def task_json(task: Task) -> dict[str, Any]:
    """The docs/SPEC.md task record plus `task_id` (the dispatch shape) for scripts."""
    data = task.to_json()
    data["task_id"] = task.id
    return data


def dispatch_json(task: Task) -> dict[str, Any]:
    keys = ("repo", "issue", "host", "specialty", "status", "branch", "pr_url", "error",
            "cost_usd", "turns", "attempts", "workspace", "tests", "commit", "kind", "parent",
            "pr_number", "session_id")
    data: dict[str, Any] = {"task_id": task.id}
    data.update({k: getattr(task, k) for k in keys})
    return data


def plan_json(repo: str, issue: int, placement: Placement, live: Task | None) -> dict[str, Any]:
    return {"dry_run": True, "repo": repo, "issue": issue, "specialty": placement.specialty,
            "specialty_reason": placement.specialty_reason, "host": placement.host,
            "reason": placement.reason, "live_task": live.id if live else None,
            "hosts": [{"name": v.host, "eligible": v.eligible, "reason": v.reason,
                       "score": v.score} for v in placement.verdicts]}
