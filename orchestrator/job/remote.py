"""Start, watch and stop a remote job over any transport (transport.base.Connection).

Each call is one round trip of POSIX sh. The job runs detached in its own session
(docs/FIELD-NOTES.md: all three streams of the backgrounded command redirected, so neither the
SSH channel nor the orchestrator holds it), and leaves everything about itself in the
workspace: `status` (docs/CONTRACTS.md), `job.log`, and while an agent or test run is
under way `child.pgid` (that run's own session, which a cancel must stop too).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from ..config.settings import Settings
from ..core import shell
from ..core.models import JOB_ERROR_KINDS
from ..errors import HostUnreachable, UsageError, WorkError
from ..transport.base import CommandResult, Connection
from .credentials import Credentials

FINAL_STATES = ("succeeded", "failed", "cancelled")
# The status file's `error_kind=`: why a job did not succeed, one fixed word, written by
# job.sh (playbooks/dispatch.yml) and by kill(); docs/CONTRACTS.md says what each means.
# The list is core/models.py's (the words a task's error_kind may hold, orch's own too).
ERROR_KINDS = JOB_ERROR_KINDS
WORKSPACE_FILES = ("repo", "status", "status.tmp", "job.log", ".guard", "child.pgid",
                   "fix-prompt.run.md", "test-tail.txt", "commit-msg.txt", "push.out", ".upload")
_FOLLOW_TAG = "@@orch-follow"
# job.sh's last log line (playbooks/dispatch.yml `finish`, and kill()): the status it writes
# right after is final, and a final status means a complete log. Anything in the log may
# say this too (test output is copied in raw), so a follower only believes it together
# with a final status file.
DONE_MARK = "::orch:: done "
_GREP_LINE = re.compile(r"^(\d+):")

# What a host says is untrusted (the agent can write the workspace): the status file and
# job.log are read with a size cap and a time limit, and the status values are checked.
STATUS_MAX_BYTES = 64 * 1024
LOG_MAX_BYTES = 16 * 1024 * 1024     # the log's last 16 MiB (its end holds the result)
READ_TIMEOUT = 120.0                 # seconds for one read of the status or the log
MAX_COST_USD = 1000.0                # no single task costs more; above is a broken host
MAX_TURNS = 1_000_000
MAX_EPOCH = 10 ** 11                 # epoch seconds: past year 5000 is nonsense
ERROR_LIMIT = 2000                   # characters of the status's one-line error
TEST_RESULTS = ("passed", "failed", "none")
_SHA = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})")

# The environment every job starts with, on every transport: these names from the host
# shell that starts it (when set), plus `agent.env_pass`; the job adds its own variables
# (agent.env, GIT_TERMINAL_PROMPT, IS_SANDBOX, ...). Nothing else of orch's or the login
# environment: no GitHub token, no SSH_AUTH_SOCK.
JOB_ENV_BASE = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TERM",
                "TMPDIR", "TZ")
NEVER_PASSED = ("SSH_AUTH_SOCK", "SSH_AGENT_PID")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class JobStatus:
    """The parsed `status` file plus whether the job's process group is alive."""

    state: str
    alive: bool
    step: str | None = None
    pgid: int | None = None
    started_at: int | None = None
    updated_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    error: str | None = None
    error_kind: str | None = None    # one of ERROR_KINDS; None on success and in status files
                                     # written before the key existed
    tests: str | None = None
    commit: str | None = None
    branch: str | None = None
    turns: int | None = None
    cost_usd: float | None = None
    raw: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()     # what validate_status refused or corrected

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def running(self) -> bool:
        return self.state == "running" and self.alive

    @property
    def vanished(self) -> bool:
        """Says running, but nothing is left to finish it (host rebooted, job SIGKILLed)."""
        return self.state == "running" and not self.alive


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def parse_status(text: str, alive: bool = False) -> JobStatus | None:
    """`key=value` lines -> JobStatus; None when there is no `state` at all."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            raw[key.strip()] = value
    if not raw.get("state"):
        return None
    return validate_status(JobStatus(
        state=raw["state"], alive=alive, step=raw.get("step") or None, pgid=_int(raw.get("pgid")),
        started_at=_int(raw.get("started_at")), updated_at=_int(raw.get("updated_at")),
        finished_at=_int(raw.get("finished_at")), exit_code=_int(raw.get("exit_code")),
        error=raw.get("error") or None, error_kind=raw.get("error_kind") or None,
        tests=raw.get("tests") or None,
        commit=raw.get("commit") or None, branch=raw.get("branch") or None,
        turns=_int(raw.get("turns")), cost_usd=_float(raw.get("cost_usd")), raw=raw))


def validate_status(status: JobStatus, *, branch: str | None = None) -> JobStatus:
    """The status with every value a host could abuse checked (idempotent).

    Costs are finite and in [0, MAX_COST_USD] (NaN is unknown, None; out of range is
    clamped), so state.json never holds NaN/Infinity and a host cannot subtract from the
    daily budget; turns and times are in range; `commit` is a full hex SHA; `tests` one
    of TEST_RESULTS; `error_kind` one of ERROR_KINDS; `error` is cut to ERROR_LIMIT. With
    `branch` (the task's), a status naming another branch is not believed: a success
    becomes a failure (job_error) saying why. What was refused or corrected is listed in
    `problems`.
    """
    problems: list[str] = list(status.problems)
    changes: dict[str, object] = {}

    def refuse(key: str, why: str, value: object = None) -> None:
        problems.append(f"{key}={status.raw.get(key, '')[:40]!r} {why}")
        changes[key] = value

    cost = status.cost_usd
    if cost is not None:
        if math.isnan(cost):
            refuse("cost_usd", "is not a number: not counted")
        elif cost < 0:
            refuse("cost_usd", "is negative: counted as 0", 0.0)
        elif cost > MAX_COST_USD:
            refuse("cost_usd", f"is beyond ${MAX_COST_USD:g}: counted as that", MAX_COST_USD)
    if status.turns is not None and not 0 <= status.turns <= MAX_TURNS:
        refuse("turns", "is out of range")
    for key in ("started_at", "updated_at", "finished_at"):
        value = getattr(status, key)
        if value is not None and not 0 <= value <= MAX_EPOCH:
            refuse(key, "is not a time")
    if status.commit is not None and not _SHA.fullmatch(status.commit):
        refuse("commit", "is not a full commit SHA")
    if status.tests is not None and status.tests not in TEST_RESULTS:
        refuse("tests", "is not one of " + ", ".join(TEST_RESULTS))
    if status.error_kind is not None and status.error_kind not in ERROR_KINDS:
        refuse("error_kind", "is not one of ERROR_KINDS")
    if status.error is not None and len(status.error) > ERROR_LIMIT:
        changes["error"] = status.error[:ERROR_LIMIT] + "…"
    if branch and status.branch and status.branch != branch:
        problems.append(f"branch={status.branch[:80]!r} is not the task's branch {branch}")
        if status.state == "succeeded":
            changes.update(state="failed", error_kind="job_error", error=(
                f"the job's status names branch {status.branch[:80]!r}, not the task's "
                f"branch {branch}: its outcome is not trusted"))
    if not changes and len(problems) == len(status.problems):
        return status
    return replace(status, problems=tuple(dict.fromkeys(problems)), **changes)  # type: ignore[arg-type]


def check_workspace(workspace: str) -> str:
    """The workspace without a trailing slash, refusing anything that is not plainly a task
    directory below some root (it gets `rm -rf`): "", "/", "~", "x", paths with "..".
    """
    parts = [p for p in workspace.rstrip("/").split("/") if p]
    if not parts or parts[-1] in ("~", ".", "..") or ".." in parts or "\n" in workspace \
            or (len(parts) == 1 and not workspace.startswith("~/")):
        raise UsageError(f"workspace {workspace!r} is not a task directory")
    return workspace.rstrip("/")


def _ws(workspace: str) -> str:
    return shell.path(check_workspace(workspace))


# Reads a pgid from the status file, refusing anything but a plain number above 1.
_SH_STATUS = r"""# status_get FILE: ST_STATE and ST_PGID (a group id, else empty) from a status file, both
# from one version of it (the job replaces it whole), read by the shell itself: these
# scripts ask at every start (every 10 ms while it waits), follow, status read and stop,
# and a `sed | head` for each answer cost two forks.
status_get() {
  ST_STATE= ST_PGID=
  [ -f "$1" ] || return 0
  while IFS= read -r sg_l || [ -n "$sg_l" ]; do
    case $sg_l in
      state=*) [ -n "$ST_STATE" ] || ST_STATE=${sg_l#state=} ;;
      pgid=*) [ -n "$ST_PGID" ] || ST_PGID=${sg_l#pgid=} ;;
    esac
  done < "$1" 2>/dev/null
  case $ST_PGID in ''|*[!0-9]*|0|1) ST_PGID= ;; esac
}
"""


def job_env(settings: Settings) -> tuple[str, ...]:
    """The variable names a job inherits: JOB_ENV_BASE and agent.env_pass, never the
    GitHub token's variable (github.token_env) nor NEVER_PASSED (config refuses them
    too; this is the last line)."""
    banned = {settings.github.token_env, *NEVER_PASSED}
    names = [*JOB_ENV_BASE, *settings.agent.env_pass]
    return tuple(n for n in dict.fromkeys(names) if n not in banned and _ENV_NAME.fullmatch(n))


def env_command(names: tuple[str, ...] | list[str]) -> str:
    """`env -i NAME="$NAME" ...` for sh: a command prefix that runs the rest with only
    these variables, each passed on when the starting shell has it set."""
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not an environment variable name")
    return "env -i" + "".join(f' ${{{n}+"{n}=${n}"}}' for n in names)


async def start(conn: Connection, workspace: str, job_sh: str, prompt: str, fix_prompt: str,
                *, wait: float = 10.0, env: tuple[str, ...] = JOB_ENV_BASE,
                credentials: Credentials | None = None) -> int:
    """Upload job.sh, prompt.md and fix-prompt.md and launch the job detached; one round
    trip. Returns the job's process group id (read back from the status it writes first).

    The job gets only the variables named in `env` (see job_env) from the shell that
    starts it: on a local host that shell has orch's own environment.
    `credentials` (agent.credentials, job/credentials.py) travel first on the starter's
    stdin, one line each: the starter `read`s them (a shell reads a pipe byte by byte, so
    the upload after them is left for `cat`) and pipes them to job.sh with the builtin
    printf: no argv, no file. job.sh must be rendered with the same names.
    Refuses a workspace whose job is still running; otherwise the previous run's files
    are replaced.
    """
    clean_env = env_command(env)
    secrets = credentials.values if credentials else ()
    if any(c in v for v in secrets for c in "\n\r\0"):
        raise UsageError("agent.credentials: a value holds a line break or a NUL byte")
    reads, feed, stdin = _credential_feed(len(secrets))
    parts = [job_sh.encode(), prompt.encode(), fix_prompt.encode()]
    n1, n2, n3 = (len(p) for p in parts)
    ticks = max(1, int(wait * 10))
    cmd = _SH_STATUS + f"""umask 077
