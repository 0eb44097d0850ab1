"""`orch provision` against real sshd hosts (fabric over loopback), end to end.

Each host has its own HOME (tests/helpers_provision.py), wiped before every test, so a
host starts bare: no agent, no workspace, no git identity. The agent comes from a local
file (a script that answers --version like Claude Code) or, with the host's real npm,
from a small npm registry on loopback (tests/npmregistry.py). Every orch call is the
real CLI in a subprocess: exit codes and --json are what a user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers_provision import agent_file, own_homes, snapshot, wipe

IS_ROOT = os.geteuid() == 0
STEPS = ["git", "agent", "workspace", "git-identity"]


def run_orch(tmp: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    environ = dict(os.environ, COLUMNS="200")
    for k in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME"):
        environ.pop(k, None)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(tmp / "orch.yml"),
                           "--inventory", str(tmp / "hosts.yml"), "--state-dir", str(tmp / "state"),
                           *args], cwd=tmp, env=environ, capture_output=True, text=True,
                          timeout=180, **kwargs)


def provision_json(tmp: Path, *args: str, rc: int = 0) -> dict[str, dict]:
    proc = run_orch(tmp, "provision", "--json", *args)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return {r["host"]: r for r in json.loads(proc.stdout)}


def steps_of(entry: dict) -> dict[str, dict]:
    return {s["step"]: s for s in entry["steps"]}


@pytest.fixture(scope="module")
def pfleet(ssh_fleet_factory):
    """Three hosts p1..p3 of this module, each with a HOME of its own."""
    fleet = ssh_fleet_factory(3, prefix="p")
    return fleet, own_homes(fleet)


@dataclass
class World:
    tmp: Path
    fleet: object
    homes: dict[str, Path]
    agent: Path

    def write(self, *, extra: dict | None = None, **config) -> None:
        hosts = {n: {"agent": "~/.local/bin/claude", "workspace_root": "~/orch-work"}
                 for n in self.fleet.names}
        for name, values in (extra or {}).items():
            hosts[name].update(values)
        self.fleet.write_inventory(self.tmp / "hosts.yml", extra=hosts)
        sections = {"agent": {"allow_root": True},
                    "provision": {"agent_source": str(self.agent)},
                    "repos": ["octo/app"], "repo_urls": {"octo/app": str(self.tmp / "origin.git")}}
        sections.update(config)
        self.fleet.write_config(self.tmp / "orch.yml", **sections)

    def installed(self, name: str) -> Path:
        return self.homes[name] / ".local" / "bin" / "claude"


@pytest.fixture
def world(pfleet, tmp_path) -> World:
    fleet, homes = pfleet
    for home in homes.values():
        wipe(home)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    w = World(tmp_path, fleet, homes, agent_file(tmp_path / "dist" / "claude", "2.1.197"))
    w.write()
    return w


# --------------------------------------------------------------------------- the happy path

def test_bare_hosts_are_provisioned_from_a_local_file_then_pass_bootstrap(world):
    before = run_orch(world.tmp, "bootstrap", "--json")
    assert before.returncode == 1                     # no agent anywhere yet
    report = provision_json(world.tmp)
    assert list(report) == ["p1", "p2", "p3"]
    for name, entry in report.items():
        assert entry["ok"] is True and entry["failed"] == []
        assert entry["changed"] == ["agent", "workspace", "git-identity"], entry
        steps = steps_of(entry)
        assert [s["step"] for s in entry["steps"]][:4] == STEPS
        assert steps["git"]["status"] == "ok"
        assert "2.1.197 (Claude Code)" in steps["agent"]["detail"]
        assert steps["repo"]["status"] == "ok"          # bootstrap's repository check joined in
        installed = world.installed(name)
        assert installed.read_bytes() == world.agent.read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o755
        ws = world.homes[name] / "orch-work"
        assert ws.is_dir() and ws.stat().st_mode & 0o777 == 0o700
        assert ws.stat().st_uid == os.geteuid()
        gitconfig = (world.homes[name] / ".gitconfig").read_text()
        assert "name = orch" in gitconfig and "email = orch@localhost" in gitconfig
    # Bootstrap's verdict was refreshed by the provision, and bootstrap itself agrees.
    state = json.loads((world.tmp / "state" / "bootstrap.json").read_text())["hosts"]
    assert all(state[n]["ok"] is True for n in report)
    after = run_orch(world.tmp, "bootstrap", "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    assert all(e["ok"] for e in json.loads(after.stdout))


def test_a_second_run_changes_nothing(world):
    provision_json(world.tmp)
    homes = list(world.homes.values())
    before = snapshot(*homes)
    again = provision_json(world.tmp)
    for entry in again.values():
        assert entry["changed"] == [] and entry["ok"] is True, entry
        assert {s["status"] for s in entry["steps"][:4]} == {"ok"}
    assert snapshot(*homes) == before


def test_check_changes_nothing_and_says_what_would_change(world):
    homes = list(world.homes.values())
    before = snapshot(*homes, world.tmp / "state")
    known_hosts = Path(world.fleet.known_hosts).read_bytes()
    report = provision_json(world.tmp, "--check")
    for entry in report.values():
        assert entry["check"] is True and entry["ok"] is True
        assert entry["changed"] == ["agent", "workspace", "git-identity"]
        steps = steps_of(entry)
        assert steps["agent"]["detail"].startswith("would upload")
        assert steps["workspace"]["detail"].startswith("would create")
        assert "repo" not in steps                       # bootstrap does not run under --check
    assert snapshot(*homes, world.tmp / "state") == before
    assert not (world.tmp / "state" / "bootstrap.json").exists()
    assert Path(world.fleet.known_hosts).read_bytes() == known_hosts
    text = run_orch(world.tmp, "provision", "--check")
    assert text.returncode == 0 and "would change" in text.stdout
    assert snapshot(*homes, world.tmp / "state") == before


def test_a_different_file_replaces_the_agent_up_or_down_and_a_wrong_mode_is_fixed(world):
    provision_json(world.tmp)
    agent_file(world.agent, "2.1.200")                   # the fleet moves up...
    up = provision_json(world.tmp)
    for name, entry in up.items():
        assert entry["changed"] == ["agent"]
        assert "2.1.200" in steps_of(entry)["agent"]["detail"]
        assert world.installed(name).read_bytes() == world.agent.read_bytes()
    agent_file(world.agent, "2.1.190")                   # ...and back down
    down = provision_json(world.tmp)
    assert all(e["changed"] == ["agent"] for e in down.values())
    assert all("2.1.190" in world.installed(n).read_text() for n in down)
    world.installed("p2").chmod(0o700)
    (world.homes["p3"] / "orch-work").chmod(0o755)
    fixed = provision_json(world.tmp)
    assert fixed["p1"]["changed"] == []
    assert fixed["p2"]["changed"] == ["agent"] and world.installed("p2").stat().st_mode & 0o777 == 0o755
    assert fixed["p3"]["changed"] == ["workspace"]
    assert "drwxr-xr-x -> drwx------" in steps_of(fixed["p3"])["workspace"]["detail"]


# --------------------------------------------------------------------------- failures

def test_a_failing_step_names_the_fix_and_the_other_hosts_still_finish(world):
    blocker = world.tmp / "blocker"
    blocker.write_text("a regular file, not a directory\n")
    world.write(extra={"p2": {"workspace_root": str(blocker / "ws")}})
    proc = run_orch(world.tmp, "provision", "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    for entry in report:                                 # the fixed shape: these keys first
        assert list(entry)[:4] == ["host", "ok", "changed", "failed"]
        assert isinstance(entry["changed"], list)
        for f in entry["failed"]:
            assert set(f) == {"step", "error", "fix"}
    by = {e["host"]: e for e in report}
    bad = by["p2"]
    assert bad["ok"] is False
    assert [f["step"] for f in bad["failed"]] == ["workspace"]
    assert "workspace_root" in bad["failed"][0]["fix"]
    assert str(blocker) in bad["failed"][0]["error"]
    assert bad["changed"] == ["agent", "git-identity"]   # the rest of p2 was still done
    for name in ("p1", "p3"):
        assert by[name]["ok"] is True and world.installed(name).is_file()
    state = json.loads((world.tmp / "state" / "bootstrap.json").read_text())["hosts"]
    assert state["p2"]["ok"] is False and state["p1"]["ok"] is True
    text = run_orch(world.tmp, "provision")
    assert text.returncode == 1
    assert "fixes" in text.stdout and "p2 workspace" in text.stdout


@pytest.mark.parametrize("case", ["unknown", "changed"])
def test_an_untrusted_host_key_fails_that_host_only_and_is_never_recorded(world, case):
    fleet = world.fleet
    known = world.tmp / "known_hosts"
    if case == "unknown":
        fleet.write_known_hosts(known, names=["p1", "p2"])
    else:
        fleet.write_known_hosts(known, keys_from={"p3": "p1"})
    before = known.read_bytes()
    world.write(ssh={"known_hosts": str(known), "config": str(fleet.ssh_config), "connect_timeout": 5})
    proc = run_orch(world.tmp, "provision", "--json")
    assert proc.returncode == 1, proc.stderr
    by = {e["host"]: e for e in json.loads(proc.stdout)}
    bad = by["p3"]
    assert bad["ok"] is False and bad["changed"] == []
    assert bad["error_kind"] == f"hostkey-{case}"
    assert [f["step"] for f in bad["failed"]] == ["connect"]
    if case == "unknown":
        assert "not in known_hosts" in bad["failed"][0]["error"]
        assert "`orch trust p3`" in bad["failed"][0]["fix"]
    else:
        assert "CHANGED" in bad["failed"][0]["error"]
        assert "orch trust --replace p3" in bad["failed"][0]["fix"]
    assert list(world.homes["p3"].iterdir()) == []      # nothing was done on p3
    assert known.read_bytes() == before                  # and its key was not added
    assert by["p1"]["ok"] and by["p2"]["ok"]


def test_bad_input_is_exit_2_and_touches_no_host(world):
    homes = list(world.homes.values())
    before = snapshot(*homes)
    world.write(provision={"agent_source": str(world.tmp / "missing" / "claude")})
    proc = run_orch(world.tmp, "provision")
    assert proc.returncode == 2
    line = next(i for i, text in enumerate((world.tmp / "orch.yml").read_text().splitlines(), 1)
                if "agent_source" in text)
    assert f"orch.yml:{line}: provision.agent_source:" in proc.stderr
    assert "no such file" in proc.stderr
    world.write(extra={"p2": {"agent": "npx @anthropic-ai/claude-code"}})
    proc = run_orch(world.tmp, "provision")
    assert proc.returncode == 2 and "p2:" in proc.stderr and "arguments" in proc.stderr
    assert "hosts.yml" in proc.stderr
    world.write(provision={"agent_source": "npm:Not A Package"})
    proc = run_orch(world.tmp, "provision")
    assert proc.returncode == 2 and "provision.agent_source" in proc.stderr
    world.write()
    proc = run_orch(world.tmp, "provision", "nosuchhost")
    assert proc.returncode == 2 and "no host named 'nosuchhost'" in proc.stderr
    assert snapshot(*homes) == before


def test_a_corrupted_bootstrap_state_is_bad_input_found_before_any_host_is_touched(world):
    homes = list(world.homes.values())
    before = snapshot(*homes)
    (world.tmp / "state").mkdir(exist_ok=True)
    (world.tmp / "state" / "bootstrap.json").write_text("{not json")
    proc = run_orch(world.tmp, "provision")
    assert proc.returncode == 2 and "corrupted bootstrap state" in proc.stderr
    assert snapshot(*homes) == before


def test_bootstrap_failing_to_run_after_the_steps_is_reported_not_raised(world, monkeypatch):
    from orchestrator.app import App
    from orchestrator.errors import WorkError
    from orchestrator.fleet import bootstrap
    from orchestrator.fleet.provision import make_plan, provision

    async def refused(*args, **kwargs):      # e.g. the forge, asked for a clone URL, is down
        raise WorkError("the forge gave no clone URL for octo/app", hint="set repo_urls")
    monkeypatch.setattr(bootstrap, "run_bootstrap", refused)
    app = App(config_path=str(world.tmp / "orch.yml"), inventory_path=str(world.tmp / "hosts.yml"),
              state_dir=str(world.tmp / "state"))
    reports = provision(app, make_plan(app, ["p1"]))
    assert [r.host for r in reports] == ["p1"]
    entry = reports[0].to_json()
    assert entry["changed"] == ["agent", "workspace", "git-identity"]
    assert entry["failed"] == [{"step": "bootstrap", "error": "the forge gave no clone URL for octo/app",
                                "fix": "set repo_urls"}]
    assert world.installed("p1").is_file()


def test_without_an_agent_source_the_agent_is_checked_not_installed(world):
    world.write(provision={})
    report = provision_json(world.tmp, rc=1)
    for entry in report.values():
        agent = steps_of(entry)["agent"]
        assert agent["status"] == "failed"
        assert "provision.agent_source" in agent["fix"]
    assert not world.installed("p1").exists()


# --------------------------------------------------------------------------- npm

@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm on this machine (the hosts' npm)")
def test_npm_source_installs_into_the_login_users_prefix_and_follows_the_pin(world):
    from tests.npmregistry import NpmRegistry
    cli = '#!/usr/bin/env node\nconsole.log("{} (Claude Code)")\n'
    with NpmRegistry() as registry:
        for version in ("2.1.190", "2.1.197"):
            registry.publish("@fake/claude-code", version, {"cli.js": cli.format(version)},
                             bin={"claude": "cli.js"})
        for home in world.homes.values():       # each host's npm is configured for the mirror
            (home / ".npmrc").write_text(f"registry={registry.url}\n")
        world.write(provision={"agent_source": "npm:@fake/claude-code@2.1.197"})
        first = provision_json(world.tmp, "p1", "p2")
        assert list(first) == ["p1", "p2"]
        for name, entry in first.items():
            assert "agent" in entry["changed"], entry
            assert "installed @fake/claude-code@2.1.197" in steps_of(entry)["agent"]["detail"]
            assert steps_of(entry)["node"]["status"] == "ok"    # a node script: bootstrap checks node
            package = world.homes[name] / ".local" / "lib" / "node_modules" / "@fake" / "claude-code"
            assert json.loads((package / "package.json").read_text())["version"] == "2.1.197"
            assert world.installed(name).resolve() == (package / "cli.js").resolve()
        assert provision_json(world.tmp, "p1")["p1"]["changed"] == []
        world.write(provision={"agent_source": "npm:@fake/claude-code@2.1.190"})
        down = provision_json(world.tmp, "p1")["p1"]
        assert down["changed"] == ["agent"]
        assert "2.1.197 -> 2.1.190" in steps_of(down)["agent"]["detail"]
        version = subprocess.run([str(world.installed("p1")), "--version"], capture_output=True,
                                 text=True, env=dict(os.environ, HOME=str(world.homes["p1"])))
        assert version.stdout.strip() == "2.1.190 (Claude Code)"
        world.write(provision={"agent_source": "npm:@fake/claude-code"})   # unpinned: left alone
        assert provision_json(world.tmp, "p1")["p1"]["changed"] == []
        requests = len(registry.requests)
        world.write(provision={"agent_source": "npm:@fake/claude-code@2.1.190"})
        check = provision_json(world.tmp, "p2", "--check")["p2"]
        assert check["changed"] == ["agent"] and "2.1.197 -> 2.1.190" in steps_of(check)["agent"]["detail"]
        assert len(registry.requests) == requests        # --check asked the registry nothing


def test_npm_missing_on_a_host_fails_the_agent_step_with_the_fix(world, tmp_path):
    # p3 gets a PATH with sh and coreutils but no npm: its sshd's PATH is set for this test.
    world.write(provision={"agent_source": "npm:@fake/claude-code@2.1.197"},
                extra={"p3": {"agent": "~/.local/bin/claude"}})
    fleet = world.fleet
    bin_dir = tmp_path / "bin-no-npm"
    bin_dir.mkdir()
    for tool in ("sh", "ls", "cat", "id", "mkdir", "chmod", "mktemp", "mv", "rm", "git", "printf",
                 "sha256sum", "df", "dirname", "tr", "awk", "head", "timeout", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    host = fleet.host("p3")
    original = host.config_path.read_text()
    try:
        host.config_path.write_text(original.replace(
            f"SetEnv HOME={world.homes['p3']}", f"SetEnv HOME={world.homes['p3']} PATH={bin_dir}"))
        fleet.stop("p3")
        fleet.start("p3")
        entry = provision_json(world.tmp, "p3", rc=1)["p3"]
    finally:
        host.config_path.write_text(original)
        fleet.stop("p3")
        fleet.start("p3")
    agent = steps_of(entry)["agent"]
    assert agent["status"] == "failed" and "npm not found" in agent["detail"]
    assert "local file" in agent["fix"] and "npm" in agent["fix"]
    assert steps_of(entry)["workspace"]["status"] == "changed"   # the other steps still ran
