"""`orch cron`: the crontab line that runs `orch poll` every few minutes, managed in place.

Why a marker: the user's crontab is theirs. orch only ever touches the line ending in
MARKER, so `install` is idempotent (it replaces its own line where it stands) and
`remove` takes out that line alone; every other byte of the table is written back as
`crontab -l` gave it. (A `#` after whitespace starts a sh comment, and cron hands the
whole command to sh, so the trailing marker is inert.)

Why absolute paths: cron runs with a minimal environment in $HOME. The line names the
orch executable by absolute path, and pins the config, inventory and state dir that are
in force now *when cron could not find them on its own*: given by --config /
--inventory / --state-dir, by $ORCH_CONFIG / $ORCH_INVENTORY / $ORCH_HOME, or found
relative to the current directory (./orch.yml, ./inventory/hosts.yml). Defaults under
$HOME and paths named inside orch.yml resolve the same under cron, so they stay
unpinned (an edit to orch.yml keeps working). Output is appended to
<state_dir>/poll.log.

`crontab` is the command of the current user (`crontab -l`, `crontab -`); `$ORCH_CRONTAB`
replaces it (tests point it at a fake that keeps the table in a file).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import shell
from ..errors import UsageError, WorkError

if TYPE_CHECKING:
    from ..app import App

MARKER = "# orch poll (managed by orch cron)"
DEFAULT_EVERY = 5
LOG_NAME = "poll.log"
ENV_CRONTAB = "ORCH_CRONTAB"
UNIT_NAME = "orch-poll"
_HOUR_STEPS = (60, 120, 180, 240, 360, 480, 720, 1440)


class CrontabMissing(UsageError):
    """No `crontab` command: nothing was changed (exit 2); the caller shows the line."""


# --------------------------------------------------------------------------- the line

def schedule(every: int) -> str:
    """Cron's five time fields for "every `every` minutes".

    1-59 gives */N (when N does not divide 60 the last gap of each hour is shorter);
    whole hours must divide a day, the only intervals cron can state evenly.
    """
    if 1 <= every <= 59:
        return f"*/{every} * * * *"
    if every == 60:
        return "0 * * * *"
    if every in _HOUR_STEPS:
        return "0 0 * * *" if every == 1440 else f"0 */{every // 60} * * *"
    raise UsageError(f"--every {every}: cron cannot run a command every {every} minutes",
                     hint="use 1-59 minutes, or whole hours that divide a day: "
                          + ", ".join(str(s) for s in _HOUR_STEPS))


def every_of(line: str) -> int | None:
    """The interval (minutes) of a line `schedule()` wrote, None for anything else."""
    fields = line.split()[:5]
    if len(fields) < 5 or fields[2:] != ["*", "*", "*"]:
        return None
    m, h = fields[0], fields[1]
    if h == "*" and (hit := re.fullmatch(r"\*/(\d+)", m)):
        return int(hit.group(1))
    if m == "0" and h == "*":
        return 60
    if m == "0" and h == "0":
        return 1440
    if m == "0" and (hit := re.fullmatch(r"\*/(\d+)", h)):
        return int(hit.group(1)) * 60
    return None


def orch_executable() -> list[str]:
    """The command that runs this orch: sys.argv[0] when it is the `orch` script,
    else `orch` on PATH, else this Python with `-m orchestrator` (always absolute)."""
    arg0 = sys.argv[0] if sys.argv else ""
    name = Path(arg0).name
    if arg0 and name.startswith("orch") and not name.endswith(".py"):
        found = arg0 if os.sep in arg0 else shutil.which(arg0)
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return [str(Path(found).resolve())]
    found = shutil.which("orch")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).absolute()), "-m", "orchestrator"]


def pinned_options(app: App, *, config: str | None = None, inventory: str | None = None,
                   state_dir: str | None = None) -> list[str]:
    """The global options cron needs to see what this shell sees (module docstring)."""
    out: list[str] = []
    cfg = config or os.environ.get("ORCH_CONFIG")
    if cfg:
        out += ["--config", str(Path(cfg).expanduser().absolute())]
    elif Path("orch.yml").is_file():
        out += ["--config", str(Path("orch.yml").absolute())]
    inv = inventory or os.environ.get("ORCH_INVENTORY")
    if inv:
        out += ["--inventory", str(Path(inv).expanduser().absolute())]
    elif not app.settings.inventory and Path("inventory/hosts.yml").is_file():
        out += ["--inventory", str(Path("inventory/hosts.yml").absolute())]
    state = state_dir or os.environ.get("ORCH_HOME")
    if state:
        out += ["--state-dir", str(Path(state).expanduser().absolute())]
    return out


@dataclass(frozen=True)
class PollJob:
    """What runs: argv (absolute), how often, and where its output goes."""

    argv: tuple[str, ...]
    every: int
    log: Path

    @property
    def command(self) -> str:
        """The sh command line, with cron's `%` (a newline to cron) escaped."""
        cmd = f"{shell.join(list(self.argv))} >> {shell.quote(self.log)} 2>&1"
        return cmd.replace("%", "\\%")

    @property
    def line(self) -> str:
        return f"{schedule(self.every)} {self.command} {MARKER}"


