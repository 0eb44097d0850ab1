"""The `orch` command group: the subcommands by name, the global options, and how an
error becomes a message and an exit code (cli/__init__.py's main runs it).

Subcommands live one module each and are imported only when invoked, so that
`orch --help` stays instant (asyncssh and PyGithub are heavy imports).
"""

from __future__ import annotations

import importlib
import sys

import click

from ..core.text import clean
from ..errors import OrchError

# name -> "module:attribute"; the help line is repeated here so --help imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "hosts": ("orchestrator.cli.hosts:hosts", "Probe every host: reachability, load, capacity, agent."),
    "inventory": ("orchestrator.cli.inventory:inventory", "List or edit hosts.yml in place, keeping comments."),
    "trust": ("orchestrator.cli.trust:trust", "Record a host's key in known_hosts after showing its fingerprint."),
    "dispatch": ("orchestrator.cli.dispatch:dispatch", "Run one issue on the best host and open the PR."),
    "poll": ("orchestrator.cli.poll:poll", "One pass for cron: reconcile running tasks, then take new work."),
    "tasks": ("orchestrator.cli.tasks:tasks", "The task table."),
    "show": ("orchestrator.cli.tasks:show", "One task in full."),
    "logs": ("orchestrator.cli.logs:logs", "A task's log; -f follows it live over SSH."),
    "cancel": ("orchestrator.cli.tasks:cancel", "Stop a task's remote job (its whole process group)."),
    "retry": ("orchestrator.cli.tasks:retry", "Queue a finished task again."),
    "bootstrap": ("orchestrator.cli.bootstrap:bootstrap", "Check (and prepare) what hosts need to run jobs."),
    "provision": ("orchestrator.cli.provision:provision", "Install git, the agent, the workspace; then bootstrap."),
    "metrics": ("orchestrator.cli.metrics:metrics", "Prometheus text exposition of tasks and hosts."),
    "top": ("orchestrator.cli.top:top", "The fleet and its work at a glance, live (--once: one frame)."),
    "store": ("orchestrator.cli.store:store", "Where the task state is; migrate it between TinyDB and PostgreSQL."),
    "cron": ("orchestrator.cli.cron:cron", "Install, show or remove the crontab line for `orch poll`."),
    "demo": ("orchestrator.cli.demo:demo", "Watch an issue become a branch on this machine, offline."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="orch.yml (default: $ORCH_CONFIG, ./orch.yml, ~/.config/orch/orch.yml).")
@click.option("--inventory", "inventory_path", type=click.Path(dir_okay=False),
              help="hosts.yml (default: $ORCH_INVENTORY, config's inventory:, ./inventory/hosts.yml).")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Task state, logs and lock (default: $ORCH_HOME, config's state_dir:, ~/.local/state/orch).")
@click.version_option(package_name="orch", prog_name="orch")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, inventory_path: str | None,
        state_dir: str | None) -> None:
    """orch turns GitHub issues into pull requests by running Claude Code on your PCs over SSH."""
    from ..app import App
    ctx.obj = App(config_path=config_path, inventory_path=inventory_path, state_dir=state_dir)


def run(argv: list[str] | None = None) -> None:
    """The command line `argv` (default: sys.argv): every OrchError becomes one message
    and its exit code."""
    try:
        rc = cli.main(args=argv, prog_name="orch", standalone_mode=False)
    except OrchError as exc:
        # The message may quote a host, GitHub or an issue: never live terminal controls.
        click.echo(f"orch: {clean(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("orch: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except KeyboardInterrupt:
        click.echo("orch: interrupted", err=True)
        sys.exit(130)
    # standalone_mode=False hands back ctx.exit(N)'s code as the return value.
    sys.exit(rc if isinstance(rc, int) else 0)
