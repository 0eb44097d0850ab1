"""`orch demo`: watch an issue become a branch on this machine, with nothing set up.

The demo builds a throwaway world and then runs the very code path of
`orch dispatch ./issue.md --repo PATH` (lifecycle/dispatch.py with the local forge) on the
embedded default host (`connection: local`, workspace under the state dir):

    <workdir>/origin.git    a bare repository: the "remote" the job clones and pushes to
    <workdir>/calc/         a developer's clone of it: calc.py with a bug, test_calc.py
                            whose test_add fails because of it (pushed as `main`)
    <workdir>/issue.md      the issue: front matter (title, labels) and a body that
                            describes the failing test

Nothing in the pipeline knows it is a demo. What the demo sets is configuration only,
on a copy of the user's settings (their orch.yml still counts for everything else):

- hosts: the embedded local host alone, whatever inventory is configured;
- agent.command: the real Claude Code CLI when it is installed and logged in, else the
  stand-in (orchestrator/demo/standin_agent.py, deterministic, not an AI), which follows the
  `orch-standin:` directives that the demo adds to the issue body for it alone;
- tests.command: this Python's `-m pytest -q` (`-m unittest` when pytest is missing),
  since the `python3` on PATH may be one without pytest;
- with the real agent, guard rails for a throwaway run: at most 20 turns and $1;
- as root: agent.allow_root (the demo is a sandbox on the user's own machine).

How "logged in" is decided (cheap, spends nothing, sends nothing): `<agent> --version`
answers, and one of: ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN or ANTHROPIC_AUTH_TOKEN is
set; CLAUDE_CODE_USE_BEDROCK or CLAUDE_CODE_USE_VERTEX is set; a non-empty
`.credentials.json` in $CLAUDE_CONFIG_DIR (default ~/.claude), where Claude Code keeps a
subscription login on Linux; on macOS (login in the Keychain) an `oauthAccount` in
~/.claude.json. A login the check cannot see: `--agent claude` uses the CLI regardless.

The state (task record, local "pull request", log) goes to the user's normal state dir,
or under `--dir` (DIR/state). The repositories go to a fresh directory (under `--dir` when
given) that is removed at the end unless `--keep`, together with the job's cached mirror
of the throwaway origin.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app import App
from ..core.models import Task
from ..errors import UsageError, WorkError

AGENT_CHOICES = ("auto", "standin", "claude")
BASE_BRANCH = "main"
DEMO_AUTHOR = ("orch demo", "orch-demo@localhost")
DEMO_MAX_TURNS = 20
DEMO_MAX_COST_USD = 1.0
LOGIN_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
CLOUD_ENV = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")

ISSUE_TITLE = "add() returns the difference instead of the sum"
ISSUE_LABELS = ("orch", "bug")

CALC_PY = '''"""A tiny calculator: the project of `orch demo`."""


def add(a, b):
    """Return the sum of a and b."""
    return a - b


def mul(a, b):
    """Return the product of a and b."""
    return a * b
'''

TEST_CALC_PY = '''import unittest

from calc import add, mul


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(mul(4, 5), 20)


if __name__ == "__main__":
    unittest.main()
'''

README_MD = """# calc

A throwaway project made by `orch demo`. Run the tests with `python3 -m pytest -q`.
"""

ISSUE_BODY = """`test_calc.py::CalcTest::test_add` fails: `add(2, 3)` returns `-1` instead of `5`.

```
>       self.assertEqual(add(2, 3), 5)
E       AssertionError: -1 != 5
```

