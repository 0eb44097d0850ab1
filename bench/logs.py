"""Live-log benchmark: from a line appended to job.log on a host to `orch logs -f` output.

    python bench/logs.py [--lines 1000] [--interval 0.005] [--burst 50000] [--runs 3]

One loopback sshd host (tests/fixtures_ssh.py), a task recorded as running there, and a
"job" on the host: a process in its own session (its pid is the job's pgid, as job.sh's
is) that appends stream-json lines to the task's job.log, as a chatty agent does, then
writes its final status and exits. The real `orch logs ID -f` follows it (a subprocess,
stdout a pipe, its default readable rendering) and the benchmark reads that pipe:

  latency      --lines lines, one every --interval s; each carries its write time; the
               delay to its appearance on orch's stdout: p50 and p99 (ms)
  throughput   --burst lines written as fast as possible; lines/s from the first write
               to the last line out; stdout a pipe (`orch logs -f | ...`), and again a
               pseudo-terminal (rich's styled output, what a person watching gets)
Both check that every line came out once, in order (a run that loses or repeats a line
does not count). Targets (issue 10): p99 under 250 ms, over 5,000 lines/s.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import pwd
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.table import Row, log, report, tool_env  # noqa: E402

WRITER = r"""
import json, os, sys, time
log_path, status, n, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def put_status(state):
    tmp = status + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"state={state}\npgid={os.getpgrp()}\nstep=agent\n")
    os.replace(tmp, status)
def line(i):
    event = {"type": "assistant", "message": {"content": [
        {"type": "text", "text": f"LINE {i} {time.time():.6f} " + "x" * 60}]}}
    os.write(fd, (json.dumps(event) + "\n").encode())
put_status("running")
fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
line(-1)                                 # the bench goes once orch shows this one
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()                     # go
for i in range(n):
    line(i)
    if interval:
        time.sleep(interval)