def poll_job(app: App, every: int = DEFAULT_EVERY, *, config: str | None = None,
             inventory: str | None = None, state_dir: str | None = None) -> PollJob:
    schedule(every)                     # refuse an impossible interval before anything
    argv = orch_executable() + pinned_options(app, config=config, inventory=inventory,
                                              state_dir=state_dir) + ["poll"]
    return PollJob(tuple(argv), every, Path(app.state_dir).absolute() / LOG_NAME)


# --------------------------------------------------------------------------- systemd

def _systemd_word(word: str) -> str:
    """One ExecStart word: systemd's own quoting, `%` and `$` doubled."""
    text = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(job: PollJob, token_env: str = "GITHUB_TOKEN") -> dict[str, str]:
    """An equivalent user service + timer, as text, for those who prefer systemd."""
    log = str(job.log).replace("%", "%%")
    service = f"""\
# ~/.config/systemd/user/{UNIT_NAME}.service  (system-wide: /etc/systemd/system/)
[Unit]
Description=orch poll: reconcile running tasks, then dispatch new issues
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={' '.join(_systemd_word(w) for w in job.argv)}
StandardOutput=append:{log}
StandardError=append:{log}
# systemd does not read your shell profile: put {token_env}=... in a file only you can
# read (chmod 600) and name it here.
#EnvironmentFile=%h/.config/orch/env
"""
    timer = f"""\
# ~/.config/systemd/user/{UNIT_NAME}.timer
[Unit]
Description=Run orch poll every {job.every} minutes

[Timer]
OnBootSec=2min
OnUnitActiveSec={job.every}min
AccuracySec=30s

[Install]
WantedBy=timers.target
# then: systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}.timer
#       loginctl enable-linger "$USER"    # keep polling while you are logged out
"""
    return {f"{UNIT_NAME}.service": service, f"{UNIT_NAME}.timer": timer}


# --------------------------------------------------------------------------- crontab I/O

def crontab_command() -> list[str]:
    """argv of the crontab command ($ORCH_CRONTAB, else `crontab` on PATH)."""
    override = os.environ.get(ENV_CRONTAB, "").strip()
    if override:
        words = shlex.split(override)
        exe = words[0]
        found = exe if os.sep in exe else shutil.which(exe)
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise CrontabMissing(f"{ENV_CRONTAB}={override}: {exe} is not an executable",
                                 hint=f"fix or unset ${ENV_CRONTAB}")
        return [found, *words[1:]]
    found = shutil.which("crontab")
    if not found:
        raise CrontabMissing("crontab is not installed (no `crontab` command on PATH)",
                             hint="install cron (Debian/Ubuntu: apt-get install cron) and run "
                                  "this again, add the line below by hand, or use the systemd "
                                  "timer that `orch cron show` prints")
    return [found]