ws={_ws(workspace)}
mkdir -p "$ws" && cd "$ws" || {{ echo "orch: cannot create the workspace $ws" >&2; exit 3; }}
# One start at a time per workspace, from the check to the job's first status: a start
# whose orch died may still be running here (a starved shell) when a later pass starts
# the requeued task in the same workspace; two jobs would share one status and one repo/.
exec 9> .start.lock
if command -v flock > /dev/null 2>&1; then
  flock -w 30 9 || {{ echo "orch: another start holds $ws/.start.lock" >&2; exit 7; }}
fi
status_get status
if [ "$ST_STATE" = running ] && [ -n "$ST_PGID" ] && kill -0 -"$ST_PGID" 2>/dev/null; then
  echo "orch: a job is already running in $ws (process group $ST_PGID)" >&2; exit 4
fi
{reads}for f in {" ".join(WORKSPACE_FILES)}; do   # a new workspace has none: no rm to fork
  if [ -e "$f" ] || [ -L "$f" ]; then rm -rf {" ".join(WORKSPACE_FILES)}; break; fi
done
cat > .upload || exit 5
head -c {n1} .upload > job.sh && tail -c +{n1 + 1} .upload | head -c {n2} > prompt.md \\
  && tail -c +{n1 + n2 + 1} .upload > fix-prompt.md || exit 5
