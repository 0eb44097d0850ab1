"""`orch poll`: one pass for cron (reconcile, then take new work)."""

from __future__ import annotations

import asyncio

import click

from ..app import App


@click.command()
@click.option("--repo", "repos", multiple=True, metavar="OWNER/NAME",
              help="Watch this repository (repeatable; default: the config's repos).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def poll(app: App, repos: tuple[str, ...], as_json: bool) -> None:
    """One pass: finalize or reconcile running tasks, then dispatch eligible issues.

    Exit 0 when the pass did its work (or another pass held the lock), 1 when the forge
    was unavailable (the pass stopped early, the state stays consistent) or when nothing
    was done but errors were.
    """
    from ..lifecycle.poll import poll_pass
    from ..ops.metrics import day_start, render_tally, write_textfile
    from ..render import print_json
    from ..render.poll import summary
    from ..render.term import err_console, text
    result = asyncio.run(poll_pass(app, list(repos)))
    if app.settings.metrics.textfile and not result.busy:
        write_textfile(app.settings.metrics.textfile,
                       render_tally(app.store.tally(day_start()), result.facts))
    if as_json:
        print_json(result.to_json())
    else:
        summary(result)
    if result.aborted:
        err_console.print(text(f"orch: {result.aborted}"))
        click.get_current_context().exit(1)
    if result.errors and not (result.dispatched or result.finalized):
        click.get_current_context().exit(1)
