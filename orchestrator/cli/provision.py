"""`orch provision`: set hosts up (git, the agent, workspace, git identity), then bootstrap."""

from __future__ import annotations

import getpass
import os
import sys

import click

from ..errors import UsageError

PROMPT = "sudo password for the hosts' login user (asked once, for every host): "


def _terminal() -> bool:
    """Whether getpass can read from a terminal without echo: /dev/tty, else stdin."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return sys.stdin.isatty()
    os.close(fd)
    return True


def read_sudo_password() -> str:
    """The sudo password, read once from the terminal (never argv, never a file, never the
    environment). Bad input (exit 2) when there is no terminal to read it from."""
    if not _terminal():
        raise UsageError("--ask-sudo-pass reads the sudo password from a terminal, and there is none",
                         hint="run orch provision from a terminal, or give the login user "
                              "passwordless sudo for package installs (see docs/provision.md)")
    password = getpass.getpass(PROMPT)
    if not password:
        raise UsageError("no sudo password given", hint="run again and type it, or leave out --ask-sudo-pass")
    return password


@click.command()
@click.argument("names", nargs=-1, metavar="[HOST]...")
@click.option("--check", is_flag=True, help="Change nothing: say what would change.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one entry per host.")
@click.option("--ask-sudo-pass", is_flag=True,
              help="Read the sudo password once from the terminal (for installing git).")
@click.pass_context
def provision(ctx: click.Context, names: tuple[str, ...], check: bool, as_json: bool,
              ask_sudo_pass: bool) -> None:
    """Set up HOSTs (default: every enabled host) concurrently, over SSH with fabric: git
    (apt-get/dnf through sudo when missing), the agent from provision.agent_source (npm or
    a local file, to the inventory's agent path), workspace_root (0700) and a git identity;
    then run bootstrap and record its verdict. Each step reports ok, changed or failed
    (with the fix); a second run changes nothing. Exits 1 when any host fails."""
    from ..fleet.provision import make_plan, report_json
    from ..fleet.provision import provision as run
    from ..render import print_json

    app = ctx.obj
    plan = make_plan(app, names, check=check)
    # Under --check nothing runs as root: the flag only says a password would be there.
    password = read_sudo_password() if ask_sudo_pass and not check and plan.hosts else None
    reports = run(app, plan, sudo_password=password, password_available=ask_sudo_pass)
    if as_json:
        print_json(report_json(reports))
    else:
        from ..render import provision as render
        render.provision_table(reports, check=check)
    if any(not r.ok for r in reports):
        ctx.exit(1)