Fix `add` in `calc.py` so that the whole test suite passes. Do not change the tests.
"""

# The stand-in's script (see the module docstring of orchestrator.demo.standin_agent). The real
# agent never sees these lines: they are added only when the stand-in runs.
STANDIN_DIRECTIVES = """
<!-- For orch's stand-in agent (the demo runs it when Claude Code is not available): -->
orch-standin: say "Reading calc.py: add() subtracts where it should add."
orch-standin: replace calc.py "return a - b" "return a + b"
"""
FIX_LOOP_DIRECTIVE = "orch-standin: fail-first\n"


# -- the agent ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentChoice:
    kind: str           # "claude" or "standin"
    command: str        # agent.command for the job (shell words)
    reason: str         # one line: why this agent
    version: str | None = None


def claude_login(env: dict[str, str] | os._Environ[str] | None = None,
                 home: Path | None = None) -> str | None:
    """How Claude Code would authenticate here, or None when no login is visible."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    for name in LOGIN_ENV:
        if env.get(name, "").strip():
            return f"{name} is set"
    for name in CLOUD_ENV:
        if env.get(name, "").strip() not in ("", "0", "false"):
            return f"{name} is set"
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude").expanduser()
    creds = config_dir / ".credentials.json"
    try:
        if creds.is_file() and creds.stat().st_size > 2:
            return f"logged in ({creds})"
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            data = json.loads((home / ".claude.json").read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("oauthAccount"):
                return "logged in (macOS Keychain)"
        except (OSError, ValueError):
            pass
    return None


def claude_version(command: str, timeout: float = 20) -> tuple[str | None, str]:
    """(version, "") when `<command> --version` answers, else (None, why not)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None, f"agent.command {command!r} cannot be split into words"
    if not words:
        return None, "agent.command is empty"
    exe = shutil.which(words[0])
    if exe is None:
        return None, f"`{words[0]}` is not installed (not on PATH)"
    try:
        out = subprocess.run([exe, *words[1:], "--version"], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`{words[0]} --version` did not answer ({exc.__class__.__name__})"
    text = (out.stdout.strip() or out.stderr.strip()).splitlines()
    if out.returncode != 0:
        return None, f"`{words[0]} --version` failed (exit {out.returncode})"
    return (text[0] if text else "unknown version"), ""


def standin_command(workdir: Path) -> str:
    """The stand-in as an agent.command: the `orch-standin-agent` console script next to
    this Python, else a two-line wrapper in `workdir` around `python -m`."""
    script = Path(sys.executable).parent / "orch-standin-agent"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    wrapper = workdir / "orch-standin-agent"
    package_parent = Path(__file__).resolve().parents[2]
    wrapper.write_text(
        "#!/bin/sh\n# orch demo: the stand-in agent (orchestrator/demo/standin_agent.py)\n"
        f"PYTHONPATH={shlex.quote(str(package_parent))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f"exec {shlex.quote(sys.executable)} -m orchestrator.demo.standin_agent \"$@\"\n",
        encoding="utf-8")
    wrapper.chmod(0o755)
    return shlex.quote(str(wrapper))


def choose_agent(requested: str, configured: str, workdir: Path,
                 env: dict[str, str] | None = None, home: Path | None = None) -> AgentChoice:
    """auto: the real CLI if it answers and a login is visible, else the stand-in."""
    if requested not in AGENT_CHOICES:
        raise UsageError(f"--agent {requested!r}: expected one of {', '.join(AGENT_CHOICES)}")
    if requested == "standin":
        return AgentChoice("standin", standin_command(workdir), "--agent standin")
    version, why = claude_version(configured)
    if requested == "claude":
        if version is None:
            raise UsageError(f"--agent claude: {why}",
                             hint="install Claude Code (npm install -g @anthropic-ai/claude-code) "
                                  "and log in, or use --agent standin")
        login = claude_login(env, home)
        return AgentChoice("claude", configured, login or "--agent claude (no login seen: "
                           "the agent may refuse)", version)
    if version is None:
        return AgentChoice("standin", standin_command(workdir), why)
    login = claude_login(env, home)
    if login is None:
        first = shlex.split(configured)[0]
        return AgentChoice("standin", standin_command(workdir),
                           f"`{first}` ({version}) is not logged in (no ANTHROPIC_API_KEY, no "
                           f"credentials under ~/.claude; run `{first}` once and /login)")
    return AgentChoice("claude", configured, login, version)


# -- the throwaway world -----------------------------------------------------------------

def _git(args: list[str], cwd: Path | None = None) -> str:
    name, email = DEMO_AUTHOR
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME=name,
               GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email)
    cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false",
           "-c", f"init.defaultBranch={BASE_BRANCH}", *args]
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env,
                             stdin=subprocess.DEVNULL, timeout=60)
    except FileNotFoundError:
        raise WorkError("git is not installed", hint="apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise WorkError(f"git {' '.join(args)} timed out") from None
    if out.returncode != 0:
        detail = (out.stderr.strip() or out.stdout.strip()).splitlines()
        raise WorkError(f"git {' '.join(args)} failed: {detail[-1] if detail else out.returncode}")
    return out.stdout


@dataclass
class World:
    workdir: Path
    origin: Path        # bare: what the job clones and pushes to
    checkout: Path      # the developer's clone
    issue_file: Path


def make_world(workdir: Path, standin: bool, fix_loop: bool = False) -> World:
    """The demo's repositories and issue, in `workdir` (which must exist)."""
    origin = workdir / "origin.git"
    checkout = workdir / "calc"
    _git(["init", "--quiet", "--bare", str(origin)])
    _git(["symbolic-ref", "HEAD", f"refs/heads/{BASE_BRANCH}"], cwd=origin)
    _git(["init", "--quiet", str(checkout)])
    _git(["symbolic-ref", "HEAD", f"refs/heads/{BASE_BRANCH}"], cwd=checkout)
    (checkout / "calc.py").write_text(CALC_PY, encoding="utf-8")
    (checkout / "test_calc.py").write_text(TEST_CALC_PY, encoding="utf-8")
    (checkout / "README.md").write_text(README_MD, encoding="utf-8")
    (checkout / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n", encoding="utf-8")
    _git(["add", "-A"], cwd=checkout)
    _git(["commit", "--quiet", "-m", "calc: add and mul, with tests"], cwd=checkout)
    _git(["remote", "add", "origin", str(origin)], cwd=checkout)
    _git(["push", "--quiet", "origin", f"{BASE_BRANCH}:{BASE_BRANCH}"], cwd=checkout)
    _git(["branch", "--quiet", f"--set-upstream-to=origin/{BASE_BRANCH}"], cwd=checkout)

    body = ISSUE_BODY
    if standin:
        body += STANDIN_DIRECTIVES + (FIX_LOOP_DIRECTIVE if fix_loop else "")
    issue = workdir / "issue.md"
    issue.write_text("---\ntitle: " + json.dumps(ISSUE_TITLE) + "\nlabels: ["
                     + ", ".join(ISSUE_LABELS) + "]\n---\n" + body, encoding="utf-8")
    return World(workdir=workdir, origin=origin, checkout=checkout, issue_file=issue)


def test_command() -> str:
    """This Python's pytest (the demo's tests are unittest-compatible when it is missing)."""
    if importlib.util.find_spec("pytest") is not None:
        return shlex.join([sys.executable, "-m", "pytest", "-q"])
    return shlex.join([sys.executable, "-m", "unittest", "-v"])


def demo_app(base: App, state_dir: Path, agent: AgentChoice) -> tuple[App, list[str]]:
    """An App on the user's settings (a copy) with the demo's configuration; the notes
    say what was set that a user should know about."""
    settings = copy.deepcopy(base.settings)
    notes: list[str] = []
    settings.agent.command = agent.command
    settings.tests.command = test_command()
    if agent.kind == "claude":
        settings.agent.max_turns = min(settings.agent.max_turns, DEMO_MAX_TURNS)
        cap = settings.agent.max_cost_usd
        settings.agent.max_cost_usd = DEMO_MAX_COST_USD if cap is None else min(cap, DEMO_MAX_COST_USD)
        # Jobs inherit only what agent.env_pass names: the login Claude Code would use here.
        passed = [n for n in (*LOGIN_ENV, *CLOUD_ENV, "ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR")
                  if os.environ.get(n) and n not in settings.agent.env_pass]
        if passed:
            settings.agent.env_pass = [*settings.agent.env_pass, *passed]
            notes.append(f"the agent gets {', '.join(passed)} from your environment "
                         "(agent.env_pass), and nothing else of it")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not settings.agent.allow_root:
        settings.agent.allow_root = True
        notes.append("running as root: the demo sets agent.allow_root for itself (the agent gets "
                     "IS_SANDBOX=1); this throwaway sandbox is the only place it applies")
    return base.sandbox(str(state_dir), settings), notes


async def _cancel_live(app: App, repo: str, number: int, say: Callable[[str], None]) -> None:
    from ..errors import OrchError
    from ..lifecycle.control import cancel_task
    live = app.store.live_for(repo, number)
    if live is None:
        return
    try:
        task = await asyncio.wait_for(cancel_task(app, live.id), 30)
        say(f"interrupted: task {task.id} is {task.status} (its job was stopped)")
    except (TimeoutError, OrchError) as exc:
        say(f"interrupted: could not cancel task {live.id}: {exc}")


def refused_local_host(state: Path) -> None:
    """Dispatch never chooses a host whose last `orch bootstrap` failed, and the demo does
    not bend that rule: it says so before building anything, and how to go on."""
    from ..app import LOCAL_HOST_NAME
    from ..fleet.verdicts import failed_hosts
    verdict = failed_hosts(state).get(LOCAL_HOST_NAME)
    if verdict:
        if len(verdict) > 100:
            verdict = verdict[:100].rstrip() + "..."
        raise UsageError(
            f"the {LOCAL_HOST_NAME!r} host failed its last `orch bootstrap` in {state} "
            f"({verdict}), and dispatch never chooses such a host",
            hint="run the demo on a fresh state dir: `orch demo --dir /tmp/orch-demo`; or fix "
                 f"what bootstrap reported and run `orch bootstrap {LOCAL_HOST_NAME}` again")


# -- the run -----------------------------------------------------------------------------

@dataclass
class DemoResult:
    task: Task
    agent: AgentChoice
    world: World
    state_dir: Path
    base: str = BASE_BRANCH
    branch_in_origin: bool = False
    branch_commit: str | None = None
    diff_stat: str = ""
    local: dict[str, str] = field(default_factory=dict)
    kept: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.task.status == "succeeded"

    def to_json(self) -> dict[str, Any]:
        from ..render.shapes import task_json
        task = task_json(self.task)
        if self.local:
            task["local"] = self.local
        return {
            "ok": self.ok, "status": self.task.status, "task_id": self.task.id,
            "branch": self.task.branch, "base": self.base,
            "branch_in_origin": self.branch_in_origin, "commit": self.branch_commit,
            "diff_stat": self.diff_stat, "tests": self.task.tests,
            "turns": self.task.turns, "cost_usd": self.task.cost_usd,
            "agent": {"kind": self.agent.kind, "command": self.agent.command,
                      "reason": self.agent.reason, "version": self.agent.version},
            "workdir": str(self.world.workdir), "origin": str(self.world.origin),
            "checkout": str(self.world.checkout), "issue_file": str(self.world.issue_file),
            "state_dir": str(self.state_dir), "kept": self.kept, "notes": self.notes,
            "task": task,
        }


def _inspect(result: DemoResult) -> None:
    """What the job left in the origin: the branch, its commit, the diff summary."""
    branch = result.task.branch
    if not branch:
        return
    origin = result.world.origin
    try:
        result.branch_commit = _git(["rev-parse", "--verify", "--quiet",
                                     f"refs/heads/{branch}^{{commit}}"], cwd=origin).strip()
    except WorkError:
        return
    result.branch_in_origin = True
    result.diff_stat = _git(["diff", "--stat", f"{result.base}..{branch}"], cwd=origin).rstrip()


def cleanup(app: App | None, workdir: Path) -> None:
    """Remove the throwaway repositories and the job's cached mirror of their origin."""
    from ..job.playbook import mirror_path
    if app is not None:
        root = app.local_host().workspace_root
        mirror = Path(mirror_path(f"{root}/task", str(workdir / "origin.git")))
        shutil.rmtree(mirror, ignore_errors=True)
        Path(str(mirror) + ".lock").unlink(missing_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)


async def run_demo(base: App, *, agent: str = "auto", directory: str | None = None,
                   keep: bool = False, fix_loop: bool = False,
                   state_dir: str | None = None,
                   say: Callable[[str], None] = lambda _m: None,
                   on_line: Callable[[str], None] | None = None,
                   on_notice: Callable[[str], None] | None = None) -> DemoResult:
    """Build the world, dispatch its issue through the pipeline, inspect the origin.

    `say` gets the demo's own one-line notes (agent choice, root, where things are).
    """
    from ..lifecycle.dispatch import dispatch

    if directory is not None:
        parent = Path(directory).expanduser().resolve()
        parent.mkdir(parents=True, exist_ok=True)
    else:
        parent = None
    state = Path(state_dir).expanduser() if state_dir else \
        (parent / "state" if parent is not None else base.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    refused_local_host(state)
    workdir = Path(tempfile.mkdtemp(prefix="orch-demo-", dir=parent)).resolve()
    result: DemoResult | None = None
    app: App | None = None
    try:
        choice = choose_agent(agent, base.settings.agent.command, workdir)
        if fix_loop and choice.kind != "standin":
            if agent == "claude":
                raise UsageError("--fix-loop drives the stand-in agent; it cannot be used with "
                                 "--agent claude")
            choice = AgentChoice("standin", standin_command(workdir), "--fix-loop asks for it")
        app, notes = demo_app(base, state, choice)
        if choice.kind == "standin":
            say(f"agent: the orch stand-in (deterministic, not an AI) because {choice.reason}; "
                f"it applies the fix written in the issue")
        else:
            limits = app.settings.agent
            say(f"agent: Claude Code {choice.version} ({choice.reason}); this spends real "
                f"money: at most {limits.max_turns} turns and ${limits.max_cost_usd:.2f}")
        for note in notes:
            say(f"note: {note}")
        world = make_world(workdir, standin=choice.kind == "standin", fix_loop=fix_loop)
        say(f"a throwaway project in {world.checkout} (origin {world.origin}); "
            f"its test_add fails; the issue is {world.issue_file}")
        forge = app.forge("local")
        repo, number = forge.register(world.issue_file, str(world.origin))
        try:
            outcome = await dispatch(app, forge, repo, number, on_line=on_line,
                                     on_notice=on_notice)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C: the job is detached and would outlive us; it is the demo's, so stop it
            # (before its repositories are removed under it).
            await _cancel_live(app, repo, number, say)
            raise
        assert outcome.task is not None
        result = DemoResult(task=outcome.task, agent=choice, world=world, state_dir=state,
                            notes=notes, kept=keep)
        _inspect(result)
        if result.task.branch:
            result.local = forge.describe(repo, number, result.task.branch)
        return result
    finally:
        if not keep:
            cleanup(app, workdir)
