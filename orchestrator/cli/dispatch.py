"""`orch dispatch REPO#N`: one issue to one host, followed live unless --detach."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..app import App

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..forge import Forge


@click.command()
@click.argument("issue")
@click.option("--repo", "local_repo", metavar="PATH",
              help="With a Markdown issue file: the local git repository (or URL) to work on.")
@click.option("--host", metavar="NAME", help="Run on this host (it must still be capable).")
@click.option("--specialty", metavar="S", help="Override the classification.")
@click.option("--detach", is_flag=True, help="Start the job and return; follow later with `orch logs -f`.")
@click.option("--dry-run", is_flag=True, help="Print the plan (specialty, host and why); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON (no live log).")
@click.pass_obj
def dispatch(app: App, issue: str, local_repo: str | None, host: str | None,
             specialty: str | None, detach: bool, dry_run: bool, as_json: bool) -> None:
    """Run ISSUE (OWNER/NAME#N, an issue URL, or a Markdown file with --repo) on the best host."""
    from ..forge.base import parse_issue_ref
    from ..lifecycle.dispatch import dispatch as run_dispatch
    from ..render import err_console, notice, print_json, text
    from ..render import tasks as render
    from ..render.log import LogPrinter

    forge: Forge
    if local_repo is not None or issue.endswith(".md") or Path(issue).is_file():
        local = app.forge("local")
        repo, number = local.register(Path(issue), local_repo)
        forge = local
    else:
        repo, number = parse_issue_ref(issue)
        _local_github(app, host, notice)
        forge = app.forge("github")

    printer = LogPrinter()
    on_line = None if as_json else printer.line
    on_notice = notice

    result = asyncio.run(run_dispatch(app, forge, repo, number, host=host, specialty=specialty,
                                      dry_run=dry_run, detach=detach, on_line=on_line,
                                      on_notice=on_notice))
    ctx = click.get_current_context()
    if dry_run:
        if as_json:
            print_json(render.plan_json(repo, number, result.placement, result.live))
        else:
            render.plan(result.placement, f"{repo}#{number}", result.live)
        ctx.exit(0 if result.placement.host else 1)
    task = result.task
    assert task is not None
    if as_json:
        print_json(render.dispatch_json(task))
    elif detach:
        err_console.print(text("task ", (task.id, "bold"), " started on ",
                               (task.host or "", "bold"),
                               f" (branch {task.branch}); follow it with `orch logs {task.id} -f`"))
    else:
        render.outcome(task)
    ctx.exit(1 if task.status == "failed" else 0)


def _local_github(app: App, pinned: str | None, notice: Callable[[str], None]) -> None:
    """A GitHub issue and a `connection: local` host: refuse without the operator's
    opt-in when nothing else could take it, and say what local means when it may run."""
    from ..core.trust import LOCAL_OPT_IN, check_local_github, local_meaning
    hosts = [app.host(pinned)] if pinned else app.hosts
    allowed = app.settings.allow_local_github
    check_local_github(hosts, "github", allowed)
    local = [h.name for h in hosts if h.is_local and h.enabled]
    if local and allowed:
        notice(f"host {', '.join(local)} may take this GitHub issue ({LOCAL_OPT_IN} is set): "
               f"{local_meaning(app.state_dir)}")
