"""Helpers for the `orch poll` guarantee tests (tests/test_poll_*.py). Not a test module:
pytest does not collect it, so tests import it freely.

The guarantee tests run the real `orch` CLI against real sshd hosts (tests.fixtures_world),
so what they check is what a user gets. What they read back, they read where it really
is: the task state file, the GitHub test server, and the hosts' own workspaces (the hosts
are loopback sshd processes, so `<workspace_root>/*/status` is a local directory here).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures_ssh import proc_stats

FINAL = ("succeeded", "failed", "cancelled")
# The job's test step takes no time: these tests are about orch, not about pytest.
FAST_TESTS = {"command": "true"}


# --------------------------------------------------------------------------- reading state

def tasks(w) -> list[Any]:
    """Every task of the world, newest first, read straight from the state file."""
    from orchestrator.store import Store
    return Store(w.state_dir).list()


def by_issue(w) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for t in tasks(w):
        out.setdefault(t.issue, []).append(t)
    return out


def proc_groups() -> dict[int, list[tuple[int, str]]]:
    """Live (non-zombie) processes by process group: pgid -> [(pid, state)]."""
    groups: dict[int, list[tuple[int, str]]] = {}
    for pid, fields in proc_stats():
        state, pgrp = fields[0], int(fields[2])
        if state in ("Z", "X"):
            continue          # a zombie waiting for a lazy init is dead for our purpose
        groups.setdefault(pgrp, []).append((pid, state))
    return groups


def group_alive(pgid: int | None) -> bool:
    return bool(pgid) and pgid in proc_groups()


def read_status(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def host_jobs(w) -> list[dict[str, Any]]:
    """Every job workspace on every host: host, task, state, pgid, alive (as the
    contract counts a running job: state=running and its process group alive)."""
    groups = proc_groups()
    out = []
    for name in w.fleet.names:
        root = Path(w.fleet.workspace_root(name))
        for status in sorted(root.glob("*/status")):
            st = read_status(status)
            if not st:
                continue
            pgid = int(st["pgid"]) if st.get("pgid", "").isdigit() else None
            out.append({"host": name, "task": status.parent.name, "state": st.get("state"),
                        "pgid": pgid, "alive": bool(pgid) and pgid in groups,
                        "workspace": str(status.parent), "status": st})
    return out


def running_jobs(w) -> dict[str, list[str]]:
    """host -> task ids of jobs running there right now (state=running, group alive)."""
    out: dict[str, list[str]] = {}
    for j in host_jobs(w):
        if j["state"] == "running" and j["alive"]:
            out.setdefault(j["host"], []).append(j["task"])
    return out


def processes_under(root: str) -> list[tuple[int, str]]:
    """Processes whose working directory is below `root` (a job's leftovers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root.rstrip("/") + "/")):
            found.append((int(entry), cmd))
    return found


# --------------------------------------------------------------------------- acting

def poll(w, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`orch poll --json` once: (the process, its JSON or None)."""
    proc = w.orch("poll", "--json", *args, timeout=timeout)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        data = None
    return proc, data


def wait_for(pred: Callable[[], Any], timeout: float, what: str = "a condition",
             every: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def _something_to_do(w) -> bool:
    """A job of a running task has ended (or vanished): the next pass has work."""
    running = {t.id: t for t in tasks(w) if t.status == "running"}
    if not running:
        return True
    jobs = {(j["host"], j["task"]): j for j in host_jobs(w)}
    for t in running.values():
        j = jobs.get((t.host, t.id))
        if j is None or j["state"] != "running" or not j["alive"]:
            return True
    return False


def run_passes(w, until: Callable[[list[Any]], bool], *, max_passes: int = 60,
               timeout: float = 240, expect_rc: int | None = 0,
               between: Callable[[], None] | None = None) -> list[Any]:
    """Run `orch poll` passes until `until(tasks)` holds; between passes, wait (on the
    hosts) until some job has ended rather than sleeping blindly. Returns the JSON of
    every pass."""
    results = []
    end = time.monotonic() + timeout
    for _ in range(max_passes):
        proc, data = poll(w)
        if expect_rc is not None:
            assert proc.returncode == expect_rc, proc.stdout + proc.stderr
        results.append(data)
        if until(tasks(w)):
            return results
        if between is not None:
            between()
        if time.monotonic() > end:
            break
        if any(t.status == "running" and t.unreachable_since for t in tasks(w)):
            time.sleep(0.5)       # a host is away: what changes now is the clock
            continue
        if data and not (data["dispatched"] or data["finalized"] or data["lost"]
                         or data["requeued"]):
            try:
                wait_for(lambda: _something_to_do(w), max(0.1, min(30, end - time.monotonic())),
                         "a job to end")
            except AssertionError:
                pass
    raise AssertionError(f"not done after {len(results)} passes: "
                         + json.dumps([(t.id, t.issue, t.status, t.host, t.error)
                                       for t in tasks(w)]) + "\n" + _diagnose(w, results))


def _diagnose(w, results: list[Any]) -> str:
    """What the hosts say about the tasks still running (for a failure message)."""
    jobs = {(j["host"], j["task"]): j for j in host_jobs(w)}
    out = [f"last pass: {json.dumps(results[-1])[:2000]}" if results else "no pass"]
    for t in tasks(w):
        if t.status != "running":
            continue
        j = jobs.get((t.host, t.id))
        out.append(f"task {t.id} on {t.host}: claim {t.claimed_by}, job "
                   + (json.dumps({k: j[k] for k in ("state", "pgid", "alive")} | {
                       "status": j["status"]}) if j else "none"))
        log = Path(t.workspace or "/nonexistent") / "job.log"
        if log.is_file():
            out.append("  job.log: " + " | ".join(line[:160] for line in log.read_text(
                errors="replace").splitlines()[-8:]))
    return "\n".join(out)


def all_final(n: int) -> Callable[[list[Any]], bool]:
    """`until` for run_passes: n issues, each with a final newest task."""
    def check(ts: list[Any]) -> bool:
        newest: dict[int, Any] = {}
        for t in ts:                      # newest first
            newest.setdefault(t.issue, t)
        return len(newest) >= n and all(t.status in FINAL for t in newest.values())
    return check


def assert_one_pr_per_issue(w, numbers: list[int]) -> None:
    """Every issue ends with exactly one succeeded task, and one PR that closes it."""
    groups = by_issue(w)
    pulls = w.github.pulls(w.repo)
    assert len(pulls) == len(numbers), [(p["number"], p["head"]) for p in pulls]
    heads = [p["head"] for p in pulls]
    assert len(set(heads)) == len(heads), heads
    for n in numbers:
        ts = groups.get(n, [])
        done = [t for t in ts if t.status == "succeeded"]
        assert len(done) == 1, (n, [(t.id, t.status, t.error) for t in ts])
        [pr] = [p for p in pulls if p["head"] == done[0].branch]
        assert f"Closes #{n}\n" in pr["body"]
        assert done[0].pr_url == pr["html_url"]
        assert pr["commit"], "the PR's branch was pushed before it was opened"


def assert_no_orphans(w) -> None:
    """No job runs on any host, and no process is left in any workspace."""
    assert running_jobs(w) == {}
    for name in w.fleet.names:
        assert processes_under(w.fleet.workspace_root(name)) == []
