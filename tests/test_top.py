"""`orch top` against real sshd hosts: `--once` / `--json` show every host and a running
task with its step and turns (from the job's own status file); refreshes over the kept
connections go on while a host is stopped or hangs, which shows down within one interval
plus the connect timeout; a host that comes back is connected afresh."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.app import App
from orchestrator.ops.watch import watching
from tests.helpers_top import job_status, running_in_tests_step

INTERVAL = 1.0
CONNECT_TIMEOUT = 5.0
# Upper bounds only, for a 2-core machine shared with other test runs (never a speed
# claim); below CONNECT_TIMEOUT, so that a refresh held up by a silent host would show.
SLACK = 2.5


def test_once_shows_every_host_and_a_running_task_with_its_step_and_turns(make_world):
    w = make_world(hosts=3, tests={"command": "sleep 120"})
    started = running_in_tests_step(w)
    try:
        on_host = job_status(started["workspace"])
        turns = int(on_host["turns"])
        assert turns >= 3

        r = w.orch("top", "--once")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        for name in w.fleet.names:
            [row] = [ln for ln in lines if ln.split()[:1] == [name]]
            assert " up " in f" {row} ", row
        [row] = [ln for ln in lines if ln.startswith(started["task_id"])]
        words = row.split()
        assert "running" in words and started["host"] in words and "tests" in words, row
        assert str(turns) in words, row
        assert f"{w.repo}#{started['issue']}" in words, row
        assert f"log of {started['task_id']}" in r.stdout
        assert "── tests" in r.stdout, "the selected task's log, rendered as `orch logs` does"

        data = w.orch_json("top")
        assert [h["name"] for h in data["hosts"]] == w.fleet.names
        assert all(h["up"] is True and h["agent_version"] for h in data["hosts"]), data["hosts"]
        [task] = data["tasks"]
        assert (task["id"], task["host"], task["step"], task["turns"], task["kind"]) == (
            started["task_id"], started["host"], "tests", turns, "issue")
        assert task["cost_usd"] == float(on_host["cost_usd"])
        [host] = [h for h in data["hosts"] if h["name"] == started["host"]]
        assert host["slots_used"] == 1 and host["slots_max"] == 2
        assert data["selected"] == started["task_id"]
        assert data["log"]["task_id"] == started["task_id"] and data["log"]["lines"]
    finally:
        w.orch("cancel", started["task_id"])


def _app(fleet, tmp_path: Path) -> App:
    inventory = fleet.write_inventory(tmp_path / "hosts.yml")
    config = fleet.write_config(tmp_path / "orch.yml", ssh={"connect_timeout": CONNECT_TIMEOUT})
    return App(config_path=str(config), inventory_path=str(inventory),
               state_dir=str(tmp_path / "state"))


def _accepted(fleet, name: str) -> int:
    """Logins sshd accepted so far (its log, LogLevel VERBOSE): one per connection."""
    return fleet.host(name).log_path.read_text(errors="replace").count("Accepted publickey")


def _host(snap, name: str):
    return next(h for h in snap.hosts if h.name == name)


async def _until_down(w, fleet, name: str, others: list[str]) -> tuple[float, bool]:
    """Refresh (each waiting at most one interval) until `name` shows down; every frame
    on the way must show the others up with a fresh answer. Returns the seconds taken and
    whether some frame showed `name` with its question outstanding."""
    waited = False
    began = time.monotonic()
    while True:
        asked = time.monotonic()
        snap = await w.refresh(wait=INTERVAL)
        assert time.monotonic() - asked <= INTERVAL + SLACK, "a refresh waited for a silent host"
        took = time.monotonic() - began
        for other in others:
            row = _host(snap, other)
            assert row.up is True, (other, row.reason)
            assert row.age_seconds is not None and row.age_seconds <= INTERVAL + SLACK, row
        row = _host(snap, name)
        if row.up is False:
            return took, waited
        waited = waited or bool(row.waiting_seconds)
        assert took < 60, f"{name} never showed down"


async def _until_up(w, name: str) -> None:
    began = time.monotonic()
    while _host(await w.refresh(wait=INTERVAL), name).up is not True:
        assert time.monotonic() - began < 60, f"{name} never came back"
        await asyncio.sleep(0.2)


def test_stopped_host_shows_down_while_the_others_keep_updating_over_kept_links(
        make_ssh_fleet, tmp_path):
    fleet = make_ssh_fleet(3)
    app = _app(fleet, tmp_path)

    async def go():
        async with watching(app, interval=INTERVAL) as w:
            first = await w.refresh()
            assert [h.up for h in first.hosts] == [True, True, True], \
                [(h.name, h.reason) for h in first.hosts]
            logins = {n: _accepted(fleet, n) for n in fleet.names}
            assert all(v >= 1 for v in logins.values())

            fleet.stop("h2")                   # sshd and its sessions: the link drops
            took, _ = await _until_down(w, fleet, "h2", ["h1", "h3"])
            assert took <= INTERVAL + CONNECT_TIMEOUT + SLACK, took
            down = _host(w.snapshot(), "h2")
            assert down.error_kind in ("disconnected", "refused"), down
            assert down.reason

            fleet.freeze("h1")                 # a silent host: the kept link just hangs
            took, waited = await _until_down(w, fleet, "h1", ["h3"])
            assert took <= INTERVAL + CONNECT_TIMEOUT + SLACK, took
            assert waited, "frames were drawn while h1's probe was outstanding"
            assert _host(w.snapshot(), "h1").reason

            # h3 was re-probed every round over its one connection: no new login
            assert _accepted(fleet, "h3") == logins["h3"]

            fleet.start("h2")                  # the dropped link was forgotten: a new one
            fleet.thaw("h1")
            await _until_up(w, "h2")
            await _until_up(w, "h1")
            assert _accepted(fleet, "h2") == logins["h2"] + 1
            assert _accepted(fleet, "h3") == logins["h3"]

    asyncio.run(asyncio.wait_for(go(), 240))


def test_json_without_hosts_answering_still_lists_them_down(make_ssh_fleet, tmp_path):
    fleet = make_ssh_fleet(2)
    inventory = fleet.write_inventory(tmp_path / "hosts.yml")
    config = fleet.write_config(tmp_path / "orch.yml", ssh={"connect_timeout": CONNECT_TIMEOUT})
    fleet.stop("h2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_HOME=str(tmp_path / "state"), ORCH_CONFIG=str(config),
               ORCH_INVENTORY=str(inventory))
    r = subprocess.run([sys.executable, "-m", "orchestrator", "top", "--json"], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    rows = {h["name"]: h for h in data["hosts"]}
    assert rows["h1"]["up"] is True
    assert rows["h2"]["up"] is False and rows["h2"]["error_kind"] == "refused"
    assert rows["h2"]["reason"]
    assert data["tasks"] == [] and data["finished"] == []


def test_a_first_probe_on_a_new_link_gets_the_usual_bound_not_the_tight_one(
        make_ssh_fleet, tmp_path):
    """A slow host at start (here: its agent takes 4 s to say its version, more than the
    2 s connect timeout) is up on the first round, as `orch hosts` would report it; the
    tight bound is for links that answered before."""
    fleet = make_ssh_fleet(1)
    slow_agent = tmp_path / "slow-claude"
    slow_agent.write_text('#!/bin/sh\nsleep 4\necho "9.9.9 (Claude Code)"\n')
    slow_agent.chmod(0o755)
    inventory = fleet.write_inventory(tmp_path / "hosts.yml", agent=str(slow_agent))
    config = fleet.write_config(tmp_path / "orch.yml", ssh={"connect_timeout": 2})
    app = App(config_path=str(config), inventory_path=str(inventory),
              state_dir=str(tmp_path / "state"))

    async def go():
        async with watching(app, interval=INTERVAL) as w:
            first = _host(await w.refresh(), "h1")
            assert first.up is True and first.agent_version == "9.9.9 (Claude Code)", first
            second = _host(await w.refresh(), "h1")
            assert second.up is False and second.error_kind == "timeout", second

    asyncio.run(asyncio.wait_for(go(), 120))
