"""`orch hosts`: probe every host concurrently and show what the scheduler will see."""

from __future__ import annotations

import asyncio

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (SPEC.md shape).")
@click.argument("names", nargs=-1)
@click.pass_context
def hosts(ctx: click.Context, as_json: bool, names: tuple[str, ...]) -> None:
    """Probe every host (or NAMES): reachable, load, cpus, memory, disk, running tasks,
    agent version. Exits 1 when an enabled host is unreachable."""
    from ..fleet import Fleet
    from ..render import print_json
    from ..render import hosts as render

    app = ctx.obj
    inventory = app.hosts
    settings = app.settings

    async def run():
        async with Fleet(inventory, settings) as fleet:
            return await fleet.probe(list(names) or None)

    facts = asyncio.run(run())
    if as_json:
        print_json(render.hosts_json(facts))
    else:
        render.hosts_table(facts)
    if any(f.enabled and not f.reachable for f in facts):
        ctx.exit(1)
