"""What the terminal renderers share: the two rich consoles and `text`, the one way a
string from outside orch becomes terminal output (cleaned, never parsed as markup)."""

from __future__ import annotations

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


def print_fixes(fixes: list[tuple[str, str, str]]) -> None:
    """The advice of what failed, one `host step: fix` line each, under a table (where it
    stays readable on a narrow terminal). All three come from outside: printed as text."""
    if not fixes:
        return
    console.print()
    console.print(text(("fixes", "bold")))
    for host, step, fix in fixes:
        console.print(text("  ", (f"{host} {step}", "bold"), ": ", fix))
