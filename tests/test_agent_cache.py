"""Issue 10 item 2: the agent's version is cached per host, keyed by the installed binary.

On a real sshd host through the real `orch hosts --json`: the agent is a sh script that
appends a line to a counter file each time it is asked for its version, so the tests
count `--version` runs instead of timing anything.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.core.models import HostFacts
from orchestrator.fleet.agent_cache import FILE, AgentVersionCache


def counting_agent(path: Path, version: str, counter: Path, delay: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n"
                    f"echo run >> '{counter}'\n"
                    + (f"sleep {delay}\n" if delay else "")
                    + f"echo '{version}'\n")
    path.chmod(0o755)
    return path


def orch_hosts(fleet, tmp: Path, agent: str) -> dict:
    inv = fleet.write_inventory(tmp / "hosts.yml", names=["h1"], agent=agent)
    cfg = fleet.write_config(tmp / "orch.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(cfg),
                           "--inventory", str(inv), "--state-dir", str(tmp / "state"),
                           "hosts", "--json"], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [h1] = json.loads(proc.stdout)
    return h1


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_no_version_run_while_the_binary_is_unchanged(ssh_fleet, tmp_path):
    counter = tmp_path / "runs"
    agent = counting_agent(tmp_path / "bin" / "claude", "2.1.197 (Claude Code)", counter)
    first = orch_hosts(ssh_fleet, tmp_path, str(agent))
    assert (first["agent_version"], first["agent_version_cached"]) == ("2.1.197 (Claude Code)", False)
    assert first["agent_path"] == str(agent) and runs(counter) == 1
    for _ in range(3):
        again = orch_hosts(ssh_fleet, tmp_path, str(agent))
        assert (again["agent_version"], again["agent_version_cached"]) == ("2.1.197 (Claude Code)", True)
    assert runs(counter) == 1, "an unchanged binary is not asked again"
    cache = tmp_path / "state" / FILE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())["hosts"]["h1"]["version"] == "2.1.197 (Claude Code)"


def test_the_cache_is_invalidated_when_the_binary_changes(ssh_fleet, tmp_path):
    counter = tmp_path / "runs"
    agent = counting_agent(tmp_path / "bin" / "claude", "2.1.197 (Claude Code)", counter)
    assert orch_hosts(ssh_fleet, tmp_path, str(agent))["agent_version"] == "2.1.197 (Claude Code)"
    # an update replaces the file (a new inode, size and mtime), as installers do
    new = counting_agent(tmp_path / "bin" / "claude.new", "2.1.230 (Claude Code)", counter)
    os.replace(new, agent)
    h1 = orch_hosts(ssh_fleet, tmp_path, str(agent))
    assert (h1["agent_version"], h1["agent_version_cached"]) == ("2.1.230 (Claude Code)", False)
    # the same size, rewritten in place a second later: its mtime tells
    time.sleep(1.1)
    agent.write_text(agent.read_text().replace("2.1.230", "2.1.231"))
    assert orch_hosts(ssh_fleet, tmp_path, str(agent))["agent_version"] == "2.1.231 (Claude Code)"
    # the symlink the native installer moves to a new version: followed
    v3 = counting_agent(tmp_path / "versions" / "3", "2.1.300 (Claude Code)", counter)
    link = tmp_path / "bin" / "link"
    link.symlink_to(v3)
    assert orch_hosts(ssh_fleet, tmp_path, str(link))["agent_version"] == "2.1.300 (Claude Code)"
    v4 = counting_agent(tmp_path / "versions" / "4", "2.1.400 (Claude Code)", counter)
    link.unlink()
    link.symlink_to(v4)
    assert orch_hosts(ssh_fleet, tmp_path, str(link))["agent_version"] == "2.1.400 (Claude Code)"
    assert runs(counter) == 5
    # another agent command for the host: asked again, even for the same binary
    wrapped = f"sh {agent}"
    h1 = orch_hosts(ssh_fleet, tmp_path, wrapped)
    assert h1["agent_version"] == "2.1.231 (Claude Code)" and not h1["agent_version_cached"]
    assert runs(counter) == 6


def test_a_slow_agent_is_reported_then_cached(ssh_fleet, tmp_path):
    counter = tmp_path / "runs"
    agent = counting_agent(tmp_path / "bin" / "claude", "2.1.197 (slow)", counter, delay=3)
    assert orch_hosts(ssh_fleet, tmp_path, str(agent))["agent_version"] == "2.1.197 (slow)"
    h1 = orch_hosts(ssh_fleet, tmp_path, str(agent))
    assert (h1["agent_version"], h1["agent_version_cached"]) == ("2.1.197 (slow)", True)
    assert runs(counter) == 1


# --------------------------------------------------------------------------- the cache alone


def facts(version: str | None, key: str | None, cached: bool = False) -> HostFacts:
    return HostFacts(name="h1", address="a", reachable=True, agent_version=version,
                     agent_key=key, agent_version_cached=cached)


def test_entries_age_out_and_belong_to_one_command(tmp_path):
    now = [1000.0]
    cache = AgentVersionCache(tmp_path, max_age=60, clock=lambda: now[0])
    assert cache.lookup("h1", "claude") is None
    cache.record([(facts("1.0", "/b/claude:1:2:3"), "claude")])
    assert cache.lookup("h1", "claude").version == "1.0"
    assert cache.lookup("h1", "other") is None
    now[0] += 61
    assert cache.lookup("h1", "claude") is None            # too old: ask the host again
    fresh = AgentVersionCache(tmp_path, max_age=60, clock=lambda: now[0] - 61)
    assert fresh.lookup("h1", "claude").key == "/b/claude:1:2:3"   # read back from the file


def test_only_new_knowledge_is_written(tmp_path):
    cache = AgentVersionCache(tmp_path)
    cache.record([(facts(None, "k"), "claude"), (facts("1.0", None), "claude")])
    assert not (tmp_path / FILE).exists()                   # nothing learned, nothing written
    cache.record([(facts("1.0", "k"), "claude")])
    before = (tmp_path / FILE).stat().st_mtime_ns
    cache.record([(facts("1.0", "k", cached=True), "claude")])
    assert (tmp_path / FILE).stat().st_mtime_ns == before


def test_a_corrupted_cache_is_an_empty_one(tmp_path):
    (tmp_path / FILE).write_text("{not json")
    cache = AgentVersionCache(tmp_path)
    assert cache.lookup("h1", "claude") is None
    cache.record([(facts("1.0", "k"), "claude")])
    assert AgentVersionCache(tmp_path).lookup("h1", "claude").version == "1.0"


def test_every_command_that_probes_shares_the_cache(ssh_fleet, tmp_path):
    """`orch metrics` (like poll, dispatch, logs and top: App.fleet) probes with the cache
    `orch hosts` filled: no second `--version` run for an unchanged binary."""
    counter = tmp_path / "runs"
    agent = counting_agent(tmp_path / "bin" / "claude", "2.1.197 (Claude Code)", counter)
    orch_hosts(ssh_fleet, tmp_path, str(agent))
    assert runs(counter) == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "--config",
                           str(tmp_path / "orch.yml"), "--inventory", str(tmp_path / "hosts.yml"),
                           "--state-dir", str(tmp_path / "state"), "metrics"], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'orch_host_up{host="h1"} 1.0' in proc.stdout
    assert runs(counter) == 1, "the metrics probe asked the unchanged agent again"
