"""The only place that knows rich and --json: core results in, terminal output out.

One module per kind of output (hosts.py, tasks.py, log.py, ...); this file holds
what they share. Every string that came from outside orch (an issue title, a task's
error, what a host or GitHub answered) reaches the terminal through `text` or `notice`:
cleaned of control characters (core/text.py) and drawn as rich Text, so neither a
terminal escape sequence nor rich markup such as `[link=...]` in it ever acts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from ..core.text import clean

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

Part = str | tuple[str, str]   # a string, or (string, rich style)


def text(*parts: Part) -> Text:
    """One line of output: each part cleaned, styled parts as (string, style)."""
    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append(clean(part[0]), style=part[1])
        else:
            out.append(clean(part))
    return out


def notice(message: str) -> None:
    """An `orch: ...` notice on stderr (the message may hold text from outside)."""
    err_console.print(text(("orch", "yellow"), ": ", message), soft_wrap=True)


def print_fixes(fixes: list[tuple[str, str, str]]) -> None:
    """The advice of what failed, one `host step: fix` line each, under a table (where it
    stays readable on a narrow terminal). All three come from outside: printed as text."""
    if not fixes:
        return
    console.print()
    console.print(text(("fixes", "bold")))
    for host, step, fix in fixes:
        console.print(text("  ", (f"{host} {step}", "bold"), ": ", fix))


def print_json(data: Any) -> None:
    """--json output: stable keys, one document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
