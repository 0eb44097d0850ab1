"""Tasks and plans on the terminal, and their --json shapes (docs/SPEC.md)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..core.models import Placement, Task
from . import console

STATUS_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green",
                "failed": "red", "cancelled": "magenta", "lost": "red"}


def task_json(task: Task) -> dict[str, Any]:
    """The docs/SPEC.md task record plus `task_id` (the dispatch shape) for scripts."""
    data = task.to_json()
    data["task_id"] = task.id
    return data


def dispatch_json(task: Task) -> dict[str, Any]:
    keys = ("repo", "issue", "host", "specialty", "status", "branch", "pr_url", "error",
            "cost_usd", "turns", "attempts", "workspace", "tests", "commit")
    data: dict[str, Any] = {"task_id": task.id}
    data.update({k: getattr(task, k) for k in keys})
    return data


def plan_json(repo: str, issue: int, placement: Placement, live: Task | None) -> dict[str, Any]:
    return {"dry_run": True, "repo": repo, "issue": issue, "specialty": placement.specialty,
            "specialty_reason": placement.specialty_reason, "host": placement.host,
            "reason": placement.reason, "live_task": live.id if live else None,
            "hosts": [{"name": v.host, "eligible": v.eligible, "reason": v.reason,
                       "score": v.score} for v in placement.verdicts]}


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def task_table(tasks: list[Task], archived: int = 0) -> None:
    """`archived`: how many older tasks the view leaves out (said under the table)."""
    more = (f"{archived} older finished task{'s' if archived != 1 else ''} archived: "
            f"`orch tasks --all` lists them, `orch show ID` shows one") if archived else ""
    if not tasks:
        console.print("no tasks" + (f" in the live and recent view; {more}" if more else ""),
                      markup=False, highlight=False)
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "issue", "status", "host", "specialty", "att", "cost", "pr / error"):
        table.add_column(col, no_wrap=col in ("id", "status"))
    for t in tasks:
        cost = f"${t.cost_usd:.2f}" if t.cost_usd is not None else ""
        tail = t.pr_url or (t.error or "")
        table.add_row(t.id, f"{t.repo}#{t.issue}", _status(t.status), t.host or "",
                      t.specialty, str(t.attempts), cost, tail[:80])
    console.print(table)
    if more:
        console.print(more, markup=False, highlight=False)


def task_detail(task: Task, extra: dict[str, Any] | None = None) -> None:
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in task.to_json().items():
        if key in ("history",) or value in (None, "", []):
            continue
        table.add_row(key, _status(value) if key == "status" else str(value))
    console.print(table)
    for key, value in (extra or {}).items():
        console.print(f"\n[bold]{key}[/]")
        console.print(value, markup=False)
    if task.history:
        console.print("\n[bold]history[/]")
        for h in task.history:
            console.print(f"  {h.get('at')}  {h.get('from') or '-'} -> {h.get('to')}: "
                          f"{h.get('reason')}", markup=False)


def plan(placement: Placement, ref: str, live: Task | None) -> None:
    console.print(f"[bold]{ref}[/]: specialty [bold]{placement.specialty}[/] "
                  f"({placement.specialty_reason})", markup=True)
    if placement.host:
        console.print(f"host: [bold green]{placement.host}[/]")
    else:
        console.print(f"[red]no host[/]: {placement.reason}")
    if live:
        console.print(f"[yellow]note[/]: live task {live.id} ({live.status}) would refuse a dispatch")
    table = Table(show_edge=False, header_style="bold")
    for col in ("host", "eligible", "why"):
        table.add_column(col)
    for v in placement.verdicts:
        table.add_row(v.host, "[green]yes[/]" if v.eligible else "[red]no[/]", v.reason)
    console.print(table)
    console.print("(dry run: nothing was changed)")


def outcome(task: Task) -> None:
    """The last word of a followed dispatch."""
    cost = f"${task.cost_usd:.2f}" if task.cost_usd is not None else "n/a"
    facts = f"turns {task.turns if task.turns is not None else 'n/a'}, cost {cost}, tests {task.tests or 'n/a'}"
    if task.status == "succeeded":
        console.print(f"[green]succeeded[/] task {task.id}: {task.pr_url} ({facts})")
    elif task.status == "running":
        console.print(f"[yellow]still running[/] task {task.id} on {task.host}; "
                      f"`orch logs {task.id} -f` follows it")
    else:
        console.print(f"[red]{task.status}[/] task {task.id}: {task.error or ''} ({facts})",
                      markup=True)
