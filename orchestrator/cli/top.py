"""`orch top [--interval S] [--once] [--json]`: the fleet and its work at a glance, live.

--once prints one frame, --json one JSON object (docs/monitoring.md has its shape); both
exit after one round. Without them, a full-screen view (cli/top_live.py) refreshed every
--interval seconds over connections kept open between refreshes.
"""

from __future__ import annotations

import asyncio
import sys

import click

from ..app import App
from ..errors import UsageError


@click.command()
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              metavar="SECONDS", help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one snapshot as a JSON object and exit (see docs/monitoring.md).")
@click.pass_context
def top(ctx: click.Context, interval: float, once: bool, as_json: bool) -> None:
    """Hosts, live and recent tasks, the day's spend and the selected task's log, live.

    Keys: up/down or j/k select a task, l follows its log, c cancels it (asks y/n),
    q quits."""
    app: App = ctx.obj
    if once or as_json:
        asyncio.run(_once(app, interval, as_json))
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("orch top needs a terminal for its live view",
                         hint="use `orch top --once` or `orch top --json` in scripts and pipes")
    from .top_live import run
    ctx.exit(asyncio.run(run(app, interval)))


async def _once(app: App, interval: float, as_json: bool) -> None:
    from ..ops.watch import watching
    async with watching(app, interval=interval) as watcher:
        snap = await watcher.refresh()
    from ..render import print_json
    from ..render.term import console
    from ..render.top import frame, top_json
    if as_json:
        print_json(top_json(snap))
    else:
        console.print(frame(snap))
