"""Tasks and plans on the terminal (their --json shapes: shapes.py, no rich).

A task's title, error and history reasons come from issues, hosts and the forge: every
cell and line is built with `text` (cleaned, never parsed as markup).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ..core.models import CHILD_KINDS, Placement, Task
from ..core.text import clean_line
from .term import console, text

STATUS_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green",
                "failed": "red", "cancelled": "magenta", "lost": "red"}


def _status(status: str) -> Text:
    return text((status, STATUS_STYLE.get(status, "white")))


def _child_word(t: Task) -> str:
    k = ((t.split or {}).get("part") or {}).get("k")
    if t.kind == "part" and isinstance(k, int):
        return f"part {k}"
    if t.kind == "integrate":
        return "tests" if (t.split or {}).get("final") else "merge"
    return t.kind


def nested(tasks: list[Task]) -> list[tuple[Task, int]]:
    """Tasks in the listing's order, a split's parts and integrations right under their
    parent (oldest first), indented one level; a child whose parent is not listed stays
    where it is."""
    listed = {t.id for t in tasks}
    under: dict[str, list[Task]] = {}
    for t in tasks:
        if t.kind in CHILD_KINDS and t.parent in listed:
            under.setdefault(t.parent or "", []).append(t)
    out: list[tuple[Task, int]] = []
    for t in tasks:
        if t.kind in CHILD_KINDS and t.parent in listed:
            continue
        out.append((t, 0))
        out.extend((c, 1) for c in reversed(under.get(t.id, [])))
    return out


def task_table(tasks: list[Task], archived: int = 0) -> None:
    """`archived`: how many older tasks the view leaves out (said under the table)."""
    more = (f"{archived} older finished task{'s' if archived != 1 else ''} archived: "
            f"`orch tasks --all` lists them, `orch show ID` shows one") if archived else ""
    if not tasks:
        console.print("no tasks" + (f" in the live and recent view; {more}" if more else ""),
                      markup=False, highlight=False)
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "issue", "kind", "status", "host", "specialty", "att", "cost", "pr / error"):
        table.add_column(col, no_wrap=col in ("id", "status"))
    for t, depth in nested(tasks):
        cost = f"${t.cost_usd:.2f}" if t.cost_usd is not None else ""
        tail = clean_line(t.pr_url or (t.error or ""))
        # A split's child sits indented under its parent: its kind cell says which part.
        kind = _child_word(t) if depth else kind_cell(t)
        table.add_row(text(("  └ " if depth else "") + t.id), text(f"{t.repo}#{t.issue}"),
                      text(kind), _status(t.status), text(t.host or ""), text(t.specialty),
                      str(t.attempts), cost, text(tail[:80]))
    console.print(table)
    if more:
        console.print(more, markup=False, highlight=False)


def kind_cell(task: Task) -> str:
    """`issue`, or `followup of <parent> (PR #n)`: what a task is and what it belongs to."""
    out = task.kind
    if task.parent:
        out += f" of {task.parent}"
    if task.pr_number is not None:
        out += f" (PR #{task.pr_number})"
    return out


def task_detail(task: Task, extra: dict[str, Any] | None = None) -> None:
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in task.to_json().items():
        if key in ("history", "request") or value in (None, "", []):
            continue
        table.add_row(key, _status(value) if key == "status" else text(str(value)))
    console.print(table)
    for key, value in (extra or {}).items():
        console.print()
        console.print(text((key, "bold")))
        console.print(text(str(value)))
    if task.history:
        console.print()
        console.print(text(("history", "bold")))
        for h in task.history:
            console.print(text(f"  {h.get('at')}  {h.get('from') or '-'} -> {h.get('to')}: "
                               f"{h.get('reason')}"))


def plan(placement: Placement, ref: str, live: Task | None) -> None:
    console.print(text((ref, "bold"), ": specialty ", (placement.specialty, "bold"),
                       f" ({placement.specialty_reason})"))
    if placement.host:
        console.print(text("host: ", (placement.host, "bold green")))
    else:
        console.print(text(("no host", "red"), ": ", placement.reason))
    if live:
        console.print(text(("note", "yellow"),
                           f": live task {live.id} ({live.status}) would refuse a dispatch"))
    table = Table(show_edge=False, header_style="bold")
    for col in ("host", "eligible", "why"):
        table.add_column(col)
    for v in placement.verdicts:
        table.add_row(text(v.host), text(("yes", "green")) if v.eligible else text(("no", "red")),
                      text(v.reason))
    console.print(table)
    console.print("(dry run: nothing was changed)")


def outcome(task: Task) -> None:
    """The last word of a followed dispatch."""
    cost = f"${task.cost_usd:.2f}" if task.cost_usd is not None else "n/a"
    facts = f"turns {task.turns if task.turns is not None else 'n/a'}, cost {cost}, tests {task.tests or 'n/a'}"
    if task.status == "succeeded":
        console.print(text(("succeeded", "green"), f" task {task.id}: {task.pr_url} ({facts})"))
    elif task.status == "running":
        console.print(text(("still running", "yellow"), f" task {task.id} on {task.host}; "
                           f"`orch logs {task.id} -f` follows it"))
    else:
        console.print(text((task.status, "red"), f" task {task.id}: {task.error or ''} ({facts})"))
