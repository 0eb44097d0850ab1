"""`orch demo`: a throwaway project, a failing-test issue, the whole pipeline, locally."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from ..app import App

if TYPE_CHECKING:
    from ..demo.run import DemoResult


@click.command()
@click.option("--dir", "directory", metavar="PATH", type=click.Path(file_okay=False),
              help="Make the throwaway repositories under PATH (and keep the state in "
                   "PATH/state) instead of a temporary directory and the normal state dir.")
@click.option("--agent", type=click.Choice(["auto", "standin", "claude"]), default="auto",
              show_default=True,
              help="auto: Claude Code when it is installed and logged in, else the stand-in.")
@click.option("--keep", is_flag=True, help="Keep the throwaway repositories (and say where).")
@click.option("--fix-loop", is_flag=True,
              help="Stand-in only: its first attempt also breaks a test, to show the test-fix loop.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the outcome as JSON (no live log; notes go to stderr).")
@click.pass_obj
def demo(app: App, directory: str | None, agent: str, keep: bool, fix_loop: bool,
         as_json: bool) -> None:
    """Watch an issue become a branch on this machine: no GitHub, no SSH, no config.

    Creates a small Python project whose test fails, writes an issue about it, and runs
    it through `orch dispatch ./issue.md --repo PATH` on the local host, streaming the
    log. Ends with the branch, the diff summary, the test result and the task record.
    Exit 0 when the task succeeded, 1 otherwise.
    """
    from ..demo.run import run_demo
    from ..render import notice, print_json
    from ..render.log import LogPrinter
    from ..render.term import console, err_console, text

    out = err_console if as_json else console

    def say(msg: str) -> None:
        out.print(text(("orch demo", "bold cyan"), ": ", msg), soft_wrap=True)

    printer = LogPrinter()
    result = asyncio.run(run_demo(
        app, agent=agent, directory=directory, keep=keep, fix_loop=fix_loop,
        state_dir=app.state_dir_given, say=say,
        on_line=None if as_json else printer.line,
        on_notice=notice))
    ctx = click.get_current_context()
    if as_json:
        print_json(result.to_json())
    else:
        orch = "orch"
        if directory is not None and not app.state_dir_given:
            orch = f"orch --state-dir {result.state_dir}"
        _summary(result, orch)
    ctx.exit(0 if result.ok else 1)


def _summary(result: DemoResult, orch: str) -> None:
    from rich.rule import Rule

    from ..render import tasks as render
    from ..render.term import console, text

    task = result.task
    show = f"{orch} show {task.id}"
    console.print(Rule("orch demo: the outcome"))
    where = result.world.origin
    if result.branch_in_origin:
        console.print(text(("branch", "bold"), f"   {task.branch} (commit "
                           f"{(result.branch_commit or '')[:12]}, pushed to {where})"),
                      soft_wrap=True)
        console.print(text(("diff", "bold"), f"     git diff --stat {result.base}..{task.branch}"),
                      soft_wrap=True)
        for line in result.diff_stat.splitlines():
            console.print(text(f"          {line}"), soft_wrap=True)
    else:
        console.print(text(("branch", "bold"), f"   {task.branch or '-'} ",
                           (f"(not in {where})", "red")), soft_wrap=True)
    console.print(text(("tests", "bold"), f"    {task.tests or 'n/a'}"), soft_wrap=True)
    render.outcome(task)
    console.print(Rule(f"the task record ({show})"))
    render.task_detail(task, result.local or None)
    console.print(Rule())
    if task.status != "succeeded" and task.workspace:
        console.print(f"the job's workspace is kept for inspection: {task.workspace} "
                      f"(job.log, repo/); `{orch} logs {task.id}` prints the log",
                      markup=False, highlight=False, soft_wrap=True)
    if result.kept:
        console.print(f"kept: the project {result.world.checkout}, its origin {where} and the "
                      f"issue {result.world.issue_file} (all under {result.world.workdir}); "
                      f"`git -C {result.world.checkout} fetch` then check out {task.branch}",
                      markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"removed the throwaway repositories ({result.world.workdir}); "
                      f"--keep keeps them. The task stays in {result.state_dir}: `{show}`",
                      markup=False, highlight=False, soft_wrap=True)
