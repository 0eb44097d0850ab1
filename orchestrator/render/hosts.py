"""`orch hosts` on the terminal (a rich table) and as --json (docs/SPEC.md's shape)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..core.models import Host, HostFacts
from ..fleet.facts import JSON_KEYS, hosts_json  # the --json shape (no rich there)
from .term import console, text

__all__ = ["JSON_KEYS", "hosts_json", "hosts_table", "local_notes"]


def _mb(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f}G" if value >= 1024 else f"{value}M"


def _gb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024:.1f}"


def _state(f: HostFacts) -> Text:
    if not f.reachable:
        return text((f.error_kind or "unreachable", "red"))
    if f.error:
        return text((f.error_kind or "error", "yellow"))
    return text(("ok", "green"))


def hosts_table(facts: list[HostFacts]) -> None:
    if not facts:
        console.print("the inventory has no hosts")
        return
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("host", no_wrap=True)
    table.add_column("address", no_wrap=True, max_width=28)
    table.add_column("state", no_wrap=True)
    table.add_column("load/cpus", justify="right", no_wrap=True)
    table.add_column("mem free", justify="right", no_wrap=True)
    table.add_column("disk free", justify="right", no_wrap=True)
    table.add_column("tasks", justify="right", no_wrap=True)
    table.add_column("agent", overflow="fold", min_width=7)
    for f in facts:
        name = text(f.name, *([] if f.enabled else [(" (off)", "dim")]))
        load = "-" if f.load1 is None else f"{f.load1:.2f}"
        cpus = "-" if f.cpus is None else str(f.cpus)
        mem = "-" if f.mem_total_mb is None else \
            f"{_gb(f.mem_available_mb)}/{_gb(f.mem_total_mb)}G"
        running = "-" if f.running_tasks is None else str(f.running_tasks)
        table.add_row(name, text(f.address), _state(f), f"{load}/{cpus}", mem,
                      _mb(f.disk_free_mb), f"{running}/{f.max_tasks}",
                      text(f.agent_version or "-"),
                      style=None if f.enabled else "dim")
    console.print(table)
    for f in facts:
        if f.error:
            console.print(text((f.name, "red"), ": ", f.error))
        for note in f.notes:
            console.print(text((f"{f.name}: {note}", "dim")))


def local_notes(local: list[Host], state_dir: object, allowed: bool) -> None:
    """What `connection: local` means, under the table, for each local host."""
    from ..core.trust import LOCAL_OPT_IN, local_meaning
    for h in local:
        github = (f"GitHub issues may run here ({LOCAL_OPT_IN}: true)" if allowed else
                  f"GitHub issues never run here unless orch.yml sets {LOCAL_OPT_IN}: true; "
                  f"local Markdown issues and `orch demo` do")
        console.print(text((f"{h.name}: local: {local_meaning(state_dir)}. {github}", "dim")),
                      soft_wrap=True)
