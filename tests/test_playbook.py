"""job.sh rendering, checked without running it: every value reaches the script quoted,
and parses back (as sh would read it) to exactly the value given."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError, UsageError
from orchestrator.job.playbook import (
    JobSpec,
    mirror_path,
    parse_author,
    render_job,
    valid_branch,
)
from orchestrator.job.steps import load_playbook

HOSTILE = "$(touch /tmp/orch-pwned); `id` ${HOME} \"'\\ \n; rm -rf ~ #\t\u202e✓ EOF\n'EOF'"


def spec(**kw) -> JobSpec:
    values = dict(task_id="abcd1234", workspace="~/orch-work/abcd1234",
                  clone_url="https://github.com/acme/calc.git", branch="orch/7-add-a-greeting",
                  commit_message="Add a greeting (#7)\n")
    values.update(kw)
    return JobSpec(**values)


def assigned(script: str, name: str) -> str:
    """The value of `NAME=...` as sh would read it (shlex in POSIX mode, same rules)."""
    start = script.index(f"\n{name}=") + 1
    lexer = shlex.shlex(script[start:], posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    token = lexer.get_token()
    assert token is not None and token.startswith(f"{name}=")
    return token[len(name) + 1:]


def test_values_round_trip_through_quoting():
    name = HOSTILE.splitlines()[0]               # an author name is one line
    s = spec(task_id=HOSTILE, clone_url=HOSTILE, commit_message=HOSTILE, model=HOSTILE,
             permission_mode=HOSTILE, test_command=HOSTILE, git_author=f"{name} <a@b>")
    script = render_job(s)
    for var in ("TASK_ID", "CLONE_URL", "COMMIT_MESSAGE", "MODEL", "PERMISSION_MODE", "TEST_COMMAND"):
        assert assigned(script, var) == HOSTILE, var
    assert assigned(script, "AUTHOR_NAME") == name.strip()
    assert assigned(script, "AUTHOR_EMAIL") == "a@b"


def words_after(script: str, prefix: str, n: int) -> list[str]:
    lexer = shlex.shlex(script[script.index(prefix):], posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return [lexer.get_token() for _ in range(n)]


def test_agent_env_and_command_words_are_quoted():
    s = spec(agent_env={"FOO": HOSTILE, "BAR_2": "x y"}, agent_command="'/opt/my agent/claude' --flag")
    script = render_job(s)
    assert words_after(script, "'FOO=", 1) == [f"FOO={HOSTILE}"]
    assert words_after(script, "'BAR_2=", 1) == ["BAR_2=x y"]
    # the program is resolved on the host (AGENT_PATH, core/agentpath.py); its arguments follow
    assert words_after(script, '"$@" "$AGENT_PATH"', 4) == ["$@", "$AGENT_PATH", "--flag", "-p"]
    assert assigned(script, "AGENT_PROGRAM") == "/opt/my agent/claude"
    script = render_job(spec(agent_command="npx '@anthropic-ai/claude-code' $(id)"))
    assert words_after(script, '"$@" "$AGENT_PATH"', 5) == \
        ["$@", "$AGENT_PATH", "@anthropic-ai/claude-code", "$(id)", "-p"]


def test_agent_is_invoked_as_spec_says():
    script = render_job(spec(model="claude-sonnet-4", max_turns=12, max_cost_usd=2.5))
    assert ('-p --output-format stream-json --verbose --max-turns "$MAX_TURNS"') in script
    assert '--model "$MODEL"' in script and '--permission-mode "$PERMISSION_MODE"' in script
    assert '--max-budget-usd "$a_budget"' in script
    assert "--setting-sources user --strict-mcp-config" in script
    assert "DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1" in script
    assert '< "$g_in"' in script                    # the prompt goes on stdin
    assert assigned(script, "MAX_TURNS") == "12"
    assert assigned(script, "MAX_COST_MICROS") == "2500000"
    assert assigned(script, "MODEL") == "claude-sonnet-4"


def test_defaults_and_none():
    script = render_job(spec(max_cost_usd=None, base_branch=None, model=None, test_command=None,
                             use_mirror=False, agent_timeout=90.2, allow_root=True))
    for name in ("MAX_COST_MICROS", "BASE_BRANCH", "MODEL", "TEST_COMMAND", "MIRROR"):
        assert assigned(script, name) == "", name
    assert assigned(script, "AGENT_TIMEOUT") == "91"
    assert assigned(script, "ALLOW_ROOT") == "1"


def test_paths_keep_home():
    script = render_job(spec(workspace="~/orch work/abcd1234"))
    assert "\nWS=\"$HOME\"/'orch work/abcd1234'\n" in script
    assert "\nMIRROR=\"$HOME\"/'orch work/.mirrors/calc-" in script
    assert render_job(spec(workspace="/srv/orch/abcd1234")).count("\nWS=/srv/orch/abcd1234\n") == 1


def test_mirror_path():
    p = mirror_path("~/orch-work/t1", "git@github.com:acme/Calc.git")
    assert p.startswith("~/orch-work/.mirrors/calc-") and p.endswith(".git")
    assert mirror_path("/w/t1", "https://x/acme/calc.git") != mirror_path("/w/t1", "https://y/acme/calc.git")


def test_the_script_ends_by_calling_main_and_runs_the_steps_in_order():
    script = render_job(spec())
    assert script.rstrip().endswith('orch_main "$@"')
    order = [l.split()[1] for l in script.splitlines() if l.startswith("  run_step ")]
    assert order == ["prepare", "clone", "branch", "detect-tests", "merge", "agent", "tests", "commit",
                     "push", "report"]
    assert script.startswith("#!/bin/sh\n")


@pytest.mark.skipif(not shutil.which("dash"), reason="dash not installed")
def test_dash_accepts_the_script():
    script = render_job(spec(commit_message=HOSTILE, agent_env={"A": HOSTILE}))
    proc = subprocess.run(["dash", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_invalid_inputs_are_refused():
    with pytest.raises(UsageError, match="branch"):
        render_job(spec(branch="orch/$(id)"))
    with pytest.raises(UsageError, match="branch"):
        render_job(spec(base_branch="-x"))
    with pytest.raises(UsageError, match="environment variable"):
        render_job(spec(agent_env={"BAD-NAME": "x"}))
    with pytest.raises(UsageError, match="Name <email>"):
        render_job(spec(git_author="no email here"))
    with pytest.raises(UsageError, match="agent.command"):
        render_job(spec(agent_command="  "))
    for ws in ("~", "/", "~/", "/a/../b", "x"):
        with pytest.raises(UsageError, match="workspace"):
            render_job(spec(workspace=ws))


def test_branch_names_and_authors():
    assert valid_branch("orch/12-fix-the-thing") and valid_branch("main")
    for bad in ("", "-x", "a..b", "a//b", "a.lock", "a/", "a b", "a~1", "a^", "a:b", "x@{1}", ".a"):
        assert not valid_branch(bad), bad
    assert parse_author("orch <orch@localhost>") == ("orch", "orch@localhost")
    assert parse_author("  Jane Q. Dev  <jane@example.com> ") == ("Jane Q. Dev", "jane@example.com")


def test_from_settings():
    s = Settings()
    s.agent.max_turns, s.agent.model, s.agent.env = 9, "m", {"X": "1"}
    s.tests.command, s.git.author = "make check", "Bot <bot@x>"
    js = JobSpec.from_settings(s, task_id="t", workspace="/w/t", clone_url="u", branch="orch/1-x",
                               commit_message="m", agent_command="/opt/claude")
    assert (js.max_turns, js.model, dict(js.agent_env), js.test_command, js.git_author,
            js.agent_command, js.agent_timeout) == (9, "m", {"X": "1"}, "make check", "Bot <bot@x>",
                                                    "/opt/claude", s.agent.timeout)


# --------------------------------------------------------------------------- user playbooks


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dispatch.yml"
    p.write_text(text)
    return p


SHIPPED = Path(__file__).resolve().parent.parent / "playbooks" / "dispatch.yml"


def test_a_user_step_is_added_without_python(tmp_path):
    text = SHIPPED.read_text().replace(
        "  - name: detect-tests\n",
        "  - name: deps\n    run: |\n      npm ci --prefix {{ spec.workspace | path }}\n\n"
        "  - name: detect-tests\n")
    script = render_job(spec(), write(tmp_path, text))
    order = [l.split()[1] for l in script.splitlines() if l.startswith("  run_step ")]
    assert order.index("deps") == order.index("branch") + 1
    assert 'npm ci --prefix "$HOME"/orch-work/abcd1234' in script


def test_every_expression_is_quoted_even_without_a_filter(tmp_path):
    pb = write(tmp_path, "prelude: ''\nsteps:\n  - name: s\n    run: |\n"
                         "      echo {{ spec.commit_message }} {{ spec.commit_message | q }} "
                         "{{ 'ok; true' | raw }}\n      finish succeeded\n")
    script = render_job(spec(commit_message="$(id); x"), pb)
    line = next(l for l in script.splitlines() if l.strip().startswith("echo "))
    assert line.strip() == "echo '$(id); x' '$(id); x' ok; true"


def test_template_errors_name_file_and_line(tmp_path):
    pb = write(tmp_path, "prelude: |\n  A=1\nsteps:\n  - name: s\n    run: |\n      echo ok\n"
                         "      echo {{ spec.no_such_field }}\n")
    with pytest.raises(ConfigError, match=r"dispatch.yml:6: step s: .*no_such_field"):
        render_job(spec(), pb)
    pb = write(tmp_path, "steps:\n  - name: s\n    run: |\n      echo ok\n      echo {{ oops\n")
    with pytest.raises(ConfigError, match=r"dispatch.yml:5: step s"):
        render_job(spec(), pb)


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a mapping"),
    ("steps:\n  - name: a\n", "needs `name:` and `run:`"),
    ("steps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n", "unique"),
    ("steps:\n  - {name: 'a b', run: x}\n", "unique simple word"),
    ("steps:\n  - {name: a, run: x, when: y}\n", "unknown key"),
    ("steps: [\n", "invalid YAML"),
    ("prelude: [1]\nsteps: []\n", "must be text"),
])
def test_bad_playbooks(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_playbook(write(tmp_path, text))


def test_missing_playbook(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        render_job(spec(), tmp_path / "nope.yml")
