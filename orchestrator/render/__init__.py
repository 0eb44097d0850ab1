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


def print_json(data: Any) -> None:
    """--json output: stable keys, one document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
