"""Make-span of a split issue (issue 13 item 6): three independent parts, each taking T
seconds of agent time, on three specialty hosts at once, against the same three parts on
one host, one after another.

    python bench/split.py [--runs 3] [--seconds 10]

Loopback sshd hosts, a bare git remote, the test GitHub server, the real `orch poll` run
pass after pass (as a tight cron would) until the split has its PR. The agent is a sh
script that sleeps T seconds in a part's run (it reads `<!-- orch:part X -->` from its
prompt and writes part-X.txt) and does nothing else; tests are `true`. Timed: from the
first pass to the parent succeeded. Also reported: the integration's own time (its runs'
wall time on the hosts, from the store). Target: the parallel make-span within
T x 1.2 + the integration's own time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.table import Row, log, print_rows, summarize  # noqa: E402

SPECIALTIES = ("backend", "frontend", "devops")
AGENT = """#!/bin/sh
p=$(cat)
s=$(printf '%s\\n' "$p" | sed -n 's/^<!-- orch:part \\([a-z]*\\) -->$/\\1/p' | head -n 1)
if [ -n "$s" ]; then sleep {seconds}; echo "$s" > "part-$s.txt"; fi
echo '{{"type":"result","subtype":"success","is_error":false,"num_turns":1,"total_cost_usd":0.01,"result":"done"}}'
"""


def _world(root: Path, fleet, seconds: float, parallel: bool):
    from bench.dispatch import DispatchWorld
    w = DispatchWorld(root, fleet, "true")
    w.agent.write_text(AGENT.format(seconds=seconds))
    names = fleet.names[:3] if parallel else fleet.names[:1]
    extra = ({n: {"specialties": [s, "general"]} for n, s in zip(names, SPECIALTIES, strict=True)}
             if parallel else {names[0]: {"specialties": [*SPECIALTIES, "general", "testing"]}})
    w.inventory = fleet.write_inventory(root / "hosts.yml", names, agent=str(w.agent),
                                        max_tasks=1, extra=extra)
    return w


def one_run(fleet, seconds: float, parallel: bool, run: int) -> dict:
    from orchestrator.store import Store, parse_time
    with tempfile.TemporaryDirectory(prefix="orch-bench-split-") as tmp:
        w = _world(Path(tmp), fleet, seconds, parallel)
        try:
            n = w.gh.add_issue("octo/app", f"Split bench {run}", body="three parts",
                               labels=["orch", *SPECIALTIES], user="alice")
            base = ["--config", str(w.config), "--inventory", str(w.inventory),
                    "--state-dir", str(w.root / "state")]
            orch = str(Path(sys.executable).parent / "orch")
            t0 = time.perf_counter()
            store = Store(w.root / "state")
            parent = None
            while time.perf_counter() - t0 < 60 + 6 * seconds:
                subprocess.run([orch, *base, "poll", "--json"], env=w.env(), cwd=w.root,
                               capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=120)
                parent = next((t for t in store.list() if t.kind == "split"), None)
                if parent is not None and parent.status != "running":
                    break
                time.sleep(0.2)
            wall = time.perf_counter() - t0
            ok = parent is not None and parent.status == "succeeded"
            kids = store.children(parent) if parent is not None else []
            integ = sum((parse_time(t.finished_at) - parse_time(t.started_at)).total_seconds()
                        for t in kids if t.kind == "integrate" and t.started_at and t.finished_at)
            hosts = sorted({t.host or "" for t in kids if t.kind == "part"})
            phases = _phases(parent, kids) if parent is not None else {}
            return {"group": "split", "tool": "parallel" if parallel else "serial", "n": 3,
                    "run": run, "wall": wall, "ok": ok, "integration": integ, "hosts": hosts,
                    "phases": phases,
                    "detail": "" if ok else f"issue {n}: {parent.error if parent else 'no split'}"}
        finally:
            w.close()


def _phases(parent, kids) -> dict[str, float]:
    """Where the make-span went, in whole seconds from the split's creation (the store's
    stamps): parts started, parts finished, integration started and finished, the PR."""
    from orchestrator.store import parse_time

    def at(stamp: str | None) -> float:
        return (parse_time(stamp) - parse_time(parent.created_at)).total_seconds() if stamp else -1.0

    parts = [t for t in kids if t.kind == "part"]
    integ = [t for t in kids if t.kind == "integrate"]
    return {"parts_started": max((at(t.started_at) for t in parts), default=-1),
            "parts_finished": max((at(t.finished_at) for t in parts), default=-1),
            "integration_started": min((at(t.started_at) for t in integ), default=-1),
            "integration_finished": max((at(t.finished_at) for t in integ), default=-1),
            "pr": at(parent.finished_at)}


def run(runs: int, seconds: float, fleet=None) -> list[dict]:
    from bench.dispatch import bench_user
    from bench.hosts_fanout import Setup
    own = None
    if fleet is None:
        own = Setup(3, bench_user(), None)
        fleet = own.fleet
    samples = []
    try:
        for i in range(runs):
            for parallel in (True, False):
                s = one_run(fleet, seconds, parallel, i)
                samples.append(s)
                log(f"split run {i + 1}/{runs} {s['tool']}: {s['wall']:.1f}s on {s['hosts']}, "
                    f"integration {s['integration']:.0f}s; "
                    + ", ".join(f"{k} {v:.0f}" for k, v in s.get("phases", {}).items())
                    + ("" if s["ok"] else f" FAILED {s['detail']}"))
    finally:
        if own is not None:
            own.close(keep=False)
    return samples


LABELS = {"parallel": "split: 3 parts on 3 hosts (make-span)",
          "serial": "  the same 3 parts on 1 host, in turn"}


def rows(samples: list[dict]) -> list[Row]:
    out = summarize(samples, label=lambda t: LABELS[t])
    par = next((r for r in out if r.tool == "parallel"), None)
    for r in out:
        if par is not None and par.median:
            r.ratio, r.ratio_to = r.median / par.median, "parallel"
    return out


def targets(samples: list[dict], seconds: float) -> list[str]:
    import statistics
    par = [s for s in samples if s["tool"] == "parallel" and s["ok"]]
    if not par:
        return ["split make-span: no parallel run succeeded"]
    wall = statistics.median(s["wall"] for s in par)
    integ = statistics.median(s["integration"] for s in par)
    target = seconds * 1.2 + integ
    inner = statistics.median(s["phases"].get("pr", -1) for s in par)
    return [f"split make-span {wall:.1f}s vs target T x 1.2 + integration = {seconds:g} x 1.2 + "
            f"{integ:.0f} = {target:.1f}s: {'met' if wall <= target else 'NOT met'}; from the "
            f"split's creation to its PR (without the first pass's start-up, which the one-host "
            f"run pays too) {inner:.0f}s: {'met' if inner <= target else 'NOT met'}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="T: each part's agent time")
    p.add_argument("--json", action="store_true", help="print the samples as JSON too")
    a = p.parse_args(argv)
    samples = run(a.runs, a.seconds)
    print_rows(rows(samples))
    for line in targets(samples, a.seconds):
        print(line)
    if a.json:
        print(json.dumps(samples))
    return 0 if all(s["ok"] for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
