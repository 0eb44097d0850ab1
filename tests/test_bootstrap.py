"""`orch bootstrap` against real sshd hosts, plus its pure parts (playbook, parser, state).

The sshd fleet logs in as the user running the tests on every host, so hosts differ by
their inventory entries: each gets its own `agent:` and `workspace_root`. The agent is
a small sh script that prints a version (the real `claude` is not needed to check that
a host *has* an agent).

The unwritable workspace is a path under a regular FILE (`<tmp>/blocker/ws`): creating
a directory inside a non-directory fails with ENOTDIR for every user, root included,
whereas a 0555 directory would not stop root (these tests usually run as root).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.app import App
from orchestrator.config.settings import Settings
from orchestrator.core import shell
from orchestrator.core.models import Host
from orchestrator.errors import ConfigError, UsageError
from orchestrator.fleet import bootstrap as bs
from orchestrator.fleet import checks as ck
from orchestrator.fleet.verdicts import failed_hosts, load_state

IS_ROOT = os.geteuid() == 0
FAKE_VERSION = "2.1.197 (Claude Code)"


# --------------------------------------------------------------------------- helpers

def fake_agent(directory: Path, name: str = "claude", shebang: str = "#!/bin/sh",
               body: str = f"echo '{FAKE_VERSION}'") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / name
    p.write_text(f"{shebang}\n{body}\n")
    p.chmod(0o755)
    return p


def bare_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def run_orch(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    for k in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "orchestrator",
                           "--config", str(tmp / "orch.yml"),
                           "--inventory", str(tmp / "hosts.yml"),
                           "--state-dir", str(tmp / "state"), *args],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=120)


def by_name(report: list[dict]) -> dict[str, dict]:
    return {r["host"]: r for r in report}


def checks_of(entry: dict) -> dict[str, dict]:
    return {c["name"]: c for c in entry["checks"]}


@pytest.fixture(scope="module")
def bfleet(ssh_fleet_factory):
    """Three sshd hosts b1..b3 of this module's own (tests create workspaces on them)."""
    return ssh_fleet_factory(3, prefix="b")


@pytest.fixture
def setup(bfleet, tmp_path):
    """b1 all good, b2 without its agent, b3 with a workspace_root that cannot exist."""
    agent = fake_agent(tmp_path / "bin")
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a directory\n")
    extra = {
        "b1": {"agent": str(agent), "workspace_root": str(tmp_path / "ws1")},
        "b2": {"agent": str(tmp_path / "nowhere" / "claude"), "workspace_root": str(tmp_path / "ws2")},
        "b3": {"agent": str(agent), "workspace_root": str(blocker / "ws")},
    }
    bfleet.write_inventory(tmp_path / "hosts.yml", extra=extra)
    bfleet.write_config(tmp_path / "orch.yml", agent={"allow_root": True})
    return {"tmp": tmp_path, "agent": agent, "extra": extra, "fleet": bfleet,
            "repo": bare_repo(tmp_path / "origin.git")}


def app_for(tmp: Path) -> App:
    return App(config_path=str(tmp / "orch.yml"), inventory_path=str(tmp / "hosts.yml"),
               state_dir=str(tmp / "state"))


# --------------------------------------------------------------------------- real sshd

