"""`orch dispatch REPO#N`: one issue to one host, followed live unless --detach."""

from __future__ import annotations

import asyncio

import click

from ..app import App


@click.command()
@click.argument("issue")
@click.option("--repo", "local_repo", metavar="PATH",
              help="With a Markdown issue file: the local git repository (or URL) to work on.")
@click.option("--host", metavar="NAME", help="Run on this host (it must still be capable).")
@click.option("--specialty", metavar="S", help="Override the classification.")
@click.option("--detach", is_flag=True, help="Start the job and return; follow later with `orch logs -f`.")
@click.option("--dry-run", is_flag=True, help="Print the plan (specialty, host and why); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON (no live log).")
@click.option("--followup", metavar="TEXT",
              help="A follow-up run on orch's pull request (ISSUE is the PR or its issue), "
                   "with TEXT as the request.")
@click.pass_obj
def dispatch(app: App, issue: str, local_repo: str | None, host: str | None,
             specialty: str | None, detach: bool, dry_run: bool, as_json: bool,
             followup: str | None) -> None:
    """Run ISSUE (OWNER/NAME#N, an issue URL, or a Markdown file with --repo) on the best host."""
    from ..forge import kind_for_ref
    from ..lifecycle.dispatch import dispatch as run_dispatch
    from ..render import notice, print_json

    kind = kind_for_ref(issue, local_repo)     # each forge reads its own references
    forge = app.forge(kind.name)
    repo, number = kind.resolve(forge, issue, local_repo)

    on_line = None
    if not as_json:      # --json prints one document and no live log: no rich (~20 ms)
        from ..render.log import LogPrinter
        on_line = LogPrinter().line

    result = asyncio.run(run_dispatch(app, forge, repo, number, host=host, specialty=specialty,
                                      dry_run=dry_run, detach=detach, on_line=on_line,
                                      on_notice=notice, followup=followup))
    ctx = click.get_current_context()
    if as_json:
        from ..render.shapes import dispatch_json, plan_json
        if dry_run:
            print_json(plan_json(repo, number, result.placement, result.live))
            ctx.exit(0 if result.placement.host else 1)
        assert result.task is not None
        print_json(dispatch_json(result.task))
        ctx.exit(1 if result.task.status == "failed" else 0)
    from ..render import tasks as render
    from ..render.term import err_console, text
    if dry_run:
        render.plan(result.placement, f"{repo}#{number}", result.live)
        ctx.exit(0 if result.placement.host else 1)
    task = result.task
    assert task is not None
    if detach:
        err_console.print(text("task ", (task.id, "bold"), " started on ",
                               (task.host or "", "bold"),
                               f" (branch {task.branch}); follow it with `orch logs {task.id} -f`"))
    else:
        render.outcome(task)
    ctx.exit(1 if task.status == "failed" else 0)

