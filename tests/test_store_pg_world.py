"""Several orchestrators on one PostgreSQL state: real sshd hosts, real git, the GitHub-style
server, orch as processes, a real PostgreSQL server (tests/fixtures_pg.py).

Each orchestrator has its own state dir (its own pass lock and log copies, as on another
machine) and its own node name (ORCH_NODE: its claims look like another machine's, so
only the lease tells whether they still hold); they share the database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.store import open_store
from tests.helpers_poll import FAST_TESTS, running_jobs, wait_for

QUICK = "orch-standin: write {name}.txt {name}\n"


def _tasks(url: str) -> list[Any]:
    s = open_store(url, Path("/nonexistent"))
    try:
        return s.list(archived=True)
    finally:
        s.close()


def _env(w: Any, url: str, name: str, **extra: str) -> dict[str, str]:
    home = w.root / f"orch-{name}"
    home.mkdir(exist_ok=True)
    return {**w.env(), "ORCH_STATE_URL": url, "ORCH_HOME": str(home), "ORCH_NODE": f"box-{name}",
            **extra}


def _orch(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_pr_each(w: Any, url: str, numbers: list[int]) -> None:
    ts = _tasks(url)
    pulls = w.github.pulls(w.repo)
    assert len(pulls) == len(numbers), [(p["number"], p["head"]) for p in pulls]
    for n in numbers:
        done = [t for t in ts if t.issue == n and t.status == "succeeded"]
        assert len(done) == 1, (n, [(t.id, t.status, t.error) for t in ts if t.issue == n])
        [pr] = [p for p in pulls if p["head"] == done[0].branch]
        assert done[0].pr_url == pr["html_url"]


def test_two_orchestrators_poll_one_database(make_world, pg_url: str) -> None:
    w = make_world(hosts=3, max_tasks=3, tests=FAST_TESTS)
    numbers = [w.issue(f"Shared issue {i}", QUICK.format(name=f"s{i}")) for i in range(20)]
    envs = [_env(w, pg_url, "a"), _env(w, pg_url, "b")]
    loop = ("import subprocess, sys, time\n"
            "end = time.time() + 240\n"
            "while time.time() < end:\n"
            "    r = subprocess.run([sys.executable, '-m', 'orchestrator', 'poll', '--json'],"
            " capture_output=True, text=True)\n"
            "    print(r.returncode, flush=True)\n"
            "    if open(sys.argv[1]).read().strip() == 'stop': break\n"
            "    time.sleep(0.2)\n")
    stop = w.root / "stop"
    stop.write_text("")
    procs = [subprocess.Popen([sys.executable, "-c", loop, str(stop)], env=e, cwd=w.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for e in envs]
    try:
        wait_for(lambda: len([t for t in _tasks(pg_url) if t.status == "succeeded"]) == 20,
                 300, "20 succeeded tasks", every=1.0)
    finally:
        stop.write_text("stop")
        outs = [p.communicate(timeout=300) for p in procs]
    codes = [line for out, _ in outs for line in out.split()]
    assert codes and set(codes) == {"0"}, outs
    ts = _tasks(pg_url)
    assert len(ts) == 20 and sorted(t.issue for t in ts) == sorted(numbers)
    _one_pr_each(w, pg_url, numbers)
    # Both ran passes on the one state (their heartbeats are in it).
    seen = open_store(pg_url, w.root).orchestrators()
    assert {o.split(":")[0] for o in seen} == {"box-a", "box-b"}
    assert running_jobs(w) == {}


RESERVE_AND_HANG = r"""
import asyncio, json, sys, time
from orchestrator.app import App
from orchestrator.fleet.pool import Fleet
from orchestrator.lifecycle.admit import admit_issue, probe
app = App()
async def main():
    async with Fleet(app.hosts, app.settings) as fleet:
        r = await admit_issue(app, app.forge("github"), await probe(fleet), sys.argv[1],
                              int(sys.argv[2]))
    print(json.dumps({"task": r.task.id, "fence": r.task.fence}), flush=True)
    time.sleep(3600)     # holds the claim without starting the job: SIGKILLed here