def test_cli_mixed_fleet_json_exit_code_and_failed_hosts(setup):
    tmp = setup["tmp"]
    proc = run_orch(tmp, "bootstrap", "--json", "--clone-url", str(setup["repo"]))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["host"] for r in report] == ["b1", "b2", "b3"]
    for entry in report:
        assert {"host", "ok", "checks", "error"} <= set(entry)
        for c in entry["checks"]:
            assert {"name", "ok", "detail", "fix"} <= set(c)
    hosts = by_name(report)

    good = hosts["b1"]
    assert good["ok"] is True and good["error"] is None
    checks = checks_of(good)
    assert [c["name"] for c in good["checks"]] == [
        "git", "agent", "node", "root", "workspace", "disk", "repo", "git-identity"]
    assert all(c["ok"] for c in good["checks"])
    assert FAKE_VERSION in checks["agent"]["detail"]
    assert checks["git"]["detail"].startswith("git version")
    assert checks["node"]["status"] == "skip"               # a sh script needs no node
    assert "(created)" in checks["workspace"]["detail"]
    assert (tmp / "ws1").is_dir()
    assert checks["repo"]["status"] == "ok"
    assert all(c["fix"] is None for c in good["checks"])

    missing = checks_of(hosts["b2"])
    assert hosts["b2"]["ok"] is False
    assert missing["agent"]["ok"] is False
    assert "not found" in missing["agent"]["detail"]
    assert "agent:" in missing["agent"]["fix"] and "~/.local/bin" in missing["agent"]["fix"]
    assert missing["workspace"]["ok"] is True

    blocked = checks_of(hosts["b3"])
    assert hosts["b3"]["ok"] is False
    assert blocked["workspace"]["ok"] is False
    assert "Not a directory" in blocked["workspace"]["detail"]
    assert "workspace_root" in blocked["workspace"]["fix"]
    assert blocked["agent"]["ok"] is True
    assert blocked["disk"]["ok"] is True          # measured on the nearest existing parent

    failed = failed_hosts(tmp / "state")
    assert set(failed) == {"b2", "b3"}
    assert failed["b2"].startswith("bootstrap failed: agent: ")
    assert failed["b3"].startswith("bootstrap failed: workspace: ")

    # The person fixes both hosts; a passing run drops them from failed_hosts.
    extra = dict(setup["extra"])
    extra["b2"] = {**extra["b2"], "agent": str(setup["agent"])}
    extra["b3"] = {**extra["b3"], "workspace_root": str(tmp / "ws3")}
    setup["fleet"].write_inventory(tmp / "hosts.yml", extra=extra)
    proc = run_orch(tmp, "bootstrap", "b2", "b3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 hosts ready" in proc.stdout
    assert failed_hosts(tmp / "state") == {}
    state = load_state(tmp / "state")
    assert set(state) == {"b1", "b2", "b3"} and all(e["ok"] for e in state.values())


def test_table_shows_failures_with_their_fix(setup):
    proc = run_orch(setup["tmp"], "bootstrap", "b2")
    assert proc.returncode == 1
    out = proc.stdout
    assert "b2" in out and "agent" in out and "fail" in out
    assert "npm install -g @anthropic-ai/claude-code" in out
    assert "0 of 1 hosts ready; failing: b2 (agent)" in out
    assert "bootstrap.json" in out


def test_unknown_host_is_bad_input(setup):
    proc = run_orch(setup["tmp"], "bootstrap", "nope")
    assert proc.returncode == 2
    assert "no host named 'nope'" in proc.stderr
    assert not (setup["tmp"] / "state" / "bootstrap.json").exists()


def test_repo_access_by_ls_remote(setup):
    tmp = setup["tmp"]
    app = app_for(tmp)
    good, missing = str(setup["repo"]), str(tmp / "no-such-repo.git")
    reports = asyncio.run(bs.run_bootstrap(app, ["b1"], clone_urls=[good, missing]))
    repo = {c.name: c for c in reports[0].checks}["repo"]
    assert repo.status == "fail"
    assert f"{good} reachable" in repo.detail
    assert f"{missing}: fatal:" in repo.detail
    assert "read access" in (repo.fix or "")

    reports = asyncio.run(bs.run_bootstrap(app, ["b1"], clone_urls=[good]))
    assert reports[0].ok

    # --repo OWNER/NAME goes through repo_urls (the URL the job would clone).
    setup["fleet"].write_config(tmp / "orch.yml", agent={"allow_root": True},
                                repo_urls={"octo/api": good, "octo/gone": missing})
    app = app_for(tmp)
    reports = asyncio.run(bs.run_bootstrap(app, ["b1"], repos=["octo/api"]))
    assert reports[0].ok, reports[0].checks
    reports = asyncio.run(bs.run_bootstrap(app, ["b1"], repos=["octo/gone"]))
    repo = {c.name: c for c in reports[0].checks}["repo"]
    assert not repo.ok and repo.detail.startswith("octo/gone: fatal:")

    # Without --repo/--clone-url, the config's repos are checked; none: skipped.
    reports = asyncio.run(bs.run_bootstrap(app, ["b1"]))
    assert {c.name: c for c in reports[0].checks}["repo"].status == "skip"


@pytest.mark.skipif(not IS_ROOT, reason="the root check only bites as root")
def test_root_without_allow_root_fails_with_the_fix(setup):
    tmp = setup["tmp"]
    setup["fleet"].write_config(tmp / "orch.yml")          # allow_root: false (default)
    reports = asyncio.run(bs.run_bootstrap(app_for(tmp), ["b1"]))
    root = {c.name: c for c in reports[0].checks}["root"]
    assert not root.ok and "root" in root.detail
    assert root.fix == ("set agent.allow_root: true in orch.yml (sets IS_SANDBOX=1) "
                        "or use a normal user")
    assert failed_hosts(tmp / "state")["b1"].startswith("bootstrap failed: root: ")


def test_node_check_follows_the_agents_shebang(setup, tmp_path):
    tmp = setup["tmp"]
    node_agent = fake_agent(tmp_path / "nodebin", shebang="#!/usr/bin/env node",
                            body=f"console.log({FAKE_VERSION!r})")
    nodeless = fake_agent(tmp_path / "nodeless", shebang="#!/usr/bin/env orch-missing-node")
    extra = {"b1": {"agent": str(node_agent), "workspace_root": str(tmp / "ws1")},
             "b2": {"agent": str(nodeless), "workspace_root": str(tmp / "ws2")}}
    setup["fleet"].write_inventory(tmp / "hosts.yml", names=["b1", "b2"], extra=extra)
    reports = {r.host: {c.name: c for c in r.checks}
               for r in asyncio.run(bs.run_bootstrap(app_for(tmp), ["b1", "b2"]))}
    if subprocess.run(["sh", "-c", "command -v node"], capture_output=True).returncode == 0:
        assert reports["b1"]["node"].status == "ok", reports["b1"]["node"]
        assert reports["b1"]["node"].detail.startswith("node v")
        assert reports["b1"]["agent"].ok
    assert reports["b2"]["node"].status == "fail"
    assert "orch-missing-node is not found" in reports["b2"]["node"].detail
    assert "Node.js" in (reports["b2"]["node"].fix or "")


def test_unreachable_host_is_reported_and_keeps_its_verdict(setup):
    tmp = setup["tmp"]
    with socket.socket() as s:                    # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import yaml
    inv = yaml.safe_load((tmp / "hosts.yml").read_text())
    inv["hosts"]["dead"] = {"address": "127.0.0.1", "port": port,
                            "specialties": ["backend"], "workspace_root": str(tmp / "wsd")}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    bs.record_reports(tmp / "state", [bs.HostReport(
        "dead", [ck.CheckResult("agent", "fail", "claude not found")], at="earlier")])

    proc = run_orch(tmp, "bootstrap", "--json", "b1", "dead")
    assert proc.returncode == 1
    hosts = by_name(json.loads(proc.stdout))
    assert hosts["b1"]["ok"] is True
    assert hosts["dead"]["ok"] is False and hosts["dead"]["checks"] == []
    assert "refused" in hosts["dead"]["error"]
    # Nothing was learned about `dead`: its last real verdict stands.
    state = load_state(tmp / "state")
    assert state["dead"]["ok"] is False and state["dead"]["at"] == "earlier"
    assert "refused" in state["dead"]["last_error"]
    assert failed_hosts(tmp / "state")["dead"] == "bootstrap failed: agent: claude not found"


def test_values_reach_sh_quoted(setup, tmp_path):
    """A hostile workspace_root is a path, never code."""
    tmp = setup["tmp"]
    marker = tmp_path / "pwned"
    hostile = str(tmp_path / f"ws $(touch {marker}) `touch {marker}`;touch {marker}")
    setup["fleet"].write_inventory(tmp / "hosts.yml", names=["b1"], extra={
        "b1": {"agent": str(setup["agent"]), "workspace_root": hostile}})
    reports = asyncio.run(bs.run_bootstrap(app_for(tmp), ["b1"]))
    assert reports[0].ok, reports[0].checks
    assert not marker.exists()
    assert Path(hostile).is_dir()


# --------------------------------------------------------------------------- pure parts

def test_parse_output_verdicts_noise_and_missing_parts():
    fixes = {"a": "fix a", "b": "fix b", "c": "fix c", "d": "fix d", "e": "fix e"}
    lines = [
        "Welcome to host!",                       # login noise before the script
        ck.BEGIN,
        "::start:: a", "::check:: a ok first", "::check:: a info second", "::exit:: a 0",
        "::start:: b", "some output", "::check:: x ok spoofed", "::exit:: b 3",
        "::start:: c", "::exit:: c 0",
        "::start:: d", "::check:: d skip nothing to do", "::check:: d fail broken", "::exit:: d 0",
        "::start:: e", "::check:: e ok half",
    ]
    results, error = ck.parse_output(lines, list(fixes), fixes, finished=False)
    got = {r.name: r for r in results}
    assert (got["a"].status, got["a"].detail, got["a"].fix) == ("info", "first; second", None)
    assert got["b"].status == "fail" and got["b"].detail.startswith("exit 3: some output")
    assert got["b"].fix == "fix b"
    assert got["c"].status == "ok"
    assert got["d"].status == "fail" and got["d"].detail == "nothing to do; broken"
    assert got["e"].status == "ok"                # its verdict arrived before the cut
    assert error is None                          # finished=False: the caller says why

    results, error = ck.parse_output(lines[:4], ["a", "b"], fixes)
    assert [r.status for r in results] == ["ok", "fail"]
    assert results[1].detail == "did not run"
    assert error == "the bootstrap script stopped before its end"

    results, error = ck.parse_output(["sh: not found"], ["a"], fixes)
    assert error == "the bootstrap script did not run"


def test_every_value_is_quoted_even_without_a_filter(tmp_path):
    """One policy for both playbooks (job/engine.py): a bare `{{ value }}` is quoted, so a
    playbook author who forgets `| q` still cannot hand sh an inventory value as code."""
    pb = tmp_path / "bootstrap.yml"
    host = Host(name="h;touch /tmp/x", address="h", workspace_root="~/w $(id)")
    pb.write_text("- name: ok\n  run: ls {{ workspace_root }} {{ workspace_root | path }} "
                  "{{ host | q }} {{ 5 * 2 }} {{ 'echo; true' | raw }}\n  fix: for {{ host }}\n")
    script, fixes = ck.render_script(ck.load_playbook(pb), host, Settings(), [])
    [check] = ck.render_checks(ck.load_playbook(pb), host, Settings(), [])
    assert shell.quote(check.snippet) in script
    line = next(l for l in check.snippet.splitlines() if l.startswith("ls "))
    assert line == "ls '~/w $(id)' \"$HOME\"/'w $(id)' 'h;touch /tmp/x' 10 echo; true"
    assert fixes == {"ok": "for h;touch /tmp/x"}


def test_render_errors_name_the_file_and_line(tmp_path):
    pb = tmp_path / "bootstrap.yml"
    pb.write_text("checks:\n  - name: a\n    run: |\n      true\n  - name: b\n    run: |\n"
                  "      echo {{ no_such_value }}\n")
    with pytest.raises(ConfigError, match=r"bootstrap.yml:7: check b: .*no_such_value"):
        ck.render_script(ck.load_playbook(pb), Host(name="h", address="h"), Settings(), [])


@pytest.mark.parametrize("text, message", [
    ("checks: [{name: a, run: 'true', fix: x, extra: 1}]", "unknown keys"),
    ("- {name: 'two words', run: 'true'}", "short token"),
    ("- {name: a, run: 'true'}\n- {name: a, run: 'true'}", "duplicate"),
    ("- {name: a}", "expected a sh snippet"),
    ("checks: [\n", "invalid YAML"),
    ("just text", "expected a list of checks"),
])
def test_playbook_mistakes_name_the_file(tmp_path, text, message):
    pb = tmp_path / "bootstrap.yml"
    pb.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        ck.load_playbook(pb)
    assert str(pb) in str(info.value)


def test_shipped_playbook_loads():
    playbook = ck.load_playbook(ck.playbook_path(Settings()))
    assert [c.name for c in playbook.checks] == [
        "git", "agent", "node", "root", "workspace", "disk", "repo", "git-identity"]
    assert playbook.vars["min_free_mb"] == 1024
    assert all(c.fix for c in playbook.checks)


def test_repo_targets_from_options_and_config(github_server, github_forge):
    """The URL of a repo is the one dispatch clones (forge/clone.py): repo_urls, else the
    forge's clone_url (here the GitHub-style server's, for a GitHub Enterprise-like URL)."""
    github_server.add_repo("octo/api", clone_url="https://ghe.example.com/octo/api.git")
    s = Settings()
    s.repos = ["octo/api", "octo/web"]
    s.repo_urls = {"octo/web": "git@github.com:octo/web.git"}
    asked: list[str] = []

    def forge():
        asked.append("forge")
        return github_forge

    assert [(t.label, t.url) for t in bs.repo_targets(s, forge=forge)] == [
        ("octo/api", "https://ghe.example.com/octo/api.git"),
        ("octo/web", "git@github.com:octo/web.git")]
    asked.clear()
    assert bs.repo_targets(s, ["octo/web"], forge=forge)[0].url == "git@github.com:octo/web.git"
    assert asked == []                    # repo_urls answered: no forge (and no token) needed
    with pytest.raises(UsageError, match="not found"):
        bs.repo_targets(s, ["octo/nope"], forge=forge)
    t = bs.repo_targets(s, clone_urls=["https://x:s3cret@example.com/a.git"])[0]
    assert t.label == "https://example.com/a.git"
    assert "s3cret" not in bs.redact("fatal: https://x:s3cret@example.com/a.git gone", [t])
    assert bs.repo_targets(s, ["/srv/git/a.git"])[0].url == "/srv/git/a.git"
    with pytest.raises(UsageError):
        bs.repo_targets(s, clone_urls=["--upload-pack=evil"])
    with pytest.raises(UsageError):
        bs.repo_targets(s, ["not a repo"])


def test_failed_hosts_state_file(tmp_path):
    assert failed_hosts(tmp_path) == {}                     # never bootstrapped
    bs.record_reports(tmp_path, [
        bs.HostReport("a", [ck.CheckResult("git", "ok", "git version 2"),
                            ck.CheckResult("agent", "fail", "claude not found"),
                            ck.CheckResult("disk", "fail", "10 MB free")], at="t1"),
        bs.HostReport("b", [ck.CheckResult("git", "ok", "")], at="t1"),
        bs.HostReport("c", [], error="x", error_kind="refused", at="t1"),
    ])
    assert failed_hosts(tmp_path) == {
        "a": "bootstrap failed: agent: claude not found (and 1 more)"}
    bs.record_reports(tmp_path, [bs.HostReport("a", [ck.CheckResult("git", "ok", "")], at="t2")])
    assert failed_hosts(tmp_path) == {}
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "bootstrap.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupted"):
        failed_hosts(tmp_path)


