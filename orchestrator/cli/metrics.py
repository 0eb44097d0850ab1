"""`orch metrics`: Prometheus text format, for node_exporter's textfile collector."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from ..app import App

if TYPE_CHECKING:
    from ..core.models import HostFacts


@click.command()
@click.option("--textfile", type=click.Path(dir_okay=False),
              help="Write atomically to this file instead of stdout (e.g. /var/lib/node_exporter/orch.prom).")
@click.option("--no-probe", is_flag=True, help="Task metrics only; do not probe hosts for load.")
@click.pass_obj
def metrics(app: App, textfile: str | None, no_probe: bool) -> None:
    """Print tasks by status, durations, per-host running tasks and load, agent errors."""
    from ..ops.metrics import day_start, render_tally, write_textfile
    facts = [] if no_probe else asyncio.run(_probe(app))
    text = render_tally(app.store.tally(day_start()), facts)
    target = textfile or app.settings.metrics.textfile
    if target:
        write_textfile(target, text)
        click.echo(f"wrote {target}", err=True)
    else:
        click.echo(text, nl=False)


async def _probe(app: App) -> list[HostFacts]:
    async with app.fleet() as fleet:
        return await fleet.probe()