rm -f .upload
# shellcheck disable=SC2046  # wc's words, on purpose: one fork for the three sizes
set -- $(wc -c job.sh prompt.md fix-prompt.md)
if [ "$1" != {n1} ] || [ "$3" != {n2} ] || [ "$5" != {n3} ]; then
  echo "orch: the upload arrived incomplete" >&2; exit 5
fi
chmod 700 job.sh
: > job.log
# setsid -f: the job is not a background job of this shell, so it keeps default SIGINT
# handling (its cancel trap works); util-linux older than 2.31 lacks -f: fall back.
# (9>&-: the job must not hold the start lock for its whole life)
{feed}{clean_env} setsid -f nohup sh ./job.sh >> job.log 2>&1 {stdin}9>&- \
  || {feed}{{ exec 3<&0; {clean_env} setsid nohup sh ./job.sh >> job.log 2>&1 {stdin or "<&3 "}3<&- 9>&- & }}
{"unset " + " ".join(f"s{i}" for i in range(len(secrets))) if secrets else ":"}
# A job writes its first status within milliseconds of its start: ask every 10 ms for the
# first 0.3 s (a 0.1 s tick made every dispatch wait ~90 ms for nothing), then every 0.1 s.
i=0
while [ "$i" -lt {ticks + 30} ]; do
  status_get status
  [ -n "$ST_PGID" ] && break
  if [ "$i" -lt 30 ]; then sleep 0.01; else sleep 0.1; fi
  i=$((i + 1))
