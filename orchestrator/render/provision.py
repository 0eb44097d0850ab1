"""`orch provision` on the terminal: one row per step, the fixes, a summary line."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..fleet.provision import HostProvision
from .term import console, print_fixes, text

_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "skipped": "dim"}
DETAIL_SHOWN = 240


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_SHOWN else text[:DETAIL_SHOWN - 3] + "..."


def _result(status: str, check: bool) -> Text:
    shown = "would change" if check and status == "changed" else status
    return text((shown, _STYLE.get(status, "")))


def provision_table(reports: list[HostProvision], *, check: bool = False) -> None:
    """host | step | result | detail; the fixes of failed steps under the table. Every
    text that came from a host is drawn with `text`: cleaned, never markup."""
    if not reports:
        console.print("no hosts to provision (every host is disabled or `connection: local`?)")
        return
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    fixes: list[tuple[str, str, str]] = []
    for i, r in enumerate(reports):
        if i:
            table.add_section()
        for j, s in enumerate(r.steps):
            table.add_row(text(r.host if j == 0 else ""), text(s.step),
                          _result(s.status, check), text(_clip(s.detail)))
            if s.status == "failed" and s.fix:
                fixes.append((r.host, s.step, s.fix))
    console.print(table)
    print_fixes(fixes)
    ready = [r for r in reports if r.ok]
    verb = "would change" if check else "changed"
    line = f"{len(ready)} of {len(reports)} hosts ok"
    touched = [f"{r.host} ({', '.join(r.changed)})" for r in reports if r.changed]
    line += f"; {verb}: {', '.join(touched)}" if touched else f"; nothing {verb}"
    failing = [f"{r.host} ({', '.join(s.step for s in r.failed)})" for r in reports if not r.ok]
    if failing:
        line += f"; failed: {', '.join(failing)}"
    console.print()
    console.print(text(line))
    if check:
        console.print("[dim]--check: nothing was changed on the hosts, nothing recorded[/]")
    else:
        console.print("[dim]bootstrap's verdict for the hosts reached is recorded (orch bootstrap)[/]")
