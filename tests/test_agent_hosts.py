"""Issue 15 on real sshd hosts: the agent where Claude Code's installer puts it.

The probe (`orch hosts`), bootstrap and the job all run the rule of core/agentpath.py on
the host, so for every layout below they agree: found at the same path, or missing with
the same places looked at. Each host has a HOME of its own (fixtures_ssh homes=True),
as separate machines would; the non-interactive SSH PATH is sshd's default, which has no
~/.local/bin.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.fixtures_world import STANDIN

SSH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # sshd's default

pytestmark = pytest.mark.skipif(shutil.which("claude", path=SSH_PATH) is not None,
                                reason="a real `claude` on this machine's PATH would be found first")


def install(path: Path, target: str = STANDIN) -> Path:
    """An agent at `path`: a wrapper that runs the stand-in (like the installer's symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(target)} \"$@\"\n")
    path.chmod(0o755)
    return path


def hosts_by_name(w) -> dict[str, dict]:
    proc = w.orch("hosts", "--json")
    return {h["name"]: h for h in json.loads(proc.stdout)}


def bootstrap_agent(w) -> dict[str, dict]:
    proc = w.orch("bootstrap", "--json")
    return {r["host"]: next(c for c in r["checks"] if c["name"] == "agent")
            for r in json.loads(proc.stdout)}


def dispatch(w, host: str, title: str) -> dict:
    n = w.issue(title, f"orch-standin: write {host}.txt from-{host}\n")
    return w.orch_json("dispatch", f"{w.repo}#{n}", "--host", host, timeout=240)


def test_probe_bootstrap_and_dispatch_agree_on_every_layout(make_world):
    # (tests.command: the hosts' own HOME hides the python packages of this machine's
    # ~/.local, pytest among them; the test run is not what this test is about)
    w = make_world(hosts=4, homes=True, agent={"command": "claude"}, tests={"command": "true"})
    home = {name: w.fleet.host(name).home for name in w.fleet.names}
    # h1: the native installer's place, the default bare `claude` (not on the SSH PATH)
    bare = install(home["h1"] / ".local" / "bin" / "claude")
    # h2: named with ~ in the inventory
    tilde = install(home["h2"] / ".local" / "bin" / "claude")
    # h3: a multi-word command (the program, then its arguments)
    multi = f"{shlex.quote(sys.executable)} -m orchestrator.demo.standin_agent"
    # h4: nothing anywhere
    w.fleet.write_inventory(w.inventory, extra={"h2": {"agent": "~/.local/bin/claude"},
                                                "h3": {"agent": multi}})

    facts = hosts_by_name(w)
    assert facts["h1"]["agent_path"] == str(bare)
    assert facts["h1"]["agent_version"] == "2.1.197 (orch stand-in)"
    assert any("not on the SSH session's PATH" in n for n in facts["h1"]["notes"])
    assert facts["h2"]["agent_path"] == str(tilde)
    assert facts["h2"]["agent_version"] == "2.1.197 (orch stand-in)"
    assert facts["h3"]["agent_path"] == sys.executable
    assert facts["h3"]["agent_version"] == "2.1.197 (orch stand-in)"
    assert facts["h4"]["agent_path"] is None and facts["h4"]["agent_version"] is None
    [missing] = [n for n in facts["h4"]["notes"] if "not found" in n]
    assert f"{home['h4']}/.local/bin" in missing and f"{home['h4']}/.claude/local" in missing
    assert "PATH (" in missing

    checks = bootstrap_agent(w)
    assert checks["h1"]["ok"] and str(bare) in checks["h1"]["detail"]
    assert "not on the SSH PATH" in checks["h1"]["detail"]
    assert checks["h2"]["ok"] and str(tilde) in checks["h2"]["detail"]
    assert checks["h3"]["ok"] and "2.1.197 (orch stand-in)" in checks["h3"]["detail"]
    assert not checks["h4"]["ok"] and f"{home['h4']}/.local/bin" in checks["h4"]["detail"]

    # bootstrap recorded h4 as failed, and dispatch would refuse it: forget that, so that
    # the job itself says what it found
    (w.state_dir / "bootstrap.json").unlink()
    for host in ("h1", "h2", "h3"):
        task = dispatch(w, host, f"Add a file on {host}")
        assert task["status"] == "succeeded", task["error"]
        assert w.remote.read(task["branch"], f"{host}.txt") == f"from-{host}\n"
    task = dispatch(w, "h4", "Add a file on h4")
    assert task["status"] == "failed"
    assert "agent command is not found" in task["error"] and f"{home['h4']}/.local/bin" in task["error"]
