"""`orch inventory list/add/set/rm`: show hosts.yml, or edit it in place.

Parsing only: the edits themselves (validate before writing, atomic replace, comments
kept) live in orchestrator.fleet.inventory, the output in orchestrator.render.inventory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..app import DEFAULT_INVENTORY
from ..errors import UsageError


def inventory_file(app: Any) -> Path:
    """Where hosts.yml is, or would be created: --inventory, $ORCH_INVENTORY, the
    config's `inventory:`, then ./inventory/hosts.yml (the order of App.inventory_path).

    Unlike App.inventory_path this does not insist that the file exists, which `add`
    needs to create it.
    """
    explicit = getattr(app, "_inventory_arg", None) or os.environ.get("ORCH_INVENTORY") \
        or app.settings.inventory
    return Path(explicit).expanduser() if explicit else DEFAULT_INVENTORY


def existing_inventory(app: Any) -> Path:
    """The hosts.yml to edit; `set`/`rm` on the embedded default has nothing to edit."""
    path = app.inventory_path
    if path is None:
        raise UsageError(f"no inventory file ({DEFAULT_INVENTORY} does not exist)",
                         hint="`orch inventory add NAME --address A` creates it")
    return Path(path)


def parse_assignment(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as YAML: `max_tasks=3`, `enabled=false`,
    `specialties=[backend,api]`. `KEY=` (nothing) removes the key so defaults apply."""
    from ..config.yamlfile import new_yaml
    from ..fleet.inventory import UNSET

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"expected KEY=VALUE, got {text!r}", hint="e.g. max_tasks=3 enabled=false")
    if not raw.strip():
        return key, UNSET
    try:
        value = new_yaml().load(raw)
    except Exception as exc:  # ruamel raises several unrelated types for bad scalars
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{key}: cannot read {raw!r} as a YAML value ({reason})",
                         hint="lists are written [a,b]; quote strings with special characters") from None
    return key, list(value) if isinstance(value, list) else value


def _split_specialties(repeated: tuple[str, ...], joined: str | None) -> list[str] | None:
    """--specialty a --specialty b and --specialties a,b, merged in order, no repeats."""
    items = list(repeated) + list((joined or "").split(","))
    cleaned = [s.strip() for s in items if s.strip()]
    return list(dict.fromkeys(cleaned)) if (repeated or joined is not None) else None


@click.group()
def inventory() -> None:
    """List or edit hosts.yml in place, keeping its comments, blank lines and key order.

    An edit that would make the file invalid is refused (exit 2) and the file is left
    exactly as it was.
    """


@inventory.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of hosts (effective values).")
@click.pass_context
def list_hosts(ctx: click.Context, as_json: bool) -> None:
    """Every host with its effective values (defaults applied)."""
    from ..render import inventory as render
    from ..render import print_json

    app = ctx.obj
    hosts = app.hosts
    if as_json:
        print_json(render.inventory_json(hosts))
    else:
        render.inventory_table(hosts, app.inventory_path)


@inventory.command("add")
@click.argument("name")
@click.option("--address", help="IP, DNS name or ~/.ssh/config alias (required unless --connection local).")
@click.option("--port", type=int, help="sshd port.")
@click.option("--user", help="Login user.")
@click.option("--specialty", "specialty", multiple=True, help="A specialty tag (repeatable).")
@click.option("--specialties", help="Comma-separated specialty tags, e.g. backend,api.")
@click.option("--max-tasks", type=int, help="Tasks this host may run at once (>= 1).")
@click.option("--identity-file", help="SSH private key for this host.")
@click.option("--agent", help="Path of the claude CLI on the host.")
@click.option("--workspace-root", help="Where task directories go on the host.")
@click.option("--disabled", is_flag=True, help="Add it drained: kept, never chosen.")
@click.option("--connection", type=click.Choice(["ssh", "local"]), help="ssh (default) or local.")
@click.pass_context
def add(ctx: click.Context, name: str, address: str | None, port: int | None, user: str | None,
        specialty: tuple[str, ...], specialties: str | None, max_tasks: int | None,
        identity_file: str | None, agent: str | None, workspace_root: str | None,
        disabled: bool, connection: str | None) -> None:
    """Add host NAME to hosts.yml (the file is created if missing).

    Only the options given are written; `defaults:` apply to the rest.
    """
    from ..fleet.inventory import add_host
    from ..render import inventory as render

    fields: dict[str, Any] = {
        "address": address, "port": port, "user": user,
        "specialties": _split_specialties(specialty, specialties),
        "max_tasks": max_tasks, "identity_file": identity_file, "agent": agent,
        "workspace_root": workspace_root, "enabled": False if disabled else None,
        "connection": connection,
    }
    path = inventory_file(ctx.obj)
    host = add_host(path, name, {k: v for k, v in fields.items() if v is not None})
    render.edited("added", name, path, host)


@inventory.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_context
def set_(ctx: click.Context, name: str, assignments: tuple[str, ...]) -> None:
    """Change fields of host NAME: `orch inventory set pc1 max_tasks=3 enabled=false
    specialties=[backend,api]`. `KEY=` removes the key so the default applies again."""
    from ..fleet.inventory import set_host
    from ..render import inventory as render

    fields = dict(parse_assignment(a) for a in assignments)
    path = existing_inventory(ctx.obj)
    host = set_host(path, name, fields)
    render.edited("updated", name, path, host)


@inventory.command("rm")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, name: str) -> None:
    """Remove host NAME (and the comment lines directly above it)."""
    from ..fleet.inventory import remove_host
    from ..render import inventory as render

    path = existing_inventory(ctx.obj)
    remove_host(path, name)
    render.edited("removed", name, path)
