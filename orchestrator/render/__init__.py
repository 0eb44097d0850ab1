"""The only place that knows rich and --json: core results in, terminal output out.

One module per kind of output (hosts.py, tasks.py, log.py, ...); this file holds
what they share.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_fixes(fixes: list[tuple[str, str, str]]) -> None:
    """The advice of what failed, one `host step: fix` line each, under a table (where it
    stays readable on a narrow terminal). All three come from outside: printed as text."""
    if not fixes:
        return
    from rich.markup import escape
    console.print()
    console.print("[bold]fixes[/]")
    for host, step, fix in fixes:
        console.print(f"  [bold]{escape(host)} {escape(step)}[/]: {escape(fix)}")


def print_json(data: Any) -> None:
    """--json output: stable keys, one document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