done
if [ -z "$ST_PGID" ]; then
  echo "orch: the job did not start; the end of job.log:" >&2; tail -n 20 job.log >&2; exit 6
fi
echo "pgid=$ST_PGID"
"""
    head = "".join(f"{v}\n" for v in secrets).encode()
    result = await conn.run(cmd, input=head + b"".join(parts))
    m = re.search(r"^pgid=(\d+)$", result.stdout, re.MULTILINE)
    if not result.ok or not m:
        detail = (result.stderr.strip() or result.stdout.strip() or f"exit {result.exit_status}")
        raise WorkError(f"{conn.host.name}: could not start the job in {workspace}: {detail}")
    return int(m.group(1))


def _credential_feed(n: int) -> tuple[str, str, str]:
    """For `n` credentials: the starter's lines that read them from its stdin, the prefix
    that pipes them to the job, and the job's stdin redirection (/dev/null when none).
    (An asynchronous list's stdin is /dev/null unless redirected: the fallback start
    saves the pipe as fd 3 first.)"""
    if n == 0:
        return "", "", "< /dev/null "
    names = [f"s{i}" for i in range(n)]
    reads = "".join(f"IFS= read -r {v} || exit 5\n" for v in names)
    # printf is a builtin of every sh (dash, bash, busybox): the values reach no argv
    return reads, "printf '%s\\n' " + " ".join(f'"${v}"' for v in names) + " | ", ""


async def read_status(conn: Connection, workspace: str) -> JobStatus | None:
    """The job's status and whether its process group is alive (one round trip);
    None when the workspace has no status (no job was ever started there)."""
    status, _size = await _read_status(conn, workspace)
    return status


async def read_final_status(conn: Connection, workspace: str, *, settle: float
                            ) -> tuple[JobStatus | None, int | None]:
    """read_status for a follower that has just seen the done line: waits on the host up
    to `settle` seconds for a status that still says running to turn final (the job writes
    it right after that line, which under load can take longer than our question takes to
    arrive), and says job.log's size in bytes then (None if unknown), so the follower
    knows whether it has every line. Still one round trip."""
    return await _read_status(conn, workspace, settle=settle, log_size=True)


async def _read_status(conn: Connection, workspace: str, *, settle: float = 0.0,
                       log_size: bool = False) -> tuple[JobStatus | None, int | None]:
    # Liveness first, then the status: a job writes its final status before it exits, so
    # "dead" followed by a read that still says running really is a job that died. (The
    # other order misreads a job that finishes between the two as dead.)
    ticks = max(0, int(settle * 20))
    cmd = _SH_STATUS + f"""ws={_ws(workspace)}
