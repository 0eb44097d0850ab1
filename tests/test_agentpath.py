"""core/agentpath.py: the one rule for where the agent is, run under dash with a HOME and a
PATH of the test's own (the rule is shell code: it is tested as shell code).

The probe, bootstrap and the job embed the same function; tests/test_agent_hosts.py runs
all three on real sshd hosts against the same layouts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.core import agentpath, shell
from orchestrator.errors import UsageError

DASH = shutil.which("dash") or "/bin/sh"


def executable(path: Path, text: str = "#!/bin/sh\necho 2.1.197 '(Claude Code)'\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def box(tmp_path):
    """A HOME, an empty bin/ for PATH (plus the system's for sh utilities), no npm."""
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Just what the rule needs, so that no npm (and no claude) of this machine is seen.
    for tool in ("sh", "cat", "stat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return {"home": home, "bin": bin_dir, "tmp": tmp_path}


def find(box, word: str, *, path_extra: str = "") -> tuple[int, dict[str, str]]:
    script = (agentpath.FIND_AGENT_SH + f"orch_find_agent {shell.quote(word)}\nrc=$?\n"
              'printf "rc=%s\\npath=%s\\nby=%s\\nlooked=%s\\n" "$rc" "$AGENT_PATH" '
              '"$AGENT_FOUND_BY" "$AGENT_LOOKED"\n')
    env = {"HOME": str(box["home"]), "PATH": f"{path_extra}{box['bin']}"}
    proc = subprocess.run([DASH, "-c", script], env=env, capture_output=True, text=True,
                          timeout=30, cwd=box["tmp"])
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    return int(out.pop("rc")), out


def test_tilde_is_the_login_users_home(box):
    agent = executable(box["home"] / ".local" / "bin" / "claude")
    assert find(box, "~/.local/bin/claude") == (0, {"path": str(agent), "by": "path", "looked": ""})
    rc, out = find(box, "~/nowhere/claude")
    assert rc == 1 and out["looked"] == f"{box['home']}/nowhere/claude (no executable file there)"
    rc, out = find(box, "~other/claude")          # only ~ and ~/: no other user's home
    assert rc == 1 and out["looked"].startswith("~other/claude")


def test_a_bare_name_on_the_path_wins(box):
    on_path = executable(box["bin"] / "claude")
    executable(box["home"] / ".local" / "bin" / "claude")
    assert find(box, "claude")[1] == {"path": str(on_path), "by": "PATH", "looked": ""}


@pytest.mark.parametrize("where", [".local/bin", ".claude/local"])
def test_a_bare_name_off_the_path_is_found_where_the_installers_put_it(box, where):
    agent = executable(box["home"] / where / "claude")
    rc, out = find(box, "claude")
    assert rc == 0 and out["path"] == str(agent) and out["by"] == str(box["home"] / where)


def test_the_native_installers_place_comes_first(box):
    first = executable(box["home"] / ".local" / "bin" / "claude")
    executable(box["home"] / ".claude" / "local" / "claude")
    assert find(box, "claude")[1]["path"] == str(first)


def test_npm_global_bin_is_the_last_resort(box):
    prefix = box["tmp"] / "npm-global"
    agent = executable(prefix / "bin" / "claude")
    executable(box["bin"] / "npm", f"#!/bin/sh\n[ \"$*\" = 'prefix -g' ] && echo {prefix}\n")
    rc, out = find(box, "claude")
    assert rc == 0 and out == {"path": str(agent), "by": "npm", "looked":
                               f"PATH ({box['bin']}), {box['home']}/.local/bin, {box['home']}/.claude/local"}
    local = executable(box["home"] / ".local" / "bin" / "claude")
    assert find(box, "claude")[1]["path"] == str(local)


def test_nothing_anywhere_lists_every_place_looked_at(box):
    rc, out = find(box, "claude")
    assert rc == 1 and out["path"] == ""
    assert out["looked"] == (f"PATH ({box['bin']}), {box['home']}/.local/bin, "
                             f"{box['home']}/.claude/local (and no npm for its global bin)")
    executable(box["bin"] / "npm", "#!/bin/sh\necho /nonexistent/prefix\n")
    rc, out = find(box, "claude")
    assert rc == 1 and out["looked"].endswith(", /nonexistent/prefix/bin")


def test_directories_and_unexecutable_files_are_not_agents(box):
    (box["home"] / ".local" / "bin" / "claude").mkdir(parents=True)
    plain = box["home"] / ".claude" / "local" / "claude"
    plain.parent.mkdir(parents=True)
    plain.write_text("not executable\n")
    assert find(box, "claude")[0] == 1
    assert find(box, str(plain))[0] == 1
    assert find(box, str(box["home"]))[0] == 1


def test_hostile_words_are_names_never_code(box):
    marker = box["tmp"] / "pwned"
    for word in (f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}", "-v", "*"):
        rc, _ = find(box, word)
        assert rc == 1, word
    assert not marker.exists()


def test_words_of_a_command():
    assert agentpath.words("claude") == ["claude"]
    assert agentpath.words("npx @anthropic-ai/claude-code") == ["npx", "@anthropic-ai/claude-code"]
    assert agentpath.words("'/opt/my agent/claude' --flag") == ["/opt/my agent/claude", "--flag"]
    assert agentpath.set_words_sh("~/bin/a 'b c'") == "set -- '~/bin/a' 'b c'"
    for bad in ("", "  ", "'unclosed"):
        with pytest.raises(UsageError):
            agentpath.words(bad)
