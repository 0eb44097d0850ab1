"""`orch bootstrap` on the terminal (one table row per check) and as --json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from ..fleet.bootstrap import HostReport
from .term import console, print_fixes, text

_STYLE = {"ok": "green", "info": "cyan", "skip": "dim", "fail": "bold red"}


def bootstrap_json(reports: list[HostReport]) -> list[dict[str, Any]]:
    """`[{"host", "ok", "checks": [{"name", "ok", "detail", "fix", ...}], "error", ...}]`."""
    return [r.to_json() for r in reports]


def _cell(status: str) -> Text:
    return text((status, _STYLE.get(status, "")))


WIDE = 140   # below this many columns the fixes go under the table, not in a column
DETAIL_SHOWN = 240


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_SHOWN else text[:DETAIL_SHOWN - 3] + "..."


def bootstrap_table(reports: list[HostReport], state_file: Path | None = None) -> None:
    """host | check | result | detail | fix, one row per check. On a narrow terminal the
    fixes are listed under the table, where they stay readable."""
    if not reports:
        console.print("no hosts to bootstrap (every host is disabled?)")
        return
    wide = console.width >= WIDE
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    if wide:
        table.add_column("fix", overflow="fold", ratio=2)
    fixes: list[tuple[str, str, str]] = []
    for i, r in enumerate(reports):
        if i:
            table.add_section()
        rows: list[tuple[str, str, str, str]] = []
        if not r.reachable:
            rows.append(("connect", "fail", r.error or "unreachable",
                         "check the host with `orch hosts` (address, sshd, key, known_hosts)"))
        for c in r.checks:
            rows.append((c.name, c.status, c.detail, c.fix or ""))
        if r.reachable and r.error:
            rows.append(("script", "fail", r.error, ""))
        for j, (check, status, detail, fix) in enumerate(rows):
            cells: list[Text] = [text(r.host if j == 0 else ""), text(check), _cell(status),
                                 text(_clip(detail))]
            if wide:
                cells.append(text(fix))
            elif fix:
                fixes.append((r.host, check, fix))
            table.add_row(*cells)
    console.print(table)
    print_fixes(fixes)
    ready = [r for r in reports if r.ok]
    failing = [r for r in reports if not r.ok]
    line = f"{len(ready)} of {len(reports)} hosts ready"
    if failing:
        why = ", ".join(
            f"{r.host} ({'unreachable' if not r.reachable else ', '.join(c.name for c in r.failed) or 'error'})"
            for r in failing)
        line += f"; failing: {why}"
    console.print()
    console.print(text(line))
    if any(r.reachable and not r.ok for r in failing):
        console.print("[dim]dispatch does not choose a host whose last bootstrap failed; "
                      "fix it and run `orch bootstrap HOST` again[/]")
    if state_file is not None:
        console.print(text((f"results recorded in {state_file}", "dim")))