[ -f "$ws/status" ] || exit 0
i=0
status_get "$ws/status"
while [ "$i" -lt {ticks} ] && [ "$ST_STATE" = running ] && [ -n "$ST_PGID" ] \
    && kill -0 -"$ST_PGID" 2>/dev/null; do   # a dead job writes nothing more
  sleep 0.05; i=$((i + 1)); status_get "$ws/status"
done
status_get "$ws/status"
if [ -n "$ST_PGID" ] && kill -0 -"$ST_PGID" 2>/dev/null; then a=1; else a=0; fi
{'echo "@log_size=$(wc -c < "$ws/job.log" 2>/dev/null)"' if log_size else ''}
head -c {STATUS_MAX_BYTES} "$ws/status"
echo
echo "@alive=$a"
"""
    result = await _run_bounded(conn, cmd, f"the status in {workspace}", READ_TIMEOUT + settle)
    if not result.ok:
        raise WorkError(f"{conn.host.name}: cannot read the status in {workspace}: "
                        f"{result.stderr.strip() or f'exit {result.exit_status}'}")
    out = result.stdout
    size = None
    if log_size:
        # Our first line, before anything of the host's status file.
        head, _, out = out.partition("\n")
        m = re.fullmatch(r"@log_size=\s*(\d{1,19})", head)
        size = int(m.group(1)) if m else None
    alive = "\n@alive=1" in "\n" + out
    return parse_status(out, alive), size


async def _run_bounded(conn: Connection, cmd: str, what: str,
                       timeout: float = READ_TIMEOUT) -> CommandResult:
    """conn.run with a time limit on the whole round trip (opening the session too): a
    host that stalls a read counts as unreachable (reconcile's poll.lost_after applies),
    never as a hang of the whole pass."""
    try:
        return await asyncio.wait_for(conn.run(cmd), timeout)
    except TimeoutError:
        raise HostUnreachable(conn.host.name, "timeout",
                              f"reading {what} took more than {timeout:g}s",
                              hint="the host may be overloaded; the next pass tries again") from None


async def read_log(conn: Connection, workspace: str, *, max_bytes: int = LOG_MAX_BYTES,
                   timeout: float = READ_TIMEOUT) -> str | None:
    """job.log as text, at most its last `max_bytes` (then a first line says how much
    was left out); None when the workspace has no job.log."""
    cmd = f"""f={_ws(workspace)}/job.log
[ -f "$f" ] || {{ echo "@missing"; exit 0; }}
echo "@size=$(wc -c < "$f")"
tail -c {int(max_bytes)} "$f"
"""
    result = await _run_bounded(conn, cmd, f"the log in {workspace}", timeout)
    if not result.ok:
        raise WorkError(f"{conn.host.name}: cannot read the log in {workspace}: "
                        f"{result.stderr.strip() or f'exit {result.exit_status}'}")
    head, _, text = result.stdout.partition("\n")
    if head == "@missing":
        return None
    m = re.fullmatch(r"@size=\s*(\d+)", head)
    size = int(m.group(1)) if m else 0
    if size > max_bytes:
        text = text.partition("\n")[2]       # the first line is cut: drop it
        text = (f"::orch:: note (the first {size - max_bytes} bytes of job.log, "
                f"{size} bytes in all, are not shown)\n") + text
    return text


async def follow(conn: Connection, workspace: str, offset: int = 0
                 ) -> AsyncGenerator[tuple[int, str], None]:
    """Yield (byte offset just after the line, line) from byte `offset` of job.log until the
    job has ended and the log is drained.

    Offsets come from the host (`grep -b`), not from counting decoded characters, so a
    caller that resumes with the last offset it got neither repeats nor loses a line even
    if the transport altered a line (invalid UTF-8 replaced, a trailing CR dropped). An
    offset that is not at a line start is moved forward to the next one.
    """
    if offset < 0:
        raise ValueError("offset must be >= 0")
    cmd = _SH_STATUS + f"""ws={_ws(workspace)}; f="$ws/job.log"
[ -f "$f" ] || {{ echo "{_FOLLOW_TAG} missing"; exit 0; }}
LC_ALL=C; export LC_ALL
off={int(offset)}
if [ "$off" -gt 0 ]; then
  c=$(tail -c +"$off" "$f" | head -c 1 | od -An -c | tr -d ' ')
  if [ -n "$c" ] && [ "$c" != '\\n' ]; then
    off=$((off + $(tail -c +$((off + 1)) "$f" | head -n 1 | wc -c)))
  fi
fi
echo "{_FOLLOW_TAG} start $off"
status_get "$ws/status"
if [ "$ST_STATE" = running ] && [ -n "$ST_PGID" ] && kill -0 "$ST_PGID" 2>/dev/null; then
  tail -c +$((off + 1)) -F --pid="$ST_PGID" "$f" 2>/dev/null | grep -a --line-buffered -b ''
else
  tail -c +$((off + 1)) "$f" | grep -a -b ''
fi
echo "{_FOLLOW_TAG} end $(wc -c < "$f")"
"""
    # Closed as soon as the caller stops reading (a follower that has seen the job's done
    # line): the host's `tail -F` goes with the channel.
    async with aclosing(conn.stream(cmd)) as stream:
        async for item in _offsets(stream, offset, conn.host.name, workspace):
            yield item


async def _offsets(stream: AsyncIterator[str], offset: int, host: str, workspace: str
                   ) -> AsyncIterator[tuple[int, str]]:
    """The follow script's output -> (byte offset just after the line, line)."""
    base = offset
    pending: tuple[int, str] | None = None     # a line whose length the transport blurred
    async for raw in stream:
        m = _GREP_LINE.match(raw)
        if m is None:
            if raw.startswith(f"{_FOLLOW_TAG} start "):
                n = _tag_number(raw)
                base = base if n is None else n
            elif raw.startswith(f"{_FOLLOW_TAG} end "):
                # No number when job.log vanished meanwhile (the workspace removed by a
                # finalize elsewhere): the best estimate below stands.
                size = _tag_number(raw)
                if pending is not None and size is not None:
                    yield size, pending[1]
                    pending = None
            elif raw.startswith(f"{_FOLLOW_TAG} missing"):
                raise WorkError(f"{host}: no job log in {workspace}")
            continue        # anything else is the host's shell talking, not the log
        start = base + int(m.group(1))
        text = raw[m.end():]
        if pending is not None:
            yield start, pending[1]
            pending = None
        if "\ufffd" in text:
            pending = (start, text)   # its true end is the next line's start
            continue
        yield start + len(text.encode("utf-8")) + 1, text
    if pending is not None:        # the stream ended without the trailer: best estimate
        yield pending[0] + len(pending[1].encode("utf-8")) + 1, pending[1]


def says_done(line: str) -> bool:
    """A log line saying the job has ended (DONE_MARK): to be checked against the status."""
    return line.startswith(DONE_MARK)


def _tag_number(raw: str) -> int | None:
    """The number ending a follow tag line, or None when there is none (what the host
    sent is untrusted: it must never stop `orch logs -f` with a traceback)."""
    word = raw.rsplit(" ", 1)[-1]
    return int(word) if word.isascii() and word.isdigit() and len(word) < 20 else None


async def kill(conn: Connection, workspace: str, *, grace: float = 3.0) -> bool:
    """Stop a running job: SIGINT, SIGTERM, then SIGKILL (`grace` seconds apart) to its
    process group and to its current agent/test run's group; then status
    state=cancelled unless the job already wrote a final state. True if it was running."""
    result = await conn.run(_kill_script(workspace, grace))
    if not result.ok:
        raise WorkError(f"{conn.host.name}: could not stop the job in {workspace}: "
                        f"{result.stderr.strip() or f'exit {result.exit_status}'}")
    return "result=1" in result.stdout


def _kill_script(workspace: str, grace: float) -> str:
    """The sh script of kill(): prints result=1 if it stopped a running job, else result=0."""
    ticks = max(1, int(grace * 5))
    return _SH_STATUS + f"""ws={_ws(workspace)}
cd "$ws" 2>/dev/null || {{ echo "result=0"; exit 0; }}
status_get status
[ "$ST_STATE" = running ] || {{ echo "result=0"; exit 0; }}
groups=
for g in "$ST_PGID" "$(cat child.pgid 2>/dev/null)"; do
  case $g in ''|*[!0-9]*|0|1) ;; *) groups="$groups $g" ;; esac
done
alive() {{ for g in $groups; do kill -0 -"$g" 2>/dev/null && return 0; done; return 1; }}
for sig in INT TERM KILL; do
  alive || break
  for g in $groups; do kill -"$sig" -"$g" 2>/dev/null; done
  i=0
  while [ "$i" -lt {ticks} ] && alive; do sleep 0.2; i=$((i + 1)); done
done
status_get status
if [ "$ST_STATE" = running ]; then
  if [ -s job.log ] && [ -n "$(tail -c 1 job.log)" ]; then echo >> job.log; fi
  printf '::orch:: done cancelled (killed by orch)\\n' >> job.log
  now=$(date +%s)
  {{ grep -v -E '^(state|updated_at|finished_at|exit_code|error|error_kind)=' status
    echo state=cancelled; echo "updated_at=$now"; echo "finished_at=$now"; echo exit_code=130
    echo "error=cancelled by orch: the job's process group was stopped"; echo error_kind=cancelled
  }} > status.kill.tmp && mv -f status.kill.tmp status
fi
rm -f child.pgid
echo "result=1"
"""


async def remove(conn: Connection, workspace: str, *, wait: bool = True) -> None:
    """Delete the workspace (stopping its job first if it still runs); one round trip.

    `wait=False`: the host does it in the background and the round trip ends as soon as
    that has started (finalize, once the outcome is recorded: removing a large checkout
    takes seconds, and nothing waits on it; a workspace left behind costs only disk).
    """
    ws = _ws(workspace)
    # The kill script runs in a subshell: its early `exit 0` (no running job) ends only that.
    cmd = f"(\n{_kill_script(workspace, 3.0)}\n) > /dev/null 2>&1\ncd / && rm -rf {ws}\n"
    if not wait:
        # nohup and no tie to the session's streams: it outlives the channel's close.
        cmd = f"nohup sh -c {shell.quote(cmd)} > /dev/null 2>&1 < /dev/null &\n"
    result = await conn.run(cmd)
    if not result.ok:
        raise WorkError(f"{conn.host.name}: could not remove {workspace}: {result.stderr.strip()}")


async def log_tail(conn: Connection, workspace: str, lines: int = 50) -> str:
    """The last `lines` lines of job.log ('' when there is none), at most LOG_MAX_BYTES."""
    result = await _run_bounded(conn, f"tail -n {int(lines)} {_ws(workspace)}/job.log 2>/dev/null"
                                      f" | tail -c {LOG_MAX_BYTES}", f"the log in {workspace}")
    return result.stdout if result.ok else ""
