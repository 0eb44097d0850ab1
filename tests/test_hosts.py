"""facts' parser (pure), the probe script's quoting, and `orch hosts` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.core.models import Host
from orchestrator.fleet import facts
from orchestrator.render.hosts import JSON_KEYS, hosts_json

HOST = Host(name="pc1", address="10.0.0.1", specialties=("backend", "api"), max_tasks=3,
            workspace_root="~/orch-work")

GOOD = f"""\
Welcome to pc1 (a login banner the parser must ignore)
task=ffffffff
{facts.BEGIN}
load1=0.42
cpus=8
mem_total_kb=16384000
mem_available_kb=8192000
workspace_exists=1
disk_free_kb=52428800
task=0a1b2c3d
task=deadbeef
stale_task=99999999
task=bad id; rm -rf /
agent_rc=0
agent_version=2.1.197 (Claude Code)
{facts.END}
trailing noise
"""


# -- the parser ------------------------------------------------------------------------

def test_parse_full_output():
    f = facts.parse_probe(GOOD, HOST)
    assert f.reachable and f.error is None and f.error_kind is None
    assert f.load1 == 0.42 and f.cpus == 8
    assert f.mem_total_mb == 16000 and f.mem_available_mb == 8000
    assert f.disk_free_mb == 51200
    assert f.running_tasks == 2 and f.running_task_ids == ["0a1b2c3d", "deadbeef"]
    assert f.agent_version == "2.1.197 (Claude Code)"
    assert f.specialties == ["backend", "api"] and f.max_tasks == 3 and f.enabled
    assert any("99999999" in n for n in f.notes)
    assert f.load_per_cpu == pytest.approx(0.42 / 8)


def test_parse_missing_agent_is_a_note():
    looked = "PATH (/usr/bin:/bin), /home/dev/.local/bin, /home/dev/.claude/local, /usr/bin"
    out = f"{facts.BEGIN}\ncpus=2\nagent_missing=1\nagent_looked={looked}\n{facts.END}\n"
    f = facts.parse_probe(out, HOST, agent="claude")
    assert f.reachable and f.error is None and f.agent_version is None and f.agent_path is None
    assert f.notes == [f"agent 'claude' not found (looked in: {looked})"]


def test_parse_agent_path_and_where_it_was_found():
    out = (f"{facts.BEGIN}\nagent_path=/home/dev/.local/bin/claude\nagent_found_by=/home/dev/.local/bin\n"
           f"agent_key=/home/dev/.local/bin/claude:123:1700000000:42\nagent_rc=0\n"
           f"agent_version=2.1.197 (Claude Code)\n{facts.END}\n")
    f = facts.parse_probe(out, HOST, agent="claude")
    assert (f.agent_path, f.agent_version, f.agent_version_cached) == \
        ("/home/dev/.local/bin/claude", "2.1.197 (Claude Code)", False)
    assert f.agent_key == "/home/dev/.local/bin/claude:123:1700000000:42"
    assert f.notes == ["agent 'claude' is /home/dev/.local/bin/claude (not on the SSH session's "
                       "PATH; found in /home/dev/.local/bin)"]
    on_path = out.replace("agent_found_by=/home/dev/.local/bin", "agent_found_by=PATH")
    assert facts.parse_probe(on_path, HOST).notes == []
    cached = out.replace("agent_rc=0\nagent_version=2.1.197 (Claude Code)\n", "agent_cached=1\n")
    f = facts.parse_probe(cached, HOST)
    assert f.agent_version_cached and f.agent_version is None     # probe() fills it in


@pytest.mark.parametrize("rc,text,expect", [
    ("1", "Error: cannot find module", "failed (exit 1): Error: cannot find module"),
    ("124", "", "did not answer"),
    ("0", "", "failed (exit 0)"),
])
def test_parse_failed_agent_version(rc, text, expect):
    out = f"{facts.BEGIN}\nagent_rc={rc}\nagent_version={text}\n{facts.END}\n"
    f = facts.parse_probe(out, HOST)
    assert f.agent_version is None and f.error is None
    assert any(expect in n for n in f.notes), f.notes


def test_parse_garbage_is_a_probe_error():
    f = facts.parse_probe("fish: Unknown command: sh\n", HOST)
    assert f.reachable and f.error_kind == "probe"
    assert "fish: Unknown command" in f.error


def test_parse_truncated_output():
    f = facts.parse_probe(f"{facts.BEGIN}\nload1=1.5\ncpus=4\n", HOST)
    assert f.error_kind == "probe" and f.load1 == 1.5 and f.cpus == 4


def test_parse_odd_values_do_not_crash():
    out = (f"{facts.BEGIN}\nload1=0,75\ncpus=\nmem_total_kb=lots\ndisk_free_kb=\n"
           f"workspace_exists=0\n{facts.END}\n")
    f = facts.parse_probe(out, HOST)
    assert f.load1 == 0.75 and f.cpus is None and f.mem_total_mb is None
    assert f.disk_free_mb is None and f.running_tasks == 0
    assert any("does not exist yet" in n for n in f.notes)


def test_unreachable_facts():
    from orchestrator.errors import HostUnreachable
    exc = HostUnreachable("pc1", "refused", "connection refused by 10.0.0.1", hint="start sshd")
    f = facts.unreachable(HOST, exc, 0.1)
    assert not f.reachable and f.error_kind == "refused"
    assert f.error == "connection refused by 10.0.0.1 (hint: start sshd)"


# -- the script ------------------------------------------------------------------------

def test_script_quotes_workspace_and_agent():
    hostile = Host(name="x", address="y", workspace_root="/tmp/a b'$(touch /tmp/pwn)",
                   agent="'~/bin/my agent`id`' --x=$(id)")
    script = facts.probe_script(hostile, Settings(), cached_key="k'$(id)")
    assert "ws='/tmp/a b'\"'\"'$(touch /tmp/pwn)'" in script
    assert "\nset -- '~/bin/my agent`id`' '--x=$(id)'\n" in script
    assert "\ncached='k'\"'\"'$(id)'\n" in script
    assert "ws=\"$HOME\"/orch-work" in facts.probe_script(HOST, Settings())


def test_script_runs_under_dash_with_hostile_paths(tmp_path):
    """The real script, through LocalConnection, on paths full of shell syntax."""
    from orchestrator.transport.local import LocalConnection
    weird = tmp_path / "w s'$(touch PWNED)`touch PWNED2`;x"
    (weird / "abcd0001").mkdir(parents=True)
    (weird / "abcd0001" / "status").write_text(f"state=running\npgid={os.getpgid(0)}\n")
    agent = tmp_path / "ag ent$(touch PWNED3)"
    agent.write_text("#!/bin/sh\necho 1.0.0\n")
    agent.chmod(0o755)
    host = Host(name="l", address="localhost", connection="local",
                workspace_root=str(weird), agent=shlex.quote(str(agent)))   # one word: quoted
    f = asyncio.run(facts.probe(LocalConnection(host), host, Settings(), timeout=20))
    assert f.error is None, f
    assert f.running_task_ids == ["abcd0001"] and f.agent_version == "1.0.0"
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    assert not list(Path.cwd().glob("PWNED*"))


# -- render ----------------------------------------------------------------------------

def test_hosts_json_shape():
    f = facts.parse_probe(GOOD, HOST)
    (row,) = hosts_json([f])
    assert list(row)[:len(JSON_KEYS)] == list(JSON_KEYS)
    assert row["running_tasks"] == 2 and row["agent_version"].startswith("2.1")
    json.dumps(row)


# -- `orch hosts` end to end -----------------------------------------------------------

def orch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _cli_files(fleet_, tmp_path, **inventory_kw):
    inv = fleet_.write_inventory(tmp_path / "hosts.yml", **inventory_kw)
    cfg = fleet_.write_config(tmp_path / "orch.yml")
    return ["--config", str(cfg), "--inventory", str(inv), "--state-dir", str(tmp_path / "st")]


def test_cli_hosts_json_all_reachable(ssh_fleet, tmp_path):
    base = _cli_files(ssh_fleet, tmp_path, names=["h1", "h2", "h3"])
    r = orch(tmp_path, *base, "hosts", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == ["h1", "h2", "h3"]
    for row in rows:
        assert set(JSON_KEYS) <= set(row)
        assert row["reachable"] is True and row["error"] is None
        assert row["cpus"] >= 1 and row["running_tasks"] == 0 and row["max_tasks"] == 2
        assert row["address"] == ssh_fleet.host(row["name"]).address


def test_cli_hosts_exit_1_when_an_enabled_host_is_down(make_ssh_fleet, tmp_path):
    fleet_ = make_ssh_fleet(3)
    base = _cli_files(fleet_, tmp_path)
    fleet_.stop("h3")
    r = orch(tmp_path, *base, "hosts", "--json")
    assert r.returncode == 1, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["h3"]["reachable"] is False and rows["h3"]["error_kind"] == "refused"
    assert "refused" in rows["h3"]["error"]
    assert rows["h1"]["reachable"] and rows["h2"]["reachable"]
    table = orch(tmp_path, *base, "hosts")
    assert table.returncode == 1
    assert "h1" in table.stdout and "refused" in table.stdout


def test_cli_hosts_disabled_down_host_does_not_fail(make_ssh_fleet, tmp_path):
    fleet_ = make_ssh_fleet(2)
    base = _cli_files(fleet_, tmp_path, extra={"h2": {"enabled": False}})
    fleet_.stop("h2")
    r = orch(tmp_path, *base, "hosts", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["h2"]["enabled"] is False and rows["h2"]["reachable"] is False


def test_cli_hosts_unknown_key_exit_1_with_hint(ssh_fleet, tmp_path):
    kh = ssh_fleet.write_known_hosts(tmp_path / "kh", names=["h1"])
    inv = ssh_fleet.write_inventory(tmp_path / "hosts.yml", names=["h1", "h2"])
    cfg = ssh_fleet.write_config(tmp_path / "orch.yml", ssh={"known_hosts": str(kh)})
    r = orch(tmp_path, "--config", str(cfg), "--inventory", str(inv), "hosts", "--json")
    assert r.returncode == 1
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["h1"]["reachable"]
    assert rows["h2"]["error_kind"] == "hostkey-unknown" and "orch trust h2" in rows["h2"]["error"]


def test_cli_hosts_without_inventory_probes_this_machine(tmp_path):
    r = orch(tmp_path, "--state-dir", str(tmp_path / "st"), "hosts", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["name"] == "local" and row["reachable"] and row["cpus"] >= 1
    table = orch(tmp_path, "--state-dir", str(tmp_path / "st"), "hosts")
    assert table.returncode == 0 and "local" in table.stdout
