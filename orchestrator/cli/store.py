"""`orch store status|migrate`: where the task state is, and moving it between backends."""

from __future__ import annotations

import click

from ..app import App


@click.group()
def store() -> None:
    """Where the task state is (TinyDB or PostgreSQL), and moving it (docs/state.md)."""


@store.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """The backend in force, how many tasks it holds, and the orchestrators it heard of."""
    s = app.store
    counts = s.counts_by_status()
    seen = s.orchestrators()
    data = {"backend": s.backend, "where": s.where, "tasks": sum(counts.values()),
            "by_status": counts, "orchestrators": seen, "moved_to": s.moved_to()}
    if as_json:
        from ..render import print_json
        print_json(data)
        return
    click.echo(f"state: {data['where']} ({data['backend']}), {data['tasks']} tasks")
    if data["moved_to"]:
        click.echo(f"moved to {data['moved_to']} (read-only here)")
    for owner, last in sorted(seen.items()):
        click.echo(f"orchestrator {owner}: last pass {last}")


@store.command("migrate")
@click.option("--to", "to", required=True, metavar="ADDRESS",
              help="postgresql://USER@HOST:PORT/DB or tinydb:PATH (the password in PGPASSWORD "
                   "or PGPASSFILE, never on the command line).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def migrate(app: App, to: str, as_json: bool) -> None:
    """Copy every task (archives included) to another backend in one transaction, check
    the copy, and leave this state read-only. Run it again after an interruption."""
    from ..store import open_store
    from ..store.migrate import migrate as run
    target = open_store(to, app.state_dir)
    try:
        done = run(app.store, target)
    finally:
        target.close()
    if as_json:
        from ..render import print_json
        print_json({"source": done.source, "target": done.target, "copied": done.copied,
                    "total": done.total, "live": done.live})
        return
    click.echo(f"copied {done.copied} tasks ({done.live} live) from {done.source} to "
               f"{done.target}; it holds {done.total}")
    click.echo(f"next: set `state: {done.target}` in orch.yml (or $ORCH_STATE_URL) on every "
               f"machine that runs orch; {done.source} is read-only now")
