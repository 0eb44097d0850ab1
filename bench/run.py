"""`make bench`: every benchmark of bench/ in one process, on one fleet, in one table.

    python bench/run.py [--quick] [--before DIR] [--runs N] [--no-save]

1. fan-out (bench/hosts_fanout.py): `orch hosts --json` against the bare asyncssh floor,
   Ansible ad-hoc (`-m command` forks=N, cold; `-m raw` over warm ControlPersist masters),
   pyinfra (`exec -- cat /proc/loadavg`), parallel-ssh (the library) and N parallel `ssh`,
   at N=10 and N=50 loopback sshd hosts
2. store (bench/store.py): orch demo / poll / tasks / show / metrics at 0, 20,000 and
   100,000 finished tasks, and the migration of each from the previous version's state
3. dispatch (bench/dispatch.py): one `orch dispatch` against the hand-written baseline on
   the fleet's first host, and what one dispatch costs in SSH round trips and state writes
4. live logs (bench/logs.py): line latency p50/p99 and a chatty agent's lines/s through
   `orch logs -f`, on the fleet's first host
5. state backends (bench/backends.py): a poll pass and a dispatch with the state in
   TinyDB and in PostgreSQL (a server of its own on loopback)

Each peer is installed for the benchmark only, in bench/.venv-NAME (git-ignored), never a
dependency of orch. One table: median, min, max, and each row's ratio to its reference
(orch's row of the same group, or the same command at N=0). Every sample goes to
bench/results/<timestamp>.json. About 10 minutes on 2 CPUs; `--quick` (~2 minutes, one
run of each at small sizes) is a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench import backends, dispatch, hosts_fanout, logs, store  # noqa: E402
from bench import split as split_bench  # noqa: E402
from bench.table import Row, log, print_rows, ratio_to, summarize  # noqa: E402

FULL = {"hosts": [10, 50], "runs": 5, "warmup": 1, "sizes": [0, 20_000, 100_000],
        "dispatch_runs": 5, "log_runs": 3, "lines": 1000, "interval": 0.005, "burst": 50_000,
        "tools": list(hosts_fanout.ALL_TOOLS), "split_runs": 3, "split_seconds": 20.0}
QUICK = {"hosts": [4], "runs": 1, "warmup": 0, "sizes": [0, 2_000], "dispatch_runs": 1,
         "log_runs": 1, "lines": 100, "interval": 0.002, "burst": 2_000,
         "tools": list(hosts_fanout.ALL_TOOLS), "split_runs": 1, "split_seconds": 2.0}


def fanout_rows(samples: list[dict]) -> list[Row]:
    rows = summarize(samples, label=lambda t: hosts_fanout.LABELS.get(t, t).strip())
    ratio_to(rows, "orch")
    return rows


def run(plan: dict, before: Path | None, save: bool) -> int:
    started = dt.datetime.now()
    tools = plan["tools"]
    hosts_fanout.prepare_tools(tools)
    user = dispatch.bench_user()
    load0 = hosts_fanout.loadavg()
    log(f"starting {max(plan['hosts'])} sshd hosts (login user {user or 'self'}), load {load0}")
    setup = hosts_fanout.Setup(max(plan["hosts"]), user, None)
    try:
        kex = hosts_fanout.negotiated_kex(setup)
        fan = hosts_fanout.run_fanout(setup, plan["hosts"], tools, plan["runs"], plan["warmup"])
        disp, counts = dispatch.run(plan["dispatch_runs"], before, fleet=setup.fleet)
        live = logs.run(plan["lines"], plan["interval"], plan["burst"], plan["log_runs"],
                        fleet=setup.fleet)
        sp = split_bench.run(plan["split_runs"], plan["split_seconds"], fleet=setup.fleet)
        back = backends.run(plan["dispatch_runs"], fleet=setup.fleet)
    finally:
        setup.close(keep=False)
    st = store.run(plan["sizes"], plan["runs"], before)

    table = (fanout_rows(fan) + store.rows(st) + dispatch.rows(disp) + logs.rows(live)
             + split_bench.rows(sp) + backends.rows(back))
    print()
    print(f"orch benchmark, {os.cpu_count()} CPUs, login user {user or 'self'}, "
          f"{plan['runs']} runs, load {load0} -> {hosts_fanout.loadavg()}; key exchange: "
          f"OpenSSH {kex['openssh']}, asyncssh {kex['asyncssh']}")
    print()
    print_rows(table)
    print()
    dispatch.print_counts(counts)
    print()
    checks = [f"N={n:<3} {'MET ' if t['met'] else 'MISS'}  {t['text']}"
              for n in plan["hosts"] for t in hosts_fanout.targets(_old_rows(fan), n)]
    for line in checks + store.targets(table) + dispatch.targets(table) + logs.targets(table) + \
            split_bench.targets(sp, plan["split_seconds"]):
        print(line)
    if save:
        hosts_fanout.RESULTS.mkdir(exist_ok=True)
        path = hosts_fanout.RESULTS / f"all-{started:%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({
            "started": started.isoformat(timespec="seconds"), "plan": plan,
            "seconds": round((dt.datetime.now() - started).total_seconds(), 1),
            "versions": hosts_fanout.versions(), "kex": kex, "load_start": load0,
            "load_end": hosts_fanout.loadavg(), "rows": [r.to_json() for r in table],
            "counts": counts, "samples": {"hosts": fan, "store": st, "dispatch": disp,
                                          "logs": live, "split": sp, "backends": back}},
                                         indent=1))
        print(f"\nwrote {path.relative_to(REPO)}")
    return 0 if all(r.runs for r in table) else 1


def _old_rows(samples: list[dict]) -> list[dict]:
    """hosts_fanout's own summary shape, for its targets()."""
    return hosts_fanout.summarize(samples, sorted({s["tool"] for s in samples}),
                                  sorted({s["n"] for s in samples}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small run of each: a smoke run")
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="also time the orch installed in DIR/.venv (e.g. the previous version)")
    ap.add_argument("--runs", type=int, help="timed runs per row (default 5; --quick 1)")
    ap.add_argument("--tools", help="fan-out tools, comma-separated (default: all)")
    ap.add_argument("--sizes", help="store sizes, comma-separated (default 0,20000,100000)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    a = ap.parse_args(argv)
    plan = dict(QUICK if a.quick else FULL)
    if a.runs:
        plan["runs"] = plan["dispatch_runs"] = a.runs
    if a.tools:
        plan["tools"] = [t for t in a.tools.split(",") if t]
        if "orch" not in plan["tools"]:
            plan["tools"].insert(0, "orch")
    if a.sizes:
        plan["sizes"] = sorted({0, *(int(x) for x in a.sizes.split(","))})
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run(plan, a.before, save=not a.no_save)


if __name__ == "__main__":
    sys.exit(main())
