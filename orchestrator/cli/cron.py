"""`orch cron install|show|remove`: the crontab line that runs `orch poll`, managed in place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..app import App
from ..core.text import clean

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..errors import UsageError
    from ..ops.cron import PollJob

EVERY = click.IntRange(1, 1440)


def _job_factory(ctx: click.Context) -> Callable[[int], PollJob]:
    """Builds PollJobs with the global --config/--inventory/--state-dir of this run."""
    from ..ops.cron import poll_job
    root = ctx.find_root().params
    app: App = ctx.obj

    def make(every: int) -> PollJob:
        return poll_job(app, every, config=root.get("config_path"),
                        inventory=root.get("inventory_path"), state_dir=root.get("state_dir"))
    return make


def _env_note(app: App) -> str:
    name = app.settings.github.token_env
    return (f"note: cron starts `orch poll` without your shell's environment; if it needs "
            f"${name}, add a `{name}=...` line above it with `crontab -e` (your crontab is "
            f"readable only by you), or use the systemd units of `orch cron show`")


def _missing(ctx: click.Context, exc: UsageError, job: PollJob, as_json: bool, action: str) -> None:
    """No crontab command: say so, give the line to add by hand, exit 2."""
    from ..ops.cron import systemd_units
    from ..render import print_json
    app: App = ctx.obj
    units = systemd_units(job, app.settings.github.token_env)
    if as_json:
        print_json({"action": action, "error": exc.message, "hint": exc.hint,
                    "crontab_available": False, "expected": job.line, "log": str(job.log),
                    "systemd": units})
    else:
        click.echo(f"orch: {clean(str(exc))}", err=True)
        if action == "remove":
            click.echo("if you added it by hand, delete the line ending with the marker:")
        else:
            click.echo("the line to add by hand (crontab -e):")
        click.echo(job.line)
        if action == "show":
            _print_units(units)
    ctx.exit(2)


def _print_units(units: dict[str, str]) -> None:
    click.echo("\nor, with systemd, these two units:\n")
    for text in units.values():
        click.echo(text)


@click.group()
def cron() -> None:
    """Run `orch poll` from cron every few minutes (output: <state_dir>/poll.log).

    Only the line marked `# orch poll (managed by orch cron)` is ever touched;
    set $ORCH_CRONTAB to use another crontab command."""


@cron.command()
@click.option("--every", type=EVERY, default=5, show_default=True, metavar="MINUTES",
              help="Minutes between passes (1-59, or whole hours dividing a day).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def install(ctx: click.Context, every: int, as_json: bool) -> None:
    """Add the crontab line, or replace the one installed before (idempotent)."""
    from ..ops.cron import CrontabMissing
    from ..ops.cron import install as do_install
    from ..render import print_json
    job = _job_factory(ctx)(every)
    try:
        result = do_install(job)
    except CrontabMissing as exc:
        _missing(ctx, exc, job, as_json, "install")
        return
    if as_json:
        print_json(result.to_json())
        return
    if not result.changed:
        click.echo("already installed, unchanged:")
    elif result.before:
        click.echo("replaced the previous orch line with:")
    else:
        click.echo("installed:")
    click.echo(job.line)
    click.echo(f"log: {job.log}")
    click.echo(_env_note(ctx.obj))


@cron.command()
@click.option("--every", type=EVERY, default=None, metavar="MINUTES",
              help="Compare with this interval (default: the installed line's, else 5).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, every: int | None, as_json: bool) -> None:
    """Print the installed line (or say there is none) and equivalent systemd units."""
    from ..ops.cron import DEFAULT_EVERY, CrontabMissing, systemd_units
    from ..ops.cron import show as do_show
    from ..render import print_json
    make = _job_factory(ctx)
    try:
        result = do_show(make, every)
    except CrontabMissing as exc:
        _missing(ctx, exc, make(every or DEFAULT_EVERY), as_json, "show")
        return
    units = systemd_units(result.job, ctx.obj.settings.github.token_env)
    if as_json:
        print_json(result.to_json(units))
        return
    if not result.after:
        click.echo("no orch poll line is installed; `orch cron install` would add:")
        click.echo(result.job.line)
    else:
        click.echo("installed:")
        for line in result.after:
            click.echo(line)
        if not result.up_to_date:
            click.echo("it differs from what `orch cron install` would write now:")
            click.echo(result.job.line)
    click.echo(f"log: {result.job.log}")
    _print_units(units)


@cron.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def remove(ctx: click.Context, as_json: bool) -> None:
    """Remove orch's crontab line; every other line stays as it is."""
    from ..ops.cron import DEFAULT_EVERY, CrontabMissing
    from ..ops.cron import remove as do_remove
    from ..render import print_json
    job = _job_factory(ctx)(DEFAULT_EVERY)
    try:
        result = do_remove(job)
    except CrontabMissing as exc:
        _missing(ctx, exc, job, as_json, "remove")
        return
    if as_json:
        print_json(result.to_json())
        return
    if result.changed:
        click.echo("removed:")
        for line in result.before:
            click.echo(line)
    else:
        click.echo("no orch poll line was installed; the crontab is unchanged")