os.close(fd)
put_status("succeeded")
"""


class LogWorld:
    """The fleet's first host, a state dir with a running task on it, its workspace. The
    job runs as the host's login user (as a real job does), so that the follow's
    `kill -0` sees it alive."""

    def __init__(self, root: Path, fleet) -> None:
        from orchestrator.store import Store
        self.root = root
        self.fleet = fleet
        name = fleet.names[0]
        self.inventory = fleet.write_inventory(root / "hosts.yml", [name])
        self.config = fleet.write_config(root / "orch.yml", state_dir=str(root / "state"))
        self.store = Store(root / "state")
        self.host = name
        self.ws_root = Path(fleet.workspace_root(name))
        self.ws_root.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam(fleet.user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def task(self) -> tuple[str, Path]:
        t = self.store.create("bench/logs", int(time.time() * 1000) % 10**9, "chatty", "backend")
        ws = self.ws_root / t.id
        ws.mkdir()
        (ws / "job.log").write_text("")
        for p in (ws, ws / "job.log"):
            os.chown(p, self.uid, self.gid)
        self.store.start(t.id, self.host, "orch/1-chatty", str(ws), pid=None)
        return t.id, ws

    def as_login_user(self) -> list[str]:
        if self.uid == os.getuid():
            return [sys.executable]
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "/usr/bin/python3"]


LINE = re.compile(rb"LINE (-?\d+) (\d+\.\d+)")


def follow_once(world: LogWorld, lines: int, interval: float, tty: bool = False) -> dict:
    """One job followed by `orch logs -f`: arrival times of every line on its stdout (a
    pipe, or with `tty` a pseudo-terminal: rich's styled output)."""
    task_id, ws = world.task()
    writer = subprocess.Popen([*world.as_login_user(), "-c", WRITER, str(ws / "job.log"),
                               str(ws / "status"), str(lines), str(interval)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert writer.stdout.readline().strip() == "ready"
    env = tool_env(world.root)
    env["COLUMNS"] = "300"
    master = slave = None
    if tty:
        master, slave = pty.openpty()
    orch = subprocess.Popen([str(Path(sys.executable).parent / "orch"), "--config", str(world.config),
                             "--inventory", str(world.inventory), "--state-dir",
                             str(world.root / "state"), "logs", task_id, "-f"],
                            env=env, stdout=slave if tty else subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if slave is not None:
        os.close(slave)
    seen: list[tuple[int, float, float]] = []
    first_out = threading.Event()

    def chunks():
        if master is None:
            assert orch.stdout is not None
            yield from orch.stdout
            return
        buf = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:        # EIO: the terminal's other side is closed
                data = b""
            if not data:
                return
            buf += data
            *done, buf = buf.split(b"\n")
            yield from done

    def read() -> None:
        for raw in chunks():
            now = time.time()
            m = LINE.search(raw)
            if m is None:
                continue
            if m.group(1) == b"-1":
                first_out.set()
            else:
                seen.append((int(m.group(1)), float(m.group(2)), now))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Start writing once orch is following (it has shown the line written before): its
    # start-up and connection are not the latency of a line.
    if not first_out.wait(timeout=120):
        orch.kill()
        writer.kill()
        return {"ok": False, "detail": "orch logs -f showed nothing in 120 s",
                "latencies_ms": [], "lines_per_s": 0.0}
    t_go = time.time()
    writer.stdin.write("go\n")
    writer.stdin.flush()
    writer.wait(timeout=600)
    try:
        orch.wait(timeout=120)
    except subprocess.TimeoutExpired:
        orch.kill()
    reader.join(timeout=30)
    if master is not None:
        os.close(master)
    err = orch.stderr.read().decode(errors="replace") if orch.stderr else ""
    seqs = [s for s, _, _ in seen]
    ok = seqs == list(range(lines)) and orch.returncode == 0
    detail = "" if ok else (f"exit {orch.returncode}; {len(seqs)} lines, {len(set(seqs))} distinct "
                            f"of {lines}; {err.strip()[-300:]}")
    lat = [(arr - wrote) * 1000 for _, wrote, arr in seen]
    return {"ok": ok, "detail": detail, "latencies_ms": lat,
            "lines_per_s": lines / (seen[-1][2] - t_go) if seen else 0.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(lines: int, interval: float, burst: int, runs: int, fleet=None) -> list[dict]:
    """Samples; on `fleet`'s first host (else a fleet of one host of its own)."""
    from bench.dispatch import bench_user
    from bench.hosts_fanout import Setup
    samples: list[dict] = []
    own = None
    if fleet is None:
        own = Setup(1, bench_user(), None)
        fleet = own.fleet
    with tempfile.TemporaryDirectory(prefix="orch-bench-logs-") as tmp:
        os.chmod(tmp, 0o711)
        world = LogWorld(Path(tmp), fleet)
        try:
            for i in range(runs):
                r = follow_once(world, lines, interval)
                p50 = percentile(r["latencies_ms"], 0.50) if r["latencies_ms"] else 0.0
                p99 = percentile(r["latencies_ms"], 0.99) if r["latencies_ms"] else 0.0
                for tool, value in (("latency-p50", p50), ("latency-p99", p99)):
                    samples.append({"group": "logs", "tool": tool, "n": lines, "run": i,
                                    "value": value, "ok": r["ok"], "detail": r["detail"]})
                log(f"logs latency run {i + 1}/{runs}: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                    + ("" if r["ok"] else f" FAILED {r['detail']}"))
                for tool, tty in (("throughput", False), ("throughput-tty", True)):
                    r = follow_once(world, burst, 0.0, tty=tty)
                    samples.append({"group": "logs", "tool": tool, "n": burst, "run": i,
                                    "value": r["lines_per_s"], "ok": r["ok"], "detail": r["detail"]})
                    log(f"logs {tool} run {i + 1}/{runs}: {r['lines_per_s']:.0f} lines/s"
                        + ("" if r["ok"] else f" FAILED {r['detail']}"))
        finally:
            if own is not None:
                own.close(keep=False)
    return samples


LABELS = {"latency-p50": "orch logs -f latency p50", "latency-p99": "orch logs -f latency p99",
          "throughput": "orch logs -f chatty agent, pipe", "throughput-tty": "  the same, a terminal"}


def rows(samples: list[dict]) -> list[Row]:
    from bench.table import summarize
    out = []
    for tool, unit in (("latency-p50", "ms"), ("latency-p99", "ms"), ("throughput", "l/s"),
                       ("throughput-tty", "l/s")):
        out += summarize([s for s in samples if s["tool"] == tool], label=LABELS.get,
                         value="value", unit=unit)
    return out


def targets(table: list[Row]) -> list[str]:
    out = []
    for r in table:
        if r.group != "logs":
            continue
        if r.tool == "latency-p99" and r.runs:
            out.append(f"{'MET ' if r.median < 250 else 'MISS'}  live log p99 {r.median:.0f} ms (< 250 ms)")
        if r.tool == "throughput" and r.runs:
            out.append(f"{'MET ' if r.median > 5000 else 'MISS'}  chatty agent {r.median:.0f} lines/s "
                       f"(> 5,000), nothing lost or repeated")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.005)
    ap.add_argument("--burst", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the samples here")
    a = ap.parse_args(argv)
    samples = run(a.lines, a.interval, a.burst, a.runs)
    if a.json:
        a.json.write_text(json.dumps(samples))
    table = rows(samples)
    return report(table, targets(table))


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
