"""`orch demo` end to end, offline: the real CLI in a subprocess, real git, the local host,
the stand-in agent. What counts is what the demo leaves in its origin repository: a
branch whose commit makes the failing test pass."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.demo import run as demo_mod


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCH_", "ANTHROPIC_", "CLAUDE_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), ORCH_HOME=str(tmp_path / "orch-home"), NO_COLOR="1",
               COLUMNS="200")
    env.update(extra)
    return env


def orch(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cwd = tmp_path / "cwd"          # no orch.yml, no inventory/ here
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd,
                          env=env or _env(tmp_path), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def pytest_in(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_demo_ends_with_a_branch_whose_commit_makes_the_failing_test_pass(tmp_path):
    demo_dir = tmp_path / "demo"
    r = orch(tmp_path, "demo", "--agent", "standin", "--dir", str(demo_dir), "--keep", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    # Only the JSON document is on stdout; the demo's notes went to stderr.
    assert "stand-in" in r.stderr
    if os.geteuid() == 0:
        assert "allow_root" in r.stderr

    assert out["ok"] is True and out["status"] == "succeeded"
    branch = out["branch"]
    assert branch.startswith("orch/1-add-returns-the-difference")
    origin = Path(out["origin"])
    assert origin.is_dir() and Path(out["workdir"]).parent == demo_dir.resolve()
    heads = git("for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=origin).split()
    assert sorted(heads) == sorted(["main", branch])
    assert out["branch_in_origin"] and out["commit"] == git("rev-parse", branch, cwd=origin).strip()
    # One commit on top of main, touching calc.py only.
    assert git("rev-list", "--count", f"main..{branch}", cwd=origin).strip() == "1"
    assert git("diff", "--name-only", f"main..{branch}", cwd=origin).split() == ["calc.py"]
    assert "calc.py" in out["diff_stat"] and "1 file changed" in out["diff_stat"]

    # Its commit makes the failing test pass: the suite fails on main, passes on the branch.
    wt = tmp_path / "wt"
    git("clone", "--quiet", str(origin), str(wt), cwd=tmp_path)
    before = pytest_in(wt)
    assert before.returncode == 1, before.stdout
    assert "test_add" in before.stdout and "1 failed, 1 passed" in before.stdout
    git("checkout", "--quiet", branch, cwd=wt)
    after = pytest_in(wt)
    assert after.returncode == 0, after.stdout
    assert "2 passed" in after.stdout
    assert "return a + b" in (wt / "calc.py").read_text()

    # The task record: succeeded, with turns, cost and the test result.
    task = out["task"]
    assert task["status"] == "succeeded" and task["host"] == "local" and task["forge"] == "local"
    assert task["tests"] == "passed" and out["tests"] == "passed"
    assert task["turns"] and task["turns"] > 0
    assert task["cost_usd"] is not None and task["cost_usd"] > 0
    assert task["commit"] == out["commit"]
    assert "pull request" in task["local"] and branch in task["local"]["pull request"]

    # It is a real task in the state dir (DIR/state): `orch show` finds it there.
    state = demo_dir / "state"
    assert Path(out["state_dir"]) == state
    shown = orch(tmp_path, "--state-dir", str(state), "show", out["task_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"
    # --keep kept the project and its issue; the successful job's workspace is gone.
    assert Path(out["checkout"], "calc.py").is_file() and Path(out["issue_file"]).is_file()
    assert not Path(task["workspace"]).exists()


def test_demo_human_output_streams_the_log_and_ends_with_branch_diff_and_task(tmp_path):
    """--agent auto with no `claude` on PATH: one line says why the stand-in is used."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    env = _env(tmp_path)
    env["PATH"] = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    if shutil.which("claude", path=env["PATH"]) is not None:
        pytest.skip("a `claude` in /usr/bin or /bin: auto would not fall back to the stand-in")
    r = orch(tmp_path, "demo", "--dir", str(tmp_path / "demo"), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout
    standin_lines = [ln for ln in text.splitlines() if "stand-in" in ln and "agent:" in ln]
    assert len(standin_lines) == 1, text
    assert "`claude` is not installed" in standin_lines[0]
    # The live log went by: job steps, the agent's words, the test run.
    for expected in ("clone", "add() subtracts", "2 passed", "push"):
        assert expected in text, expected
    # The ending: branch, diff summary, test result, the task record.
    tail = text[text.index("the outcome"):]
    assert "branch   orch/1-add-returns-the-difference" in tail
    assert "calc.py | 2 +-" in tail and "1 file changed" in tail
    assert "tests    passed" in tail
    assert "succeeded" in tail and "pull request" in tail
    # Without --keep the throwaway repositories and the job's mirror are removed.
    demo_dir = tmp_path / "demo"
    assert [p.name for p in demo_dir.iterdir()] == ["state"]
    assert list((demo_dir / "state" / "work" / ".mirrors").glob("*.git")) == []


def test_demo_fix_loop_fails_first_then_the_fix_run_makes_the_tests_pass(tmp_path):
    r = orch(tmp_path, "demo", "--agent", "standin", "--fix-loop", "--dir", str(tmp_path / "d"),
             "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "succeeded" and out["tests"] == "passed"
    log = Path(out["task"]["log_path"]).read_text()
    assert "::orch:: tests failed" in log
    assert "agent run 2 (fix attempt 1 of 2)" in log
    assert log.count("::orch:: tests running") == 2
    # The planted failing test was removed again; the commit is the fix alone.
    assert "test_orch_standin_planted.py" not in out["diff_stat"]
    assert "calc.py" in out["diff_stat"]
    assert out["turns"] > 3


def test_demo_exits_1_when_the_task_fails(tmp_path):
    """The user's orch.yml still counts: no fix attempts, so the planted test fails the task."""
    cfg = tmp_path / "orch.yml"
    cfg.write_text("tests:\n  max_fix_attempts: 0\n")
    r = orch(tmp_path, "--config", str(cfg), "demo", "--agent", "standin", "--fix-loop",
             "--dir", str(tmp_path / "d"), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["status"] == "failed"
    assert "tests still failing" in out["task"]["error"]
    assert out["branch_in_origin"] is False and out["tests"] == "failed"
    assert not Path(out["workdir"]).exists()
    assert list((tmp_path / "d" / "state" / "work" / ".mirrors").glob("*.git")) == []
    # The failed job's workspace is kept for inspection, as for any failed task.
    assert Path(out["task"]["workspace"], "job.log").is_file()


# -- the agent choice, without running anything but a fake `claude --version` -------------

def _fake_claude(tmp_path: Path, rc: int = 0) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "claude"
    exe.write_text(f"#!/bin/sh\necho '2.1.197 (Claude Code)'\nexit {rc}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_choose_agent_auto(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    none: dict[str, str] = {}

    c = demo_mod.choose_agent("auto", "claude", work, env=none, home=home)
    assert c.kind == "standin" and "not installed" in c.reason
    # The stand-in command answers like the CLI does.
    v = subprocess.run([*shlex.split(c.command), "--version"],
                       capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and "stand-in" in v.stdout

    monkeypatch.setenv("PATH", f"{_fake_claude(tmp_path)}:/usr/bin:/bin")
    c = demo_mod.choose_agent("auto", "claude", work, env=none, home=home)
    assert c.kind == "standin" and "not logged in" in c.reason and "2.1.197" in c.reason

    c = demo_mod.choose_agent("auto", "claude", work, env={"ANTHROPIC_API_KEY": "x"}, home=home)
    assert (c.kind, c.command, c.reason) == ("claude", "claude", "ANTHROPIC_API_KEY is set")

    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text('{"claudeAiOauth": {}}')
    c = demo_mod.choose_agent("auto", "claude", work, env=none, home=home)
    assert c.kind == "claude" and ".credentials.json" in c.reason

    # --agent claude is refused when the CLI does not answer; standin never looks.
    _fake_claude(tmp_path, rc=1)
    with pytest.raises(demo_mod.UsageError, match="failed"):
        demo_mod.choose_agent("claude", "claude", work, env=none, home=home)
    assert demo_mod.choose_agent("standin", "claude", work, env=none, home=home).kind == "standin"


def test_two_demos_in_one_state_dir_keep_their_own_issue(tmp_path):
    """Each demo's issue is #1 of its own origin, with the same title: the second must not
    overwrite the first one's issue file (the local forge used to, by file name)."""
    d = tmp_path / "d"
    first = json.loads(orch(tmp_path, "demo", "--agent", "standin", "--dir", str(d), "--keep",
                            "--json").stdout)
    second = json.loads(orch(tmp_path, "demo", "--agent", "standin", "--dir", str(d), "--keep",
                             "--json").stdout)
    assert first["ok"] and second["ok"] and first["origin"] != second["origin"]
    state = d / "state"
    for out in (first, second):
        shown = orch(tmp_path, "--state-dir", str(state), "show", out["task_id"], "--json")
        local = json.loads(shown.stdout)["local"]
        issue = Path(local["issue file"].removeprefix("file://"))
        assert issue.is_file() and f"repo: {out['origin']}" in issue.read_text()
    assert len(list((state / "issues").glob("*.md"))) == 2


def test_demo_refuses_a_local_host_that_failed_bootstrap_before_building_anything(tmp_path):
    home = tmp_path / "orch-home"
    home.mkdir()
    (home / "bootstrap.json").write_text(json.dumps({"version": 1, "hosts": {"local": {
        "ok": False, "at": "2024-01-01T00:00:00Z", "error": None,
        "failed": [{"name": "agent", "detail": "claude not found"}]}}}))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    r = orch(tmp_path, "demo", "--agent", "standin", env=_env(tmp_path, TMPDIR=str(tmpdir)))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "failed its last `orch bootstrap`" in r.stderr and "claude not found" in r.stderr
    assert "orch demo --dir" in r.stderr
    assert list(tmpdir.iterdir()) == [] and not (home / "state.json").exists()
    assert not (home / "issues").exists()


def test_ctrl_c_cancels_the_demo_task_and_stops_its_job(tmp_path):
    """A `claude` that never answers (a fake on PATH, 'logged in' by ANTHROPIC_API_KEY):
    Ctrl-C must not leave the detached job running, nor hang until it ends."""
    import signal
    import time
    fake = tmp_path / "fakebin"
    fake.mkdir()
    pidfile = tmp_path / "agent.pid"
    (fake / "claude").write_text(
        "#!/bin/sh\ncase \"$*\" in *--version*) echo '2.1.197 (fake)'; exit 0;; esac\n"
        f"echo $$ > {pidfile}\ncat > /dev/null\nexec sleep 300\n")
    (fake / "claude").chmod(0o755)
    env = _env(tmp_path, ANTHROPIC_API_KEY="fake-key-for-the-test")
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    d = tmp_path / "d"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "demo", "--dir", str(d)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pidfile.exists(), "the fake agent never started"
        agent_pid = int(pidfile.read_text())
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "Claude Code 2.1.197 (fake)" in out and "interrupted: task" in out, out
    assert "cancelled" in out
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)
    state = json.loads((d / "state" / "state.json").read_text())
    [task] = state["tasks"].values()
    assert task["status"] == "cancelled"
    assert [p.name for p in d.iterdir()] == ["state"]
    assert list((d / "state" / "work" / ".mirrors").glob("*.git")) == []
