"""`orch bootstrap`: check (and prepare) what hosts need before they get work."""

from __future__ import annotations

import asyncio

import click


@click.command()
@click.argument("names", nargs=-1, metavar="[HOST]...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one entry per host.")
@click.option("--repo", "repos", multiple=True, metavar="OWNER/NAME",
              help="Check the host can reach this repository (repeatable; default: the "
                   "config's repos). The URL comes from repo_urls, else github.url.")
@click.option("--clone-url", "clone_urls", multiple=True, metavar="URL",
              help="Check the host can `git ls-remote` this URL or path (repeatable).")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE",
              help="Override a playbook var, e.g. --var min_free_mb=4096 (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds for all the checks of one host.")
@click.pass_context
def bootstrap(ctx: click.Context, names: tuple[str, ...], as_json: bool,
              repos: tuple[str, ...], clone_urls: tuple[str, ...], variables: tuple[str, ...],
              timeout: float) -> None:
    """Run playbooks/bootstrap.yml on HOSTs (default: every enabled host) concurrently:
    git, the agent and its version, node where the agent needs it, the workspace root
    (created if missing, writable), free disk, access to the repository, root policy
    and git identity. Exits 1 when any host fails or cannot be reached; dispatch skips
    a host whose last bootstrap failed until it passes."""
    from ..fleet.bootstrap import run_bootstrap
    from ..fleet.checks import parse_var
    from ..fleet.verdicts import STATE_FILE
    from ..render import bootstrap as render
    from ..render import print_json

    app = ctx.obj
    overrides = dict(parse_var(v) for v in variables)
    reports = asyncio.run(run_bootstrap(app, list(names), repos=list(repos),
                                        clone_urls=list(clone_urls), variables=overrides,
                                        timeout=timeout))
    if as_json:
        print_json(render.bootstrap_json(reports))
    else:
        render.bootstrap_table(reports, app.state_dir / STATE_FILE)
    if any(not r.ok for r in reports):
        ctx.exit(1)