def test_failed_hosts_feed_the_scheduler(tmp_path):
    from orchestrator.core.models import HostFacts
    from orchestrator.core.schedule import place
    hosts = [Host(name=n, address=n, specialties=("backend",)) for n in ("a", "b")]
    facts = [HostFacts(name=n, address=n, reachable=True, load1=0.1, cpus=4, running_tasks=0)
             for n in ("a", "b")]
    bs.record_reports(tmp_path, [bs.HostReport("a", [ck.CheckResult("git", "fail", "no git")])])
    placement = place("backend", "label", hosts, facts, unhealthy=failed_hosts(tmp_path))
    assert placement.host == "b"
    verdict = next(v for v in placement.verdicts if v.host == "a")
    assert "bootstrap failed: git: no git" in verdict.reason


def _record_one(args: tuple[str, str]) -> None:
    state_dir, name = args
    bs.record_reports(Path(state_dir), [bs.HostReport(name, [ck.CheckResult("git", "fail", name)])])


def test_concurrent_writers_keep_every_host(tmp_path):
    names = [f"h{i}" for i in range(12)]
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.map(_record_one, [(str(tmp_path), n) for n in names])
    assert set(failed_hosts(tmp_path)) == set(names)


def test_disk_minimum_is_a_playbook_var(setup):
    tmp = setup["tmp"]
    proc = run_orch(tmp, "bootstrap", "--json", "--var", "min_free_mb=999999999", "b1")
    assert proc.returncode == 1, proc.stderr
    disk = checks_of(by_name(json.loads(proc.stdout))["b1"])["disk"]
    assert disk["ok"] is False and "below the 999999999 MB minimum" in disk["detail"]
    assert failed_hosts(tmp / "state")["b1"].startswith("bootstrap failed: disk: ")
    proc = run_orch(tmp, "bootstrap", "--var", "min_fre_mb=1", "b1")
    assert proc.returncode == 2 and "unknown playbook var min_fre_mb" in proc.stderr


