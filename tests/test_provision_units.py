"""The pure parts of `orch provision`: the agent source, where the agent goes, the package
manager table, report shapes, the bootstrap merge, config validation, rendering; and the
agent lookup rule run by a real /bin/sh (no SSH needed for it)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.config.load import load_settings
from orchestrator.core.agentsource import install_target, parse_agent_source
from orchestrator.errors import ConfigError
from orchestrator.fleet.bootstrap import CheckResult, HostReport
from orchestrator.fleet.provision import HostProvision, StepReport, merge_bootstrap
from orchestrator.fleet.provision.agent import agent_lookup_script, executable_mode, installed_version
from orchestrator.fleet.provision.steps import PACKAGE_MANAGERS, package_manager

# --------------------------------------------------------------------------- agent source


@pytest.mark.parametrize("text, package, version, pinned", [
    ("npm:@anthropic-ai/claude-code@2.1.197", "@anthropic-ai/claude-code", "2.1.197", "2.1.197"),
    ("npm:@anthropic-ai/claude-code", "@anthropic-ai/claude-code", "", None),
    ("npm:claude-code@latest", "claude-code", "latest", None),
    ("npm:claude-code@^2.1", "claude-code", "^2.1", None),
    ("npm:claude-code@2.2.0-beta.1", "claude-code", "2.2.0-beta.1", "2.2.0-beta.1"),
])
def test_npm_sources(text, package, version, pinned):
    source = parse_agent_source(text)
    assert (source.kind, source.package, source.version, source.pinned) == ("npm", package, version, pinned)
    assert source.spec == (f"{package}@{version}" if version else package)


@pytest.mark.parametrize("text", ["npm:", "npm:Claude", "npm:@scope/", "npm:a b",
                                  "npm:claude@>=1 <2", "npm:claude@1;rm -rf ~", "  "])
def test_bad_npm_sources_are_refused(text):
    with pytest.raises(ValueError):
        parse_agent_source(text)


def test_anything_else_is_a_local_file():
    source = parse_agent_source("/srv/dist/claude")
    assert (source.kind, source.path, source.pinned) == ("file", "/srv/dist/claude", None)


NPM = parse_agent_source("npm:@anthropic-ai/claude-code@2.1.197")
FILE = parse_agent_source("/srv/claude")


@pytest.mark.parametrize("agent, source, path, prefix", [
    ("claude", NPM, "~/.local/bin/claude", "~/.local"),
    ("claude", FILE, "~/.local/bin/claude", None),
    ("~/.local/bin/claude", NPM, "~/.local/bin/claude", "~/.local"),
    ("/opt/claude/bin/claude", NPM, "/opt/claude/bin/claude", "/opt/claude"),
    ("~/bin/claude", NPM, "~/bin/claude", "~"),
    ("/opt/tools/claude", FILE, "/opt/tools/claude", None),
])
def test_install_targets(agent, source, path, prefix):
    target = install_target(agent, source)
    assert (target.path, target.npm_prefix) == (path, prefix)


@pytest.mark.parametrize("agent, source, words", [
    ("npx @anthropic-ai/claude-code", NPM, "arguments"),
    ("claude --model x", FILE, "arguments"),
    ("bin/claude", FILE, "relative"),
    ("/opt/tools/claude", NPM, "/bin/NAME"),
    ("/bin/claude", NPM, "/bin/NAME"),
])
def test_install_targets_that_cannot_be(agent, source, words):
    with pytest.raises(ValueError, match=words.replace("/", ".")):
        install_target(agent, source)


# --------------------------------------------------------------------------- steps' pure parts

def test_package_managers_driven_and_advised():
    assert package_manager("apt-get") is PACKAGE_MANAGERS["apt-get"]
    assert "apt-get update" in PACKAGE_MANAGERS["apt-get"].script   # stale lists get one update
    assert package_manager("dnf").shown == "sudo dnf install git"
    assert package_manager("zypper") == "sudo zypper install git"
    assert package_manager("") == "install git with the host's package manager"


def test_installed_version_and_modes():
    assert installed_version('{"name": "x", "version": "2.1.197"}') == "2.1.197"
    assert installed_version("") is None
    assert installed_version("[1, 2]") is None
    assert installed_version('{"version": 3}') is None
    assert executable_mode("-rwxr-xr-x") and executable_mode("-rwxr-xr-x.")
    assert not executable_mode("-rwx------") and not executable_mode("")


# --------------------------------------------------------------------------- reports

def _report() -> HostProvision:
    return HostProvision("h1", steps=[StepReport("git", "ok", "git version 2"),
                                      StepReport("agent", "changed", "uploaded"),
                                      StepReport("workspace", "ok", "/w")])


def test_json_shape_spec_keys_first():
    r = _report()
    r.steps.append(StepReport("git-identity", "failed", "cannot set", "run git config"))
    data = r.to_json()
    assert list(data)[:4] == ["host", "ok", "changed", "failed"]
    assert data["ok"] is False and data["changed"] == ["agent"]
    assert data["failed"] == [{"step": "git-identity", "error": "cannot set", "fix": "run git config"}]


def test_bootstrap_verdict_joins_the_report():
    r = _report()
    boot = HostReport("h1", checks=[
        CheckResult("git", "ok", "git version 2"),
        CheckResult("agent", "fail", "--version failed", "install it"),
        CheckResult("node", "skip", "not needed"),
        CheckResult("root", "info", "root allowed"),
        CheckResult("workspace", "ok", "writable"),
        CheckResult("repo", "fail", "octo/app: denied", "give read access")])
    merge_bootstrap(r, boot)
    steps = {s.step: s for s in r.steps}
    assert [s.step for s in r.steps] == ["git", "agent", "workspace", "node", "root", "repo"]
    assert steps["agent"].status == "failed" and steps["agent"].fix == "install it"
    assert "bootstrap still fails it: --version failed" in steps["agent"].detail
    assert r.changed == ["agent"]                      # it did change something, and failed
    assert (steps["node"].status, steps["root"].status) == ("skipped", "ok")
    assert steps["repo"].status == "failed" and steps["repo"].fix == "give read access"
    assert [f["step"] for f in r.to_json()["failed"]] == ["agent", "repo"]


def test_a_bootstrap_that_could_not_run_is_a_failed_step():
    r = _report()
    merge_bootstrap(r, HostReport("h1", error="connection dropped", error_kind="disconnected"))
    assert r.steps[-1].step == "bootstrap" and r.steps[-1].status == "failed"
    assert "orch bootstrap h1" in r.steps[-1].fix


# --------------------------------------------------------------------------- config

def test_agent_source_in_orch_yml(tmp_path):
    cfg = tmp_path / "orch.yml"
    cfg.write_text("provision:\n  agent_source: dist/claude\n")
    assert load_settings(cfg).provision.agent_source == str(tmp_path / "dist" / "claude")
    cfg.write_text("provision:\n  agent_source: npm:@anthropic-ai/claude-code@2.1.197\n")
    assert load_settings(cfg).provision.agent_source == "npm:@anthropic-ai/claude-code@2.1.197"
    cfg.write_text("agent:\n  command: claude\nprovision:\n  agent_source: 'npm:Claude Code'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert str(err.value).startswith(f"{cfg}:4: provision.agent_source:")
    cfg.write_text("provision:\n  agent_sorce: npm:x\n")
    with pytest.raises(ConfigError, match="did you mean `agent_source`"):
        load_settings(cfg)
    cfg.write_text("provision:\n  agent_source: null\n")
    assert load_settings(cfg).provision.agent_source is None


# --------------------------------------------------------------------------- the lookup rule

@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / ".local" / "bin").mkdir(parents=True)
    (h / ".claude" / "local").mkdir(parents=True)
    return h


def _lookup(agent: str, home: Path, path: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": path}
    return subprocess.run(["/bin/sh", "-c", agent_lookup_script(agent)], env=env,
                          capture_output=True, text=True, timeout=30)


def _exe(p: Path) -> Path:
    p.write_text("#!/bin/sh\necho 1.0.0\n")
    p.chmod(0o755)
    return p


def test_lookup_finds_the_installers_places_when_not_on_path(home, tmp_path):
    no_npm = tmp_path / "bin"
    no_npm.mkdir()
    for tool in ("sh",):
        os.symlink("/bin/sh", no_npm / tool)
    assert _lookup("claude", home, str(no_npm)).returncode == 1
    local = _exe(home / ".claude" / "local" / "claude")
    assert _lookup("claude", home, str(no_npm)).stdout.strip() == str(local)
    first = _exe(home / ".local" / "bin" / "claude")
    assert _lookup("claude", home, str(no_npm)).stdout.strip() == str(first)
    on_path = _exe(no_npm / "claude")
    assert _lookup("claude", home, str(no_npm)).stdout.strip() == str(on_path)   # PATH first
    assert _lookup("~/.claude/local/claude", home, str(no_npm)).stdout.strip() == str(local)
    assert _lookup("~/.claude/local/claude --model x", home, str(no_npm)).stdout.strip() == str(local)
    assert _lookup("~/nope/claude", home, str(no_npm)).returncode == 1


def test_lookup_quotes_hostile_names(home, tmp_path):
    marker = tmp_path / "pwned"
    result = _lookup(f"claude$(touch {marker})", home, "/usr/bin:/bin")
    assert result.returncode == 1 and not marker.exists()


# --------------------------------------------------------------------------- rendering

def test_host_text_is_printed_as_data_not_markup(monkeypatch):
    import orchestrator.render.term
    from orchestrator.render import provision as render
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    monkeypatch.setattr(render, "console", console)
    monkeypatch.setattr(orchestrator.render.term, "console", console)   # the fixes under the table
    r = HostProvision("h1", steps=[StepReport("agent", "failed", "[bold red]boom[/] $(x)", "[link]fix[/]")])
    render.provision_table([r])
    out = buf.getvalue()
    assert "[bold red]boom[/] $(x)" in out and "[link]fix[/]" in out
    assert "0 of 1 hosts ok" in out and "failed: h1 (agent)" in out


# --------------------------------------------------------------------------- no SSH hosts

def _orch(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    return subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(tmp / "state"),
                           *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=60)


def test_the_embedded_local_host_is_not_provisioned(tmp_path):
    proc = _orch(tmp_path, "provision", "--json")       # no inventory: only `local`
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
    proc = _orch(tmp_path, "provision")
    assert proc.returncode == 0 and "no hosts to provision" in proc.stdout
    proc = _orch(tmp_path, "provision", "local")
    assert proc.returncode == 2 and "connection: local" in proc.stderr and "hint:" in proc.stderr
