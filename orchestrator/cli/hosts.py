"""`orch hosts`: probe every host concurrently and show what the scheduler will see."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..core.models import HostFacts


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (docs/SPEC.md shape).")
@click.argument("names", nargs=-1)
@click.pass_context
def hosts(ctx: click.Context, as_json: bool, names: tuple[str, ...]) -> None:
    """Probe every host (or NAMES): reachable, load, cpus, memory, disk, running tasks,
    agent version. Exits 1 when an enabled host is unreachable."""
    app = ctx.obj
    inventory = app.hosts

    async def run() -> list[HostFacts]:
        async with app.fleet() as fleet:
            return await fleet.probe(list(names) or None)

    facts = asyncio.run(run())
    if as_json:
        from ..fleet.facts import hosts_json
        from ..render import print_json
        print_json(hosts_json(facts))
    else:
        from ..render import hosts as render
        from ..transport import runs_here
        render.hosts_table(facts)
        render.local_notes([h for h in inventory if runs_here(h)], app.state_dir,
                           app.settings.allow_local_github)
    if app.inventory_path is None:      # on stderr: --json's stdout stays JSON
        from ..app import NO_INVENTORY_HINT, NO_INVENTORY_NOTE
        click.echo(f"orch: {NO_INVENTORY_NOTE}\nhint: {NO_INVENTORY_HINT}", err=True)
    if any(f.enabled and not f.reachable for f in facts):
        ctx.exit(1)