def test_workspace_must_be_owned_by_the_login_user_and_private(setup, tmp_path):
    """Issue 8 item 9: every task's job.sh and checkout live in workspace_root; another
    user who can write it could swap a job.sh between its upload and its start."""
    tmp = setup["tmp"]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)
    extra = {"b1": {"agent": str(setup["agent"]), "workspace_root": str(shared)},
             "b2": {"agent": str(setup["agent"]), "workspace_root": str(group)},
             "b3": {"agent": str(setup["agent"]), "workspace_root": str(tmp_path / "mine")}}
    if IS_ROOT:
        other = tmp_path / "other"
        other.mkdir(mode=0o755)
        os.chown(other, 65534, 65534)          # nobody's
        extra["b3"]["workspace_root"] = str(other)
    setup["fleet"].write_inventory(tmp / "hosts.yml", extra=extra)
    reports = {r.host: {c.name: c for c in r.checks}
               for r in asyncio.run(bs.run_bootstrap(app_for(tmp)))}
    ws = {h: reports[h]["workspace"] for h in reports}
    assert ws["b1"].status == "fail" and "writable by its group or by everyone (mode 777)" in ws["b1"].detail
    assert ws["b2"].status == "fail" and "(mode 770)" in ws["b2"].detail
    assert "chmod go-w" in (ws["b1"].fix or "")
    if IS_ROOT:
        assert ws["b3"].status == "fail" and "owned by uid 65534" in ws["b3"].detail
    else:
        assert ws["b3"].status == "ok" and "mode 7" in ws["b3"].detail
    shared.chmod(0o700)
    reports = asyncio.run(bs.run_bootstrap(app_for(tmp), ["b1"]))
    workspace = {c.name: c for c in reports[0].checks}["workspace"]
    assert workspace.status == "ok" and "mode 700" in workspace.detail
