"""Store benchmark: orch's commands with 0, 20,000 and 100,000 finished tasks in the state.

    python bench/store.py [--sizes 0,20000,100000] [--runs 5] [--before DIR]

For each size a state dir is made as the previous orch version left it (every task in
state.json: tests/legacy_state.py, records cloned from a state that version wrote), and
the first command on it is timed once (the migration, `orch tasks --json`). Then, several
runs each in a rotating order, every command as a whole process (the real CLI):

  demo      `orch demo --agent standin --json`: one whole dispatch on the local host
            (job, stand-in agent, tests, commit, push, local PR), into that state
  poll      `orch poll --json` with nothing to do (the local host, no repos)
  tasks     `orch tasks --json` (the default view: live and recent)
  show      `orch show OLDEST_ID --json`
  metrics   `orch metrics --no-probe`

Targets (issue 10): demo and poll within 1.15x of their time at size 0; tasks and show
under 0.3 s; metrics under 1 s. `--before DIR` times the same commands with the orch
installed in DIR/.venv (e.g. a checkout of the previous version): a before/after, one
run per size at 100,000 (it takes minutes there).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.table import Row, log, report, summarize, tool_env  # noqa: E402
from tests.legacy_state import finished_tasks, write_legacy  # noqa: E402

COMMANDS = ("demo", "poll", "tasks", "show", "metrics")
LABELS = {"migrate": "first use (migration)", "demo": "orch demo", "poll": "orch poll (idle)",
          "tasks": "orch tasks --json", "show": "orch show OLD_ID",
          "metrics": "orch metrics --no-probe"}
# (command, limit, what the limit is): None = relative to size 0
TARGETS = {"demo": (1.15, "x size 0"), "poll": (1.15, "x size 0"),
           "tasks": (0.3, "s"), "show": (0.3, "s"), "metrics": (1.0, "s")}


class World:
    """One state dir per size, made once, shared by every run of every command."""

    def __init__(self, sizes: list[int], root: Path) -> None:
        self.root = root
        self.oldest: dict[int, str] = {}
        self.template: dict[int, Path] = {}
        for n in sizes:
            records = finished_tasks(n)
            d = root / f"legacy-{n}"
            write_legacy(d, records)
            self.template[n] = d
            self.oldest[n] = records[0]["id"] if records else ""
        (root / "orch.yml").write_text("repos: []\n")

    def state(self, n: int, flavour: str) -> Path:
        """The state dir of size n for one orch build (each build migrates its own copy)."""
        d = self.root / f"{flavour}-{n}"
        if not d.exists():
            shutil.copytree(self.template[n], d)
        return d


def orch_bin(tree: Path | None) -> list[str]:
    if tree is None:
        return [str(Path(sys.executable).parent / "orch")]
    return [str(tree / ".venv" / "bin" / "orch")]


def command(world: World, what: str, n: int, state: Path, run: int) -> list[str]:
    base = ["--config", str(world.root / "orch.yml"), "--state-dir", str(state)]
    if what == "demo":
        return [*base, "demo", "--agent", "standin", "--json",
                "--dir", str(world.root / f"demo-{state.name}-{run}")]
    if what == "poll":
        return [*base, "poll", "--json"]
    if what in ("tasks", "migrate"):
        return [*base, "tasks", "--json"]
    if what == "show":
        return [*base, "show", world.oldest[n], "--json"]
    return [*base, "metrics", "--no-probe"]


def check(what: str, n: int, p: subprocess.CompletedProcess[str], world: World) -> str | None:
    """Why a run does not count (None: it does)."""
    if p.returncode != 0:
        return f"exit {p.returncode}: {p.stderr.strip()[-300:]}"
    if what == "demo" and json.loads(p.stdout)["task"]["status"] != "succeeded":
        return "the demo's task did not succeed"
    if what == "show" and json.loads(p.stdout)["id"] != world.oldest[n]:
        return "show found another task"
    if what == "metrics" and "orch_tasks_completed_total" not in p.stdout:
        return "no metrics"
    return None


def time_one(world: World, tree: Path | None, flavour: str, what: str, n: int,
             run: int) -> dict:
    state = world.state(n, flavour)
    cmd = orch_bin(tree) + command(world, what, n, state, run)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=tool_env(world.root), cwd=world.root, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=900)
    wall = time.perf_counter() - t0
    if what == "demo":
        shutil.rmtree(world.root / f"demo-{state.name}-{run}", ignore_errors=True)
    if what == "show" and not world.oldest[n]:
        bad = None if p.returncode == 2 else "show of nothing should be refused"
    else:
        bad = check(what, n, p, world)
    return {"group": "store", "tool": f"{flavour}:{what}", "n": n, "run": run, "wall": wall,
            "ok": bad is None, "detail": bad or ""}


def run(sizes: list[int], runs: int, before: Path | None = None,
        commands: tuple[str, ...] = COMMANDS) -> list[dict]:
    """Every sample of the store benchmark (see the module doc)."""
    samples: list[dict] = []
    builds: list[tuple[str, Path | None]] = [("orch", None)]
    if before is not None:
        builds.append(("before", before))
    with tempfile.TemporaryDirectory(prefix="orch-bench-store-") as tmp:
        root = Path(tmp)
        log(f"store: writing legacy states of {', '.join(map(str, sizes))} tasks")
        world = World(sizes, root)
        for n in sizes:
            for flavour, tree in builds:
                samples.append(time_one(world, tree, flavour, "migrate", n, 0))
                log(f"store N={n} {flavour} first use: {samples[-1]['wall']:.2f}s")
                time_one(world, tree, flavour, "tasks", n, -1)   # warm-up
        # Sizes interleaved within each run: drift of the machine's load lands on every
        # size alike, so the ratios to size 0 hold even when the medians move.
        for i in range(runs):
            order = list(commands[i % len(commands):] + commands[:i % len(commands)])
            for n in sizes:
                line = []
                for flavour, tree in builds:
                    if flavour == "before" and n >= 50_000 and i > 0:
                        continue   # minutes per run there: one is enough to show it
                    for what in order:
                        s = time_one(world, tree, flavour, what, n, i)
                        samples.append(s)
                        line.append(f"{flavour}:{what} {s['wall']:.2f}" + ("" if s["ok"] else " FAILED"))
                        if not s["ok"]:
                            log(f"  {flavour}:{what} failed: {s['detail']}")
                log(f"store N={n} run {i + 1}/{runs}: " + ", ".join(line))
    return samples


def rows(samples: list[dict]) -> list[Row]:
    """One row per build, command and size; ratio to the same command at size 0."""
    out = summarize(samples, label=lambda tool: _label(tool))
    what_order = ("migrate", *COMMANDS)
    out.sort(key=lambda r: (r.n, r.tool.split(":")[0] != "orch",
                            what_order.index(r.tool.split(":", 1)[1])))
    base = {(r.tool, r.n): r.median for r in out}
    for r in out:
        zero = base.get((r.tool, 0))
        what = r.tool.split(":", 1)[1]
        if zero and r.n and what in ("demo", "poll"):
            r.ratio, r.ratio_to = r.median / zero, "N=0"
    return out


def _label(tool: str) -> str:
    flavour, what = tool.split(":", 1)
    return LABELS[what] + ("" if flavour == "orch" else f", {flavour}/")


def targets(table: list[Row]) -> list[str]:
    lines = []
    for r in table:
        if r.group != "store":
            continue
        flavour, what = r.tool.split(":", 1)
        if flavour != "orch" or what not in TARGETS or not r.runs:
            continue
        limit, unit = TARGETS[what]
        if unit == "s":
            lines.append(f"{'MET ' if r.median < limit else 'MISS'}  N={r.n:<6} "
                         f"{LABELS[what]:<24} {r.median:.3f} s (< {limit} s)")
        elif r.n and r.ratio is not None:
            lines.append(f"{'MET ' if r.ratio <= limit else 'MISS'}  N={r.n:<6} "
                         f"{LABELS[what]:<24} {r.ratio:.2f}x N=0 (<= {limit}x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0,20000,100000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="also time the orch installed in DIR/.venv (the previous version)")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")]
    if 0 not in sizes:
        sizes.insert(0, 0)
    samples = run(sizes, a.runs, a.before, tuple(a.commands.split(",")))
    table = rows(samples)
    return report(table, targets(table))


if __name__ == "__main__":
    sys.exit(main())
