"""State backends: a poll pass and a dispatch with the state in TinyDB and in PostgreSQL.

    python bench/backends.py [--runs 5]

The world of bench/dispatch.py (one loopback sshd host, a git remote, the test GitHub
server, the 4-line sh agent), and a PostgreSQL server of its own on loopback
(tests/fixtures_pg.py's initdb + pg_ctl, with fsync on: the TinyDB side fsyncs too).
Timed, whole processes, alternating:

  poll      `orch poll --json` with no labelled issue: list the repository's issues,
            probe the host, reconcile nothing (reads the state a few times)
  dispatch  `orch dispatch octo/app#N --json`: reserve, start, follow, finalize (the
            state writes of one whole dispatch)

each with the TinyDB state (the default) and with `ORCH_STATE_URL=postgresql://...`.
The ratio is PostgreSQL's median over TinyDB's for the same command.
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

from bench.dispatch import DispatchWorld  # noqa: E402
from bench.table import Row, log, report, summarize  # noqa: E402

LABELS = {"poll:tinydb": "orch poll, TinyDB", "poll:postgresql": "orch poll, PostgreSQL",
          "dispatch:tinydb": "orch dispatch, TinyDB",
          "dispatch:postgresql": "orch dispatch, PostgreSQL"}


def _time(w: DispatchWorld, what: str, url: str | None, run: int) -> dict:
    env = w.env()
    if url:
        env["ORCH_STATE_URL"] = url
    args = w.orch_args(0)[:-3]                      # --config ... --state-dir DIR
    if what == "poll":
        args += ["poll", "--json"]
    else:
        n = w.issue(f"Bench backend {run} {time.time_ns()}")
        args += ["dispatch", f"octo/app#{n}", "--json"]
    orch = [str(Path(sys.executable).parent / "orch")]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(orch + args, env=env, cwd=w.root, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=180)
    except subprocess.TimeoutExpired:
        return {"wall": 180.0, "ok": False, "detail": "timed out"}
    wall = time.perf_counter() - t0
    ok = p.returncode == 0 and (what == "poll"
                                or json.loads(p.stdout or "{}").get("status") == "succeeded")
    return {"wall": wall, "ok": ok, "detail": "" if ok else (p.stdout + p.stderr)[-400:]}


def run(runs: int, fleet=None) -> list[dict]:
    """Samples of every row (none when PostgreSQL cannot be started here: said on stderr)."""
    from bench.hosts_fanout import Setup
    from tests.fixtures_pg import start_server
    try:
        server = start_server(fsync=True)
    except RuntimeError as exc:
        log(f"backends: PostgreSQL cannot be started ({exc}); rows skipped")
        return []
    own = None
    if fleet is None:
        from bench.dispatch import bench_user
        own = Setup(1, bench_user(), None)
        fleet = own.fleet
    samples: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="orch-bench-backends-") as tmp:
            w = DispatchWorld(Path(tmp), fleet)
            url = server.database()
            try:
                cases = [(what, backend, url if backend == "postgresql" else None)
                         for what in ("poll", "dispatch") for backend in ("tinydb", "postgresql")]
                for what, _backend, u in cases:     # warm-up (and the schema's first use)
                    _time(w, what, u, -1)
                for i in range(runs):
                    line = []
                    for what, backend, u in cases[i % len(cases):] + cases[:i % len(cases)]:
                        r = _time(w, what, u, i)
                        samples.append({"group": "backend", "tool": f"{what}:{backend}",
                                        "n": 1, "run": i, **r})
                        line.append(f"{what}:{backend} {r['wall']:.2f}"
                                    + ("" if r["ok"] else " FAILED"))
                        if not r["ok"]:
                            log(f"  {what}:{backend} failed: {r['detail']}")
                    log(f"backends run {i + 1}/{runs}: " + ", ".join(line))
            finally:
                w.close()
    finally:
        server.destroy()
        if own is not None:
            own.close(keep=False)
    return samples


def rows(samples: list[dict]) -> list[Row]:
    out = summarize(samples, label=lambda t: LABELS.get(t, t))
    base = {r.tool.split(":")[0]: r.median for r in out if r.tool.endswith(":tinydb") and r.runs}
    for r in out:
        b = base.get(r.tool.split(":")[0])
        if b and r.runs:
            r.ratio, r.ratio_to = r.median / b, "TinyDB"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    table = rows(run(a.runs))
    return report(table)


if __name__ == "__main__":
    sys.exit(main())
