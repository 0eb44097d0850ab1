"""`orch inventory` on the terminal (a rich table, one line per edit) and as --json.

The table shows *effective* values (defaults applied), because that is what the
scheduler and the SSH transport will use; `-` marks a value left to ~/.ssh/config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from ..core.models import Host
from ..transport import transport
from .term import console, text


def inventory_json(hosts: list[Host]) -> list[dict[str, Any]]:
    """Every host with its effective values, plain JSON types."""
    from ..fleet.inventory import host_json
    return [host_json(h) for h in hosts]


def _cell(value: object) -> Text:
    return text("-" if value is None or value == "" else str(value))


def inventory_table(hosts: list[Host], source: Path | None) -> None:
    """The hosts as a table, with where they came from underneath."""
    where = str(source) if source else "no inventory file: the embedded default (this machine)"
    if not hosts:
        console.print(text(f"no hosts in {where}; add one with `orch inventory add NAME --address A`"))
        return
    table = Table(show_edge=False, header_style="bold", pad_edge=False,
                  caption=text(where), caption_justify="left")
    for column, justify in (("host", "left"), ("address", "left"), ("port", "right"),
                            ("user", "left"), ("specialties", "left"), ("max", "right"),
                            ("agent", "left"), ("workspace", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for h in hosts:
        name = text(h.name, *([] if h.enabled else [(" (off)", "dim")]))
        shown = transport(h.connection).where
        address = text(h.address) if shown is None else text((shown, "dim"))
        table.add_row(name, address, _cell(h.port), _cell(h.user), _cell(", ".join(h.specialties)),
                      str(h.max_tasks), _cell(h.agent), _cell(h.workspace_root))
    console.print(table)


def edited(action: str, name: str, path: Path, host: Host | None = None) -> None:
    """One line saying what changed where, so a script's log shows the edit."""
    line = text(f"{action} host ", (name, "bold"), f" in {path}")
    if host is not None and not host.enabled:
        line.append(" (disabled)", style="dim")
    console.print(line)
