"""`orch tasks`, `orch show`, `orch cancel`, `orch retry`: the task table and its transitions."""

from __future__ import annotations

import click

from ..app import App
from ..core.models import TASK_STATUSES


@click.command()
@click.option("--status", type=click.Choice(TASK_STATUSES), help="Only tasks in this status.")
@click.option("--repo", metavar="OWNER/NAME", help="Only tasks of this repository.")
@click.option("--all", "everything", is_flag=True,
              help="Every task ever, the archived ones too (default: live and recent).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tasks(app: App, status: str | None, repo: str | None, everything: bool,
          as_json: bool) -> None:
    """The task table, newest first: live and recent tasks (--all: every task)."""
    from ..render import print_json
    found = app.store.list(status=status, repo=repo, archived=everything)
    if as_json:
        from ..render.shapes import task_json
        print_json([task_json(t) for t in found])
    else:
        from ..render import tasks as render
        render.task_table(found, archived=0 if everything else app.store.archived_count())


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(app: App, task_id: str, as_json: bool) -> None:
    """One task in full (with the local pull-request record for local issues)."""
    from ..forge import forge_kind
    from ..render import print_json
    task = app.store.get(task_id)
    kind = forge_kind(task.forge)
    extra = kind.describe(app.forge(kind.name), task) if kind.describe else {}
    if as_json:
        from ..render.shapes import task_json
        data = task_json(task)
        data.update({kind.name: extra} if extra else {})
        if task.kind == "split":   # docs/split.md: its parts and integrations
            from ..lifecycle.split import parts_json
            data["parts"] = parts_json(app, task)
        print_json(data)
    else:
        from ..render import tasks as render
        render.task_detail(task, dict(extra.items()) if extra else None)


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cancel(app: App, task_id: str, as_json: bool) -> None:
    """Stop the task's remote job (its whole process group) and mark it cancelled."""
    import asyncio  # here: `orch tasks` and `orch show` never pay for it (~35 ms)

    from ..lifecycle.control import cancel_task
    from ..render import print_json
    from ..render.shapes import task_json
    from ..render.term import console, text
    task = asyncio.run(cancel_task(app, task_id))
    if as_json:
        print_json(task_json(task))
    else:
        console.print(text(f"task {task.id} cancelled ({task.error or 'stopped'})"))


@click.command()
@click.argument("task_id")
@click.option("--now", is_flag=True, help="Dispatch it right away instead of at the next poll.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def retry(app: App, task_id: str, now: bool, as_json: bool) -> None:
    """Queue a finished (failed, cancelled or lost) task again; the next poll dispatches it."""
    import asyncio

    from ..lifecycle.control import retry_task
    from ..render import print_json
    from ..render.shapes import task_json
    from ..render.term import console, text
    task = asyncio.run(retry_task(app, task_id, now=now))
    if as_json:
        print_json(task_json(task))
    else:
        console.print(text(f"task {task.id} is {task.status}"
                           + ("" if task.status != "queued" else "; the next `orch poll` dispatches it")))
