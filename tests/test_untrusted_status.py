"""Issue 8 item 8: the status file a host returns is untrusted.

The agent runs with the host user's rights and can rewrite `<workspace>/status` after the
job's last word. A status saying `cost_usd=nan` (or `inf`, `-1e9`), a `commit` that is
not a SHA, a `tests` cell that is Markdown, or another branch than the task's: orch keeps
state.json valid JSON, the daily budget counted, and believes no such value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.job import remote
from orchestrator.store import Store
from tests.helpers_poll import FAST_TESTS, FINAL, host_jobs, poll, run_passes, tasks, wait_for


def _strict_json(path: Path):
    """json.loads as any other JSON reader would: NaN and Infinity are not JSON."""
    def refuse(name: str):
        raise AssertionError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def _tamper(status: Path, **values: str) -> None:
    lines = [ln for ln in status.read_text().splitlines()
             if ln.split("=", 1)[0] not in values]
    status.write_text("\n".join(lines + [f"{k}={v}" for k, v in values.items()]) + "\n")


@pytest.mark.parametrize("raw, cost", [("nan", None), ("NaN", None), ("inf", remote.MAX_COST_USD),
                                       ("-1e9", 0.0), ("1e400", remote.MAX_COST_USD),
                                       ("0.25", 0.25), ("", None), ("$3", None)])
def test_cost_is_finite_and_in_range(raw, cost):
    st = remote.parse_status(f"state=succeeded\ncost_usd={raw}\n")
    assert st is not None and st.cost_usd == cost
    if cost not in (None, 0.25) or raw in ("nan", "NaN"):
        assert any(p.startswith("cost_usd=") for p in st.problems), st.problems


def test_commit_tests_turns_and_branch_are_checked():
    sha = "0123456789abcdef0123456789abcdef01234567"
    st = remote.parse_status(f"state=succeeded\ncommit={sha}\ntests=passed\nturns=3\nbranch=orch/1-x\n")
    assert (st.commit, st.tests, st.turns, st.problems) == (sha, "passed", 3, ())
    assert remote.validate_status(st, branch="orch/1-x") is st
    bad = remote.parse_status("state=succeeded\ncommit=$(reboot)\ntests=passed | [click](https://e) |\n"
                              "turns=-5\nupdated_at=99999999999999\nbranch=main\n")
    assert (bad.commit, bad.tests, bad.turns, bad.updated_at) == (None, None, None, None)
    other = remote.validate_status(bad, branch="orch/1-x")
    assert other.state == "failed" and "not the task's branch orch/1-x" in (other.error or "")
    assert other.error_kind == "job_error"
    odd = remote.parse_status("state=failed\nerror_kind=[x](https://evil)\n")
    assert odd.error_kind is None and odd.problems
    assert remote.validate_status(other, branch="orch/1-x") == other        # idempotent


def test_old_state_with_nan_costs_is_read_as_unknown(tmp_path):
    """state.json written by an earlier orch (which stored the host's NaN as is)."""
    store = Store(tmp_path)
    t = store.succeed(store.start(store.create("o/r", 1, "t", "backend").id, host="h",
                                  branch="b", workspace="~/w/x").id)
    path = tmp_path / "state.json"
    data = json.loads(path.read_text())
    for doc in data["tasks"].values() if "tasks" in data else next(iter(data.values())).values():
        doc["cost_usd"] = float("nan")
    path.write_text(json.dumps(data))                 # json.dumps writes the NaN literal
    assert Store(tmp_path).get(t.id).cost_usd is None
    assert Store(tmp_path).spent_since("2000-01-01T00:00:00Z") == 0.0
    Store(tmp_path).update(t.id, turns=2)             # any write of the task heals it
    assert json.loads(path.read_text(), parse_constant=lambda c: 1 / 0)


def test_a_nan_cost_in_a_hosts_status_neither_corrupts_state_nor_defeats_the_budget(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS, agent={"daily_budget_usd": 1.0})
    w.issue("Costly", "orch-standin: cost 2\norch-standin: write a.txt a\n")
    w.issue("Cheap", "orch-standin: write b.txt b\n")
    proc, data = poll(w)                               # both start in the same pass
    assert proc.returncode == 0 and len(data["dispatched"]) == 2, proc.stdout + proc.stderr
    by_title = {t.title: t for t in tasks(w)}
    wait_for(lambda: sum(j["state"] in FINAL for j in host_jobs(w)) == 2, 120, "both jobs to end")
    cheap = by_title["Cheap"]
    status = Path(cheap.workspace) / "status"
    _tamper(status, cost_usd="nan", commit="$(touch /tmp/pwned)",
            tests="passed | [click](https://evil) |")
    run_passes(w, lambda ts: all(t.status in FINAL for t in ts))
    state = _strict_json(w.state_dir / "state.json")
    assert state
    done = {t.title: t for t in tasks(w)}
    assert done["Costly"].cost_usd == 2.0 and done["Cheap"].status == "succeeded"
    assert done["Cheap"].cost_usd is None and done["Cheap"].commit is None
    assert done["Cheap"].tests is None
    assert "https://evil" not in json.dumps([c["body"] for c in w.github.comments(w.repo, cheap.issue)])
    listed = json.loads(w.orch("tasks", "--json").stdout, parse_constant=lambda c: 1 / 0)
    assert {t["title"] for t in listed} == {"Costly", "Cheap"}
    n = w.issue("Next", "orch-standin: write n.txt n\n")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stderr
    assert data["dispatched"] == [], "the NaN cost hid the spent daily budget"
    assert any("daily budget spent: $2.00" in s["reason"] for s in data["skipped"])
    assert all(t.issue != n for t in tasks(w))


def test_a_status_naming_another_branch_opens_no_pull_request(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    w.issue("Hello", "orch-standin: write h.txt h\n")
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 1, proc.stderr
    [task] = tasks(w)
    wait_for(lambda: any(j["state"] in FINAL for j in host_jobs(w)), 120, "the job to end")
    _tamper(Path(task.workspace) / "status", branch="main")
    run_passes(w, lambda ts: ts[0].status in FINAL)
    [done] = tasks(w)
    assert done.status == "failed" and "not the task's branch" in (done.error or "")
    assert w.github.pulls(w.repo) == []


def test_job_log_is_read_with_a_size_cap_and_a_time_limit(make_ssh_fleet):
    import asyncio
    import time

    from orchestrator.errors import WorkError
    from orchestrator.fleet.pool import Fleet
    fleet = make_ssh_fleet(1)
    [host] = fleet.inventory()
    ws = Path(host.workspace_root) / "abcd1234"
    ws.mkdir(parents=True)
    (ws / "job.log").write_text("".join(f"line {i:05d}\n" for i in range(1000)))   # 11000 bytes

    async def go():
        async with Fleet([host], fleet.settings()) as f:
            conn = await f.connection(host.name)
            whole = await remote.read_log(conn, str(ws))
            capped = await remote.read_log(conn, str(ws), max_bytes=1000)
            missing = await remote.read_log(conn, str(ws.with_name("dcba4321")))
            fleet.freeze(host.name)
            try:
                started = time.monotonic()
                with pytest.raises(WorkError, match="took more than 1s"):
                    await remote.read_log(conn, str(ws), timeout=1.0)
                took = time.monotonic() - started
            finally:
                fleet.thaw(host.name)
            return whole, capped, missing, took
    whole, capped, missing, took = asyncio.run(go())
    assert whole.splitlines()[0] == "line 00000" and len(whole) == 11000
    lines = capped.splitlines()
    assert lines[0] == "::orch:: note (the first 10000 bytes of job.log, 11000 bytes in all, are not shown)"
    assert lines[1] == "line 00910" and lines[-1] == "line 00999"
    assert missing is None
    assert took < 30
