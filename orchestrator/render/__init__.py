"""The only place that knows rich and --json: core results in, terminal output out.

One module per kind of output (hosts.py, tasks.py, log.py, ...); term.py holds what the
terminal ones share (the consoles, `text`). Every string that came from outside orch (an
issue title, a task's error, what a host or GitHub answered) reaches the terminal
through `text` or `notice`: cleaned of control characters (core/text.py) and drawn as
rich Text, so neither a terminal escape sequence nor rich markup such as `[link=...]`
in it ever acts.

This file imports no rich (~20 ms at start-up): a --json command (`orch dispatch --json`,
`orch hosts --json`, `orch tasks --json`) prints through `print_json` and never pays it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """--json output: stable keys, one document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def notice(message: str) -> None:
    """An `orch: ...` notice on stderr (the message may hold text from outside).

    rich is imported here, on the first notice: most commands never have one."""
    from .term import err_console, text
    err_console.print(text(("orch", "yellow"), ": ", message), soft_wrap=True)
