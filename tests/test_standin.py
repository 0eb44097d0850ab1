"""The stand-in agent behaves like `claude -p --output-format stream-json --verbose` where
orch depends on it, and does what its directives say, and nothing from the prompt runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core import events as ev
from orchestrator.core.prompts import FIX_PROMPT_TAG
from orchestrator.demo import standin_agent as sa

HEADLESS = ["-p", "--output-format", "stream-json", "--verbose"]


def run(args, prompt="", cwd=None, env=None, timeout=30):
    e = {**os.environ, "IS_SANDBOX": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator.demo.standin_agent", *args],
                          input=prompt, capture_output=True, text=True, cwd=cwd, env=e,
                          timeout=timeout)


def events(stdout: str) -> list:
    return [e for line in stdout.splitlines() for e in ev.parse_line(line)]


def result_of(stdout: str) -> ev.Result:
    found = ev.last_result(stdout.splitlines())
    assert found is not None, stdout
    return found


def test_version_and_flags():
    assert run(["--version"]).stdout.strip() == "2.1.197 (orch stand-in)"
    p = run(["-p", "--output-format", "stream-json"], "hi")
    assert p.returncode == 1 and "requires --verbose" in p.stderr
    assert run(["--output-format", "stream-json", "--verbose"], "hi").returncode == 2
    p = run(HEADLESS, "")
    assert p.returncode == 1 and "Input must be provided" in p.stderr
    assert sa.FIX_PROMPT_TAG == FIX_PROMPT_TAG


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_needs_is_sandbox_for_bypass():
    p = run([*HEADLESS, "--permission-mode", "bypassPermissions"], "hi", env={"IS_SANDBOX": ""})
    assert p.returncode == 1 and "root/sudo" in p.stderr
    assert run([*HEADLESS, "--permission-mode", "bypassPermissions"], "hi").returncode == 0


def test_stream_shape_and_files(tmp_path):
    prompt = ("Issue text.\n"
              "orch-standin: write src/hello.py 'print(\"hi\")\\nprint(2)'\n"
              "orch-standin: append notes.txt first\n"
              "orch-standin: append notes.txt \"second line\"\n"
              "orch-standin: say Looking around\n"
              "  orch-standin: replace src/hello.py hi bye\n"
              "orch-standin: write ../outside.txt nope\n"
              "orch-standin: write /etc/orch-standin-test nope\n")
    p = run([*HEADLESS, "--max-turns", "20", "--model", "m"], prompt, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert all(json.loads(line) for line in lines)     # every line is one JSON object
    evs = events(p.stdout)
    assert isinstance(evs[0], ev.Init) and evs[0].cwd == str(tmp_path)
    assert [e.name for e in evs if isinstance(e, ev.ToolUse)] == ["Write", "Edit", "Edit", "Edit",
                                                                  "Write", "Write"]
    assert sum(1 for e in evs if isinstance(e, ev.ToolResult) and e.is_error) == 2
    assert ev.AssistantText("Looking around") in evs
    r = result_of(p.stdout)
    assert (r.is_error, r.subtype, r.num_turns) == (False, "success", 7)
    assert r.total_cost_usd == pytest.approx(7 * sa.COST_PER_TURN)
    assert (tmp_path / "src/hello.py").read_text() == 'print("bye")\nprint(2)\n'
    assert (tmp_path / "notes.txt").read_text() == "first\nsecond line\n"
    assert not (tmp_path.parent / "outside.txt").exists()
    assert not Path("/etc/orch-standin-test").exists()


def test_prompt_text_is_never_executed(tmp_path):
    canary = tmp_path / "pwned"
    prompt = (f"$(touch {canary}) `touch {canary}`\n"
              f"orch-standin: write out.txt '$(touch {canary}); `touch {canary}`'\n")
    p = run(HEADLESS, prompt, cwd=tmp_path)
    assert p.returncode == 0 and not canary.exists()
    assert (tmp_path / "out.txt").read_text() == f"$(touch {canary}); `touch {canary}`\n"


def test_argv_prompt_and_stdin_are_joined(tmp_path):
    p = run([*HEADLESS, "orch-standin: write a.txt from-argv"], "orch-standin: write b.txt from-stdin",
            cwd=tmp_path)
    assert p.returncode == 0
    assert (tmp_path / "a.txt").read_text() == "from-argv\n" and (tmp_path / "b.txt").exists()


def test_max_turns_like_the_cli(tmp_path):
    p = run([*HEADLESS, "--max-turns", "3"], "orch-standin: turns 10", cwd=tmp_path)
    r = result_of(p.stdout)
    assert p.returncode == 1 and r.is_error and r.subtype == "error_max_turns" and r.num_turns == 4
    assert r.result is None


def test_loop_ignores_max_turns(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.demo.standin_agent", *HEADLESS,
                             "--max-turns", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path, env={**os.environ, "IS_SANDBOX": "1"})
    proc.stdin.write("orch-standin: loop")
    proc.stdin.close()
    users = 0
    for line in proc.stdout:
        users += '"type":"user"' in line
        if users > 10:
            break
    proc.kill()
    proc.wait()
    assert users > 10


def test_results_on_demand(tmp_path):
    r = result_of(run(HEADLESS, "orch-standin: cost 12.5", cwd=tmp_path).stdout)
    assert not r.is_error and r.total_cost_usd == 12.5
    r = result_of(run([*HEADLESS, "--max-budget-usd", "12"], "orch-standin: cost 12.5", cwd=tmp_path).stdout)
    assert not r.is_error and r.total_cost_usd == 12.5     # `cost` ignores the budget on purpose
    p = run([*HEADLESS, "--max-budget-usd", "0.001"], "orch-standin: turns 2", cwd=tmp_path)
    r = result_of(p.stdout)
    assert p.returncode == 1 and r.is_error and r.subtype == "error_max_budget_usd"
    r = result_of(run(HEADLESS, "orch-standin: report-turns 99", cwd=tmp_path).stdout)
    assert r.num_turns == 99
    p = run(HEADLESS, "orch-standin: is-error", cwd=tmp_path)
    r = result_of(p.stdout)
    assert p.returncode == 1 and r.is_error and r.subtype == "success" and "API Error" in r.result


def test_crash_has_no_result(tmp_path):
    p = run(HEADLESS, "orch-standin: crash", cwd=tmp_path)
    assert p.returncode == 3 and "crashing as instructed" in p.stderr
    assert ev.last_result(p.stdout.splitlines()) is None
    assert not p.stdout.endswith("\n")                  # cut mid-line, like a real crash


def test_fail_first_then_fix(tmp_path):
    body = "orch-standin: write feature.txt yes\norch-standin: fail-first\n"
    assert run(HEADLESS, body, cwd=tmp_path).returncode == 0
    assert (tmp_path / sa.PLANTED).exists() and (tmp_path / "feature.txt").exists()
    (tmp_path / "feature.txt").unlink()
    p = run(HEADLESS, f"{FIX_PROMPT_TAG}\nfix it\n\n{body}", cwd=tmp_path)
    assert p.returncode == 0
    assert not (tmp_path / sa.PLANTED).exists()
    assert not (tmp_path / "feature.txt").exists()      # the fix run does not replay the issue


def test_never_fix(tmp_path):
    body = "orch-standin: never-fix\n"
    run(HEADLESS, body, cwd=tmp_path)
    run(HEADLESS, f"{FIX_PROMPT_TAG}\n{body}", cwd=tmp_path)
    assert (tmp_path / sa.PLANTED).exists()


def test_sleep_forever_stops_on_sigint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.demo.standin_agent", *HEADLESS],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "IS_SANDBOX": "1"}, start_new_session=True)
    proc.stdin.write("orch-standin: sleep-forever")
    proc.stdin.close()
    init = json.loads(proc.stdout.readline())
    assert init["pid"] == proc.pid and init["pgid"] == proc.pid
    time.sleep(0.5)
    os.killpg(proc.pid, 2)
    assert proc.wait(10) == 130
    # its `sleep` child went with it (once init has reaped the orphan: lazily on some hosts)
    for _ in range(50):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the stand-in's process group outlived SIGINT")


def test_directive_parsing():
    plan = sa.parse_directives("x\norch-standin: write a 'b c'\n> orch-standin: turns 2\n"
                               "orch-standin: turns 3\norch-standin: cost 1.5\norch-standin: bogus\n"
                               "orch-standin: write onlyone\norch-standin: write 'unclosed\n"
                               "orch-standin: LOOP\nnot orch-standin: write z z\n")
    assert plan.actions == [("write", ["a", "b c"])]
    assert plan.turns == 5 and plan.cost == 1.5 and plan.flags == {"loop"}
    assert len(plan.problems) == 3
    assert sa.unescape(r"a\nb\tc\\n") == "a\nb\tc\\n"


def test_no_directives_changes_nothing(tmp_path):
    p = run(HEADLESS, "Just an issue.", cwd=tmp_path)
    assert p.returncode == 0 and list(tmp_path.iterdir()) == []
    assert "nothing to change" in result_of(p.stdout).result


def test_text_and_json_output(tmp_path):
    assert run(["-p"], "orch-standin: write a x", cwd=tmp_path).stdout.startswith("Stand-in run")
    data = json.loads(run(["-p", "--output-format", "json"], "hi", cwd=tmp_path).stdout)
    assert data["type"] == "result" and data["is_error"] is False


@pytest.mark.parametrize("style", sa.JSON_STYLES)
def test_json_styles_carry_the_same_events(tmp_path, style):
    p = run([*HEADLESS, "--json-style", style], "orch-standin: write a.txt x\n", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [json.loads(l)["type"] for l in lines] == ["system", "assistant", "user", "assistant", "result"]
    if style == "spaced":
        assert all(l.startswith('{"type" : "') for l in lines)
    if style == "reordered":
        assert lines[-1].endswith('"type":"result"}')
    assert result_of(p.stdout).num_turns == 2


def test_init_says_what_came_on_stdin_and_in_argv(tmp_path):
    prompt = "hello on stdin\n"
    p = run([*HEADLESS, "--max-turns", "3"], prompt, cwd=tmp_path)
    init = json.loads(p.stdout.splitlines()[0])
    assert init["argv"] == [*HEADLESS, "--max-turns", "3"]
    assert init["stdin_bytes"] == len(prompt)
    p = subprocess.run([sys.executable, "-m", "orchestrator.demo.standin_agent", *HEADLESS, prompt],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "IS_SANDBOX": "1"}, timeout=30)
    init = json.loads(p.stdout.splitlines()[0])
    assert init["stdin_bytes"] == 0 and init["argv"][-1] == prompt


def test_project_mcp_servers_start_unless_strict(tmp_path):
    marker = tmp_path / "started"
    (tmp_path / ".mcp.json").write_text(json.dumps(
        {"mcpServers": {"m": {"command": "sh", "args": ["-c", f"touch {marker}"]}}}))
    p = run([*HEADLESS, "--strict-mcp-config"], "hi", cwd=tmp_path)
    assert json.loads(p.stdout.splitlines()[0])["mcp_servers"] == [] and not marker.exists()
    p = run(HEADLESS, "hi", cwd=tmp_path)
    assert json.loads(p.stdout.splitlines()[0])["mcp_servers"] == [{"name": "m", "status": "connected"}]
    assert marker.exists()
