"""JobSpec + playbooks/dispatch.yml -> job.sh (no I/O but reading the playbook: job/steps.py).

The remote job is data the user can edit (a YAML list of named steps whose bodies are
Jinja2 templates), so adding `npm ci` needs no Python. Safety does not depend on the
playbook's author remembering to quote: every `{{ expression }}` is shell-quoted unless
it went through `q`, `path` or `raw`, which mark their output as already shell text.
Undefined variables are errors, so a typo fails at render time, not on a host.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.settings import GIT_VIA, AgentSettings, GitSettings, Settings, TestsSettings
from ..core import agentpath, shell
from ..core.prompts import TEST_OUTPUT_MARKER
from ..errors import UsageError
from . import credentials, engine
from .steps import Compiled, compiled

DEFAULT_PLAYBOOK = "dispatch.yml"
# plan: the agent only answers, in plan mode (no edits): no tests, commit or push
JOB_MODES = ("work", "integrate", "plan")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")   # what finalize records
_AUTHOR = re.compile(r"^\s*([^<>\n]*?)\s*<([^<>\s]+)>\s*$")


@dataclass(frozen=True)
class JobSpec:
    """Everything one remote job needs; the orchestrator builds it, job.sh enforces it.

    `workspace` is the task's directory on the host (may start with ~/). `base_branch`
    None means the remote's default branch, `test_command` None means detect on the host
    (a repo's `.orch.yml` `test_command:`, then pytest / npm test / make test).
    `commit_message` may contain the issue's untrusted text: it is only ever quoted.

    Build it with `from_settings` (the one way orch does): the settings' values are
    orch.yml's. The defaults below are the settings' own defaults (config/settings.py,
    the one place they are written), for tests that build a JobSpec by hand.
    """

    task_id: str
    workspace: str
    clone_url: str
    branch: str
    commit_message: str
    base_branch: str | None = None
    agent_command: str = AgentSettings.command      # split into words: "python3 -m x" works (core/agentpath.py)
    max_turns: int = AgentSettings.max_turns
    model: str | None = AgentSettings.model
    permission_mode: str | None = AgentSettings.permission_mode
    max_cost_usd: float | None = AgentSettings.max_cost_usd   # per task, summed over agent runs
    agent_timeout: float = AgentSettings.timeout    # seconds, per agent run
    allow_root: bool = AgentSettings.allow_root
    agent_env: Mapping[str, str] = field(default_factory=dict, hash=False)
    # agent.credentials' names: their values reach job.sh on its stdin (job/credentials.py)
    credential_names: tuple[str, ...] = ()
    test_command: str | None = TestsSettings.command
    test_timeout: float = TestsSettings.timeout
    max_fix_attempts: int = TestsSettings.max_fix_attempts
    git_author: str = GitSettings.author
    git_via: str = GitSettings.via       # orch: the host's mirror is all the job's git sees
    use_mirror: bool = True              # a shared bare mirror per repo under <root>/.mirrors
    kill_grace: float = 3.0              # seconds between SIGINT, SIGTERM and SIGKILL
    result_grace: int = 15               # seconds an agent may linger after its result
    test_tail_lines: int = 200           # failing output lines given to the fix run
    start_from_branch: bool = False      # a follow-up: `branch` exists; add commits, push with a lease
    resume_session: str | None = None    # the agent session to resume if its transcript is on the host
    # A split issue (docs/split.md): `base_fallback` is started from while `base_branch`
    # (the integration branch) does not exist yet; mode `integrate` runs no agent of its
    # own: it merges `merge_branches` into `branch` (a conflict: an agent run on
    # prompt.md), then the tests if `run_tests`, then commits what the fixes changed.
    base_fallback: str | None = None
    mode: str = "work"                   # one of JOB_MODES
    merge_branches: tuple[str, ...] = ()
    run_tests: bool = True
    json_schema: str | None = None       # mode plan: the agent answers as this JSON schema says

    @classmethod
    def from_settings(cls, settings: Settings, *, task_id: str, workspace: str, clone_url: str,
                      branch: str, commit_message: str, base_branch: str | None = None,
                      agent_command: str | None = None, start_from_branch: bool = False,
                      resume_session: str | None = None, **split: Any) -> JobSpec:
        """`split`: base_fallback, mode, merge_branches, run_tests, json_schema."""
        a, t = settings.agent, settings.tests
        return cls(task_id=task_id, workspace=workspace, clone_url=clone_url, branch=branch,
                   commit_message=commit_message, base_branch=base_branch, **split,
                   agent_command=agent_command or a.command, max_turns=a.max_turns,
                   model=a.model, permission_mode=a.permission_mode,
                   max_cost_usd=a.max_cost_usd, agent_timeout=a.timeout,
                   allow_root=a.allow_root, agent_env=dict(a.env),
                   credential_names=credentials.names(settings), test_command=t.command,
                   test_timeout=t.timeout, max_fix_attempts=t.max_fix_attempts,
                   git_author=settings.git.author, git_via=settings.git.via,
                   start_from_branch=start_from_branch, resume_session=resume_session)


def parse_author(author: str) -> tuple[str, str]:
    """"Name <email>" -> (name, email)."""
    m = _AUTHOR.match(author or "")
    if not m or not m.group(1):
        raise UsageError(f"git author {author!r} is not of the form 'Name <email>'",
                         hint='set git.author in orch.yml, e.g. "orch <orch@example.com>"')
    return m.group(1), m.group(2)


def mirror_path(workspace: str, clone_url: str) -> str:
    """<workspace_root>/.mirrors/<name>-<hash>.git: one bare mirror per repository URL."""
    root = posixpath.dirname(workspace.rstrip("/")) or "."
    name = shell.slug(posixpath.basename(clone_url.rstrip("/")).removesuffix(".git"), 30)
    digest = hashlib.sha256(clone_url.encode()).hexdigest()[:12]
    return f"{root}/.mirrors/{name}-{digest}.git"


def _check(spec: JobSpec) -> None:
    from .remote import check_workspace
    check_workspace(spec.workspace)
    if not valid_branch(spec.branch):
        raise UsageError(f"branch {spec.branch!r} is not a valid git branch name")
    for base in (spec.base_branch, spec.base_fallback, *spec.merge_branches):
        if base is not None and not valid_branch(base):
            raise UsageError(f"branch {base!r} is not a valid git branch name")
    if spec.mode not in JOB_MODES:
        raise UsageError(f"job mode {spec.mode!r} is not one of {', '.join(JOB_MODES)}")
    for name in spec.agent_env:
        if not _ENV_NAME.match(name):
            raise UsageError(f"agent.env: {name!r} is not a valid environment variable name")
    for name in spec.credential_names:
        if not _ENV_NAME.match(name):
            raise UsageError(f"agent.credentials: {name!r} is not a valid environment variable name")
    agentpath.words(spec.agent_command)      # an empty or unsplittable command is refused
    if spec.max_turns < 1 or spec.max_fix_attempts < 0:
        raise UsageError("max_turns must be >= 1 and max_fix_attempts >= 0")
    if not spec.clone_url:
        raise UsageError("the job has no clone URL")
    if spec.resume_session is not None and not _SESSION.fullmatch(spec.resume_session):
        raise UsageError(f"session id {spec.resume_session!r} is not one the agent writes")
    if spec.git_via not in GIT_VIA:
        raise UsageError(f"git.via {spec.git_via!r} is not one of {', '.join(GIT_VIA)}")
    if spec.git_via == "orch" and not spec.use_mirror:
        raise UsageError("git.via: orch needs the host's mirror (orch sends the base into it)")


def valid_branch(name: str) -> bool:
    """A conservative subset of `git check-ref-format --branch` (job.sh checks again)."""
    if not name or name.startswith(("-", "/", ".")) or name.endswith(("/", ".", ".lock")):
        return False
    if ".." in name or "//" in name or "@{" in name or "/." in name:
        return False
    return re.fullmatch(r"[A-Za-z0-9._/+-]+", name) is not None


def job_values(spec: JobSpec) -> dict[str, Any]:
    """The derived values templates see as `job` (shell needs integers, split words)."""
    name, email = parse_author(spec.git_author)
    return {
        "mirror": mirror_path(spec.workspace, spec.clone_url) if spec.use_mirror else "",
        "agent_program": agentpath.words(spec.agent_command)[0],
        "agent_args": agentpath.words(spec.agent_command)[1:],
        "find_agent_sh": agentpath.FIND_AGENT_SH,
        "author_name": name,
        "author_email": email,
        "agent_timeout": max(1, math.ceil(spec.agent_timeout)),
        "test_timeout": max(1, math.ceil(spec.test_timeout)),
        "max_cost_micros": "" if spec.max_cost_usd is None else int(round(spec.max_cost_usd * 1e6)),
        "allow_root": 1 if spec.allow_root else 0,
        "grace_ticks": max(1, math.ceil(spec.kill_grace * 5)),
        "result_grace": max(1, int(spec.result_grace)),
        "test_tail_lines": max(1, int(spec.test_tail_lines)),
        "fix_marker": TEST_OUTPUT_MARKER,
        "follow_on": 1 if spec.start_from_branch else 0,
        "credential_env": credential_env(spec.credential_names),
        # valid_branch names only: safe to split on spaces in the job
        "merge_branches": " ".join(spec.merge_branches),
        "run_tests": 1 if spec.run_tests else 0,
    }


def _credential_var(i: int) -> str:
    return f"ORCH_CRED_{i}"


def credential_env(names: tuple[str, ...]) -> str:
    """The assignments that export the credentials into one command only (a prefix of the
    agent's launch in `guarded`): `ANTHROPIC_API_KEY="$ORCH_CRED_0" ...`. Names only: the
    values are in the job shell's variables, read from its stdin (credential_reads)."""
    return " ".join(f'{n}="${_credential_var(i)}"' for i, n in enumerate(names))


def credential_reads(names: tuple[str, ...]) -> str:
    """The job's first act: one line of its stdin per credential into an unexported shell
    variable (the starter pipes them; run by hand with stdin /dev/null they are empty)."""
    return "".join(f"  IFS= read -r {_credential_var(i)} || {_credential_var(i)}=\n"
                   for i, _ in enumerate(names))


def _render(book: Compiled, what: str, line: int | None, ctx: dict[str, Any]) -> str:
    return engine.render_named(book.env, what, ctx, file=book.playbook.path, line=line,
                               hint="templates see `spec` (JobSpec fields) and `job` (derived values)")


def render_job(spec: JobSpec, playbook_path: str | Path | None = None) -> str:
    """The complete job.sh for `spec`, from the playbook (default: the shipped dispatch.yml).

    The script defines everything first and calls `orch_main` on its last line, so a
    syntax error anywhere stops it before it has done anything.
    """
    _check(spec)
    if playbook_path is None:
        from ..config.resources import playbooks_dir
        playbook_path = playbooks_dir() / DEFAULT_PLAYBOOK
    book = compiled(Path(playbook_path))     # parsed and compiled once per content
    pb = book.playbook
    ctx = {"spec": spec, "job": job_values(spec)}
    out = ["#!/bin/sh",
           "# shellcheck disable=SC2317  # steps run by name (run_step), handlers by trap",
           f"# job.sh for orch task {_comment(spec.task_id)}: rendered from {_comment(pb.path)}.",
           "# Edit the playbook, not this file. Run: setsid sh job.sh >> job.log 2>&1 < /dev/null",
           "",
           _render(book, "prelude", pb.prelude_line, ctx).rstrip("\n"),
           ""]
    calls = []
    for i, step in enumerate(pb.steps, 1):
        body = _render(book, f"step {step.name}", step.line, ctx).rstrip("\n")
        out += [f"# ---- step {step.name} " + "-" * max(0, 70 - len(step.name)),
                f"orch_step_{i}() {{", body or ":", "}", ""]
        calls.append(f"  run_step {shell.quote(step.name)} orch_step_{i}")
    out += [_RUNNER, "orch_main() {", credential_reads(spec.credential_names) + _MAIN_START.rstrip("\n"), *calls,
            '  fail "the playbook ended without a report step (finish succeeded)" job_error', "}", "",
            'orch_main "$@"', ""]
    book.save()
    return "\n".join(out)


def _comment(text: str) -> str:
    return " ".join(str(text).split())[:200]


_RUNNER = r"""# run_step NAME FUNCTION: status and `::orch:: step NAME`, then the step in repo/ (or
# the workspace before the clone exists); a non-zero return fails the job
run_step() {
  STEP=$1
  status_write
  mark step "$1"
  if [ -d "$REPO/.git" ]; then cd "$REPO"; else cd "$WS"; fi || fail "cannot enter the workspace" job_error
  "$2"
  r_rc=$?
  [ "$r_rc" -eq 0 ] || fail "step $1 failed (exit $r_rc): $(last_lines 2)"
}

# pgid_from_stat LINE: PGID from a /proc/PID/stat line (its own "$@": orch_main's stays)
pgid_from_stat() {
  set -f
  # shellcheck disable=SC2086  # split the fields after the command name, on purpose
  set -- ${1##*) }
  set +f
  PGID=${3:-}
}
"""

_MAIN_START = r"""  log_open
  exec < /dev/null
  cd "$WS" || exit 1
  # The process group from /proc (no fork: ps and tr cost a few ms), field 5 of stat,
  # counted after the ") " that ends the command name; ps where there is no /proc.
  PGID=
  if read -r j_stat < "/proc/$$/stat" 2>/dev/null; then pgid_from_stat "$j_stat"; fi
  case $PGID in ''|*[!0-9]*) PGID=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ') ;; esac
  [ -n "$PGID" ] || PGID=$$
  now_to; STARTED_AT=$NOW
  status_write
  trap on_exit EXIT
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  read -r j_host < /proc/sys/kernel/hostname 2>/dev/null || j_host=$(uname -n)
  mark start "orch task $TASK_ID, ${LOGNAME:-$(id -un)}@$j_host, job pid $$, process group $PGID"
"""
