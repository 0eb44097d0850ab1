"""What every benchmark of bench/ shares: the environment tools run in, and one table.

A sample is a dict: {"group", "tool", "n", "run", "wall", "ok", "detail", ...}; rows are
the median, min and max of the samples that counted, per (group, tool, n), with a ratio
to a reference row (orch's, or the same command at N=0) that the benchmark sets.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tool_env(root: Path) -> dict[str, str]:
    """One environment for every tool: no ssh-agent (keys come from files only), no
    ORCH_*/ANSIBLE_* leaking in, and Python bytecode cached (this sandbox sets
    PYTHONDONTWRITEBYTECODE=1, which a normal install does not: every run would then
    recompile every module, orch's and its peers' alike)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCH_", "SSH_AUTH_SOCK", "SSH_AGENT", "ANSIBLE_"))
           and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


@dataclass
class Row:
    group: str
    tool: str
    label: str
    n: int
    runs: int
    failed: int
    median: float = 0.0
    min: float = 0.0
    max: float = 0.0
    unit: str = "s"
    ratio: float | None = None
    ratio_to: str = ""
    note: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def summarize(samples: list[dict], label: Callable[[str], str] = str,
              value: str = "wall", unit: str = "s") -> list[Row]:
    """One row per (group, tool, n), in the order they first appear."""
    keys: list[tuple[str, str, int]] = []
    for s in samples:
        k = (s.get("group", ""), s["tool"], s["n"])
        if k not in keys:
            keys.append(k)
    out = []
    for group, tool, n in keys:
        mine = [s for s in samples if (s.get("group", ""), s["tool"], s["n"]) == (group, tool, n)]
        ok = [s[value] for s in mine if s["ok"]]
        row = Row(group, tool, label(tool), n, len(ok), len(mine) - len(ok), unit=unit)
        if ok:
            row.median, row.min, row.max = statistics.median(ok), min(ok), max(ok)
        out.append(row)
    return out


def ratio_to(rows: list[Row], reference: str, name: str = "orch") -> None:
    """Set each row's ratio to the median of the `reference` tool's row of the same
    group and N."""
    base = {(r.group, r.n): r.median for r in rows if r.tool == reference and r.runs}
    for r in rows:
        b = base.get((r.group, r.n))
        if b and r.runs:
            r.ratio, r.ratio_to = r.median / b, name


def report(rows: list[Row], *sections: list[str]) -> int:
    """Print the table, then each section of lines (counts, targets) after a blank line;
    the exit status of a benchmark's main: 0 when every row has runs."""
    print_rows(rows)
    for lines in sections:
        print()
        for line in lines:
            print(line)
    return 0 if rows and all(r.runs for r in rows) else 1


def print_rows(rows: list[Row], file=None) -> None:
    out = file or sys.stdout
    head = (f"{'what':<36} {'N':>6} {'median':>9} {'min':>9} {'max':>9} {'unit':<5} "
            f"{'ratio':>7} {'to':<5} runs")
    print(head, file=out)
    print("-" * len(head), file=out)
    last = None
    for r in rows:
        if last is not None and r.group != last:
            print(file=out)
        last = r.group
        runs = f"{r.runs}" + (f" ({r.failed} failed)" if r.failed else "")
        if not r.runs:
            print(f"{r.label:<36} {r.n:>6} {'failed':>9}{'':>33}  0 {r.note}", file=out)
            continue
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        fmt = ".3f" if r.unit == "s" else ".0f"
        print(f"{r.label:<36} {r.n:>6} {r.median:>9{fmt}} {r.min:>9{fmt}} {r.max:>9{fmt}} "
              f"{r.unit:<5} {ratio:>7} {r.ratio_to:<5} {runs}"
              + (f"  {r.note}" if r.note else ""), file=out)