asyncio.run(main())
"""


def test_orchestrator_killed_mid_claim_taken_over_after_lease(make_world, pg_url: str) -> None:
    w = make_world(hosts=1, max_tasks=2, tests=FAST_TESTS)
    n = w.issue("Killed mid-claim", QUICK.format(name="k"))
    lease = "12s"     # long enough for a whole pass inside it on a loaded machine
    a = subprocess.Popen([sys.executable, "-c", RESERVE_AND_HANG, w.repo, str(n)],
                         env=_env(w, pg_url, "a", ORCH_CLAIM_LEASE=lease), cwd=w.root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(a.stdout.readline() or "{}")
    assert first, a.stderr.read() if a.poll() is not None else "no reservation"
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=30)
    b = _env(w, pg_url, "b", ORCH_CLAIM_LEASE=lease, ORCH_START_GRACE="1s")
    time.sleep(1.5)
    r = _orch(b, w.root, "poll", "--json")          # within the lease: left alone
    assert r.returncode == 0, r.stderr
    [t] = _tasks(pg_url)
    assert (t.status, t.claimed_by, t.fence) == ("running", f"box-a:{a.pid}", first["fence"])
    left = (datetime.fromisoformat(t.lease_until) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, left) + 1.0)                # the lease runs out
    for _ in range(30):
        r = _orch(b, w.root, "poll", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        ts = _tasks(pg_url)
        if any(t.status == "succeeded" for t in ts):
            break
        time.sleep(0.5)
    [t] = _tasks(pg_url)
    assert t.status == "succeeded", (t.status, t.error, t.history)
    assert [h["to"] for h in t.history].count("running") == 2    # A's reservation, B's run
    _one_pr_each(w, pg_url, [n])
    assert len(w.github.pulls(w.repo)) == 1


CLAIM_PAUSE_FINISH = r"""
import asyncio, json, sys, time
from pathlib import Path
from orchestrator.app import App
from orchestrator.fleet.pool import Fleet
from orchestrator.job import remote
from orchestrator.lifecycle import claims, finalize
app = App()
task_id, go = sys.argv[1], Path(sys.argv[2])
async def main():
    async with Fleet(app.hosts, app.settings) as fleet:
        task = app.store.get(task_id)
        conn = await fleet.connection(task.host)
        status = remote.validate_status(await remote.read_status(conn, task.workspace),
                                        branch=task.branch)
        claimed = claims.take(app, task_id)
        print(json.dumps({"fence": claimed.fence}), flush=True)
        while not go.exists():          # SIGSTOPped here, past the lease
            time.sleep(0.05)
        try:
            log = await finalize.fetch_log(app, conn, claimed)
            done = await finalize._finish(app, conn, app.forge("github"), claimed,
                                          finalize.verdict_of(status), log)
            print(json.dumps({"finished": done.status}), flush=True)
        except finalize.FenceLost as exc:
            print(json.dumps({"refused": exc.message}), flush=True)
asyncio.run(main())
"""


def test_paused_orchestrator_late_finalize_refused_by_fence(make_world, pg_url: str) -> None:
    w = make_world(hosts=1, max_tasks=2, tests=FAST_TESTS)
    n = w.issue("Paused finalize", QUICK.format(name="p"))
    lease = "3s"
    a_env = _env(w, pg_url, "a", ORCH_CLAIM_LEASE=lease)
    b_env = _env(w, pg_url, "b")     # its own claims: the default lease
    r = _orch(a_env, w.root, "dispatch", f"{w.repo}#{n}", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    [t] = _tasks(pg_url)
    wait_for(lambda: running_jobs(w) == {}, 120, "the job to end")
    go = w.root / "go"
    a = subprocess.Popen([sys.executable, "-c", CLAIM_PAUSE_FINISH, t.id, str(go)], env=a_env,
                         cwd=w.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = a.stdout.readline()
    assert line, a.communicate(timeout=30)
    fence_a = json.loads(line)["fence"]
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(4.0)                                   # past A's lease
        r = _orch(b_env, w.root, "poll", "--json")        # B takes over and finalizes
        assert r.returncode == 0, r.stdout + r.stderr
        [t] = _tasks(pg_url)
        assert t.status == "succeeded" and t.fence == fence_a + 1, (t.status, t.fence, t.error)
        comments = len(w.github.comments(w.repo, n))
        go.write_text("go")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    assert "refused" in result, out + err
    assert f"fence {fence_a}" in result["refused"]
    [after] = _tasks(pg_url)
    assert after.status == "succeeded" and after.history == t.history   # A changed nothing
    assert len(w.github.pulls(w.repo)) == 1
    assert len(w.github.comments(w.repo, n)) == comments      # nor said anything


def _heartbeats(pg_server: Any, db: str) -> str:
    try:
        return str(pg_server.psql("SELECT count(*) FROM orch_orchestrators", db))
    except RuntimeError:
        return ""    # no schema yet: the pass has not opened the store


def test_database_stopped_mid_pass_exit_1_no_dispatch(make_world, pg_server, pg_url: str) -> None:
    w = make_world(hosts=2, max_tasks=3, tests=FAST_TESTS)
    numbers = [w.issue(f"Stopped DB {i}", QUICK.format(name=f"d{i}")) for i in range(4)]
    env = _env(w, pg_url, "a")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "poll", "--json"], env=env,
                         cwd=w.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = pg_url.rsplit("/", 1)[1]
    try:
        # The pass has begun (its heartbeat is in) and is reading the forge and the hosts.
        wait_for(lambda: _heartbeats(pg_server, db) == "1", 60, "the pass to start", every=0.02)
        pg_server.stop("immediate")
        out, err = p.communicate(timeout=120)
    finally:
        pg_server.start()
    assert p.returncode == 1, out + err
    assert "the state database is unreachable" in out + err
    assert running_jobs(w) == {}                      # nothing dispatched
    # After the restart: the invariants hold, and the next passes do all the work once.
    ts = _tasks(pg_url)
    assert all(t.status == "queued" or t.status == "running" for t in ts)
    assert len({t.issue for t in ts}) == len(ts)
    for _ in range(60):
        r = _orch(env, w.root, "poll", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        if len([t for t in _tasks(pg_url) if t.status == "succeeded"]) == 4:
            break
        time.sleep(0.5)
    _one_pr_each(w, pg_url, numbers)
