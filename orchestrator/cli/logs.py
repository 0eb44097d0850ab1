"""`orch logs ID [-f]`: a task's log, read from its host, or orch's own copy once finished."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..app import App

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.models import Task
    from ..render.log import LogPrinter


@click.command()
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True,
              help="Follow the log live until the job ends; survives a dropped SSH link.")
@click.option("--raw", is_flag=True, help="Print the log as written (stream-json lines included).")
@click.pass_obj
def logs(app: App, task_id: str, follow: bool, raw: bool) -> None:
    """Show the log of TASK_ID (any unique prefix of its id)."""
    from ..render import notice
    from ..render.log import LogPrinter
    from ..render.term import err_console, text
    task = app.store.get(task_id)
    if task.kind == "split":   # every part's log, each line prefixed with its part
        asyncio.run(_split_logs(app, task, raw, follow, notice))
        return
    printer = LogPrinter(raw=raw)
    if task.status != "running" or not task.host or not task.workspace:
        local = Path(task.log_path) if task.log_path else None
        if local and local.is_file():
            for line in local.read_text(encoding="utf-8", errors="replace").splitlines():
                printer.line(line)
            return
        if not task.host or not task.workspace:
            err_console.print(text(f"task {task.id} is {task.status} and has no log yet"))
            return
    asyncio.run(_remote_log(app, task, printer, follow, notice))


async def _split_logs(app: App, parent: Task, raw: bool, follow: bool,
                      notice: Callable[[str], None]) -> None:
    from ..lifecycle.split_follow import split_logs
    from ..render.log import LogPrinter

    def sink_for(label: str) -> Callable[[str], None]:
        return LogPrinter(raw=raw, prefix=f"[{label}] ").line

    await split_logs(app, parent, sink_for, live=follow, on_notice=notice)


async def _remote_log(app: App, task: Task, printer: LogPrinter, follow: bool,
                      notice: Callable[[str], None]) -> None:
    from ..errors import WorkError
    from ..job import remote
    from ..lifecycle.follow import follow as follow_log
    host, workspace = task.host, task.workspace
    if not host or not workspace:       # the caller sends only tasks that have both
        raise WorkError(f"task {task.id} has no host or workspace, so no remote log")
    async with app.fleet() as fleet:
        if follow:
            await follow_log(fleet, task, printer.line, on_notice=notice)
            return
        conn = await fleet.connection(host)
        text = await remote.read_log(conn, workspace)
        if text is None:
            raise WorkError(f"{host}: cannot read the log of task {task.id}: job.log missing")
        for line in text.splitlines():
            printer.line(line)