def _run(cmd: list[str], *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*cmd, *args], input=data, capture_output=True, timeout=30,
                              stdin=None if data is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkError(f"`{' '.join(cmd)} {' '.join(args)}` failed: {exc}",
                        hint="nothing was changed") from None


def read_crontab(cmd: list[str]) -> bytes:
    """The current user's table as bytes (b"" when they have none)."""
    proc = _run(cmd, "-l")
    if proc.returncode == 0:
        return proc.stdout
    err = proc.stderr.decode(errors="replace").strip()
    if "no crontab for" in err.lower():
        return b""
    raise WorkError(f"`crontab -l` failed (exit {proc.returncode}): {err or 'no message'}",
                    hint="nothing was changed")


def write_crontab(cmd: list[str], table: bytes) -> None:
    proc = _run(cmd, "-", data=table)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise WorkError(f"`crontab -` refused the new table (exit {proc.returncode}): "
                        f"{err or 'no message'}", hint="your crontab was left as it was")


# --------------------------------------------------------------------------- the table (pure)

def _ours(raw: bytes) -> bool:
    return raw.rstrip(b"\r\n").endswith(MARKER.encode())


def managed_lines(table: bytes) -> list[str]:
    """orch's own lines in a table (normally zero or one)."""
    return [raw.rstrip(b"\r\n").decode(errors="replace")
            for raw in table.splitlines(keepends=True) if _ours(raw)]


def merge(table: bytes, line: str | None) -> bytes:
    """The table with orch's line(s) replaced by `line` (at the first one's place, else
    appended) or removed (`line` None). Every other line is kept byte for byte."""
    new = line.encode() + b"\n" if line is not None else None
    out: list[bytes] = []
    placed = False
    for raw in table.splitlines(keepends=True):
        if _ours(raw):
            if new is not None and not placed:
                out.append(new)
                placed = True
            continue
        out.append(raw)
    if new is not None and not placed:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\n"          # cron needs it anyway; the line itself is kept
        out.append(new)
    return b"".join(out)


# --------------------------------------------------------------------------- actions

@dataclass
class CronResult:
    """What an action found (`before`: orch's lines) and left (`after`)."""

    action: str
    job: PollJob
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    changed: bool = False

    @property
    def current(self) -> str | None:
        return self.after[0] if self.after else None

    @property
    def up_to_date(self) -> bool:
        """Exactly one orch line, and it is what `install` would write now."""
        return self.after == [self.job.line]

    def to_json(self, systemd: dict[str, str] | None = None) -> dict:
        data = {"action": self.action, "changed": self.changed, "installed": bool(self.after),
                "line": self.current, "expected": self.job.line, "up_to_date": self.up_to_date,
                "removed": [ln for ln in self.before if ln not in self.after],
                "every": self.job.every, "log": str(self.job.log),
                "command": list(self.job.argv)}
        if systemd is not None:
            data["systemd"] = systemd
        return data


def install(job: PollJob) -> CronResult:
    """Put the line in (or replace orch's old one); write only when something changes."""
    cmd = crontab_command()
    before = read_crontab(cmd)
    after = merge(before, job.line)
    result = CronResult("install", job, managed_lines(before), [job.line], after != before)
    if result.changed:
        write_crontab(cmd, after)
    return result


def remove(job: PollJob) -> CronResult:
    """Take orch's line(s) out; a table without one is left untouched."""
    cmd = crontab_command()
    before = read_crontab(cmd)
    found = managed_lines(before)
    if found:
        write_crontab(cmd, merge(before, None))
    return CronResult("remove", job, found, [], bool(found))


def show(make_job: Callable[[int], PollJob], every: int | None = None) -> CronResult:
    """What is installed, compared with what `install` would write. Without `every`,
    the comparison uses the installed line's own interval (else the default)."""
    lines = managed_lines(read_crontab(crontab_command()))
    if every is None:
        every = next((e for e in map(every_of, lines) if e), None) or DEFAULT_EVERY
    return CronResult("show", make_job(every), lines, lines)
