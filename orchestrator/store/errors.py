"""What the store refuses, and how it says so (exit codes via errors.UsageError/WorkError)."""

from __future__ import annotations

from pathlib import Path

from ..core.models import Task
from ..errors import UsageError, WorkError

BACKUP_SUFFIX = ".bak"


class StateCorrupt(UsageError):
    """state.json does not parse: reported, never reset (exit 2)."""

    def __init__(self, path: Path, detail: str) -> None:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if backup.is_file():
            hint = (f"restore the last good version with `cp {backup} {path}`, or move the "
                    f"broken file aside (`mv {path} {path}.broken`) to start with no tasks")
        else:
            hint = (f"move the broken file aside (`mv {path} {path}.broken`) to start "
                    f"with no tasks, or repair it by hand")
        super().__init__(f"{path}: the state file is corrupt ({detail}); it was NOT reset "
                         f"and nothing was changed", hint=hint)
        self.path = path


class ArchiveCorrupt(UsageError):
    """The archive of finished tasks cannot be read: reported, never reset (exit 2)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"{path}: the archive of finished tasks cannot be read ({detail}); it was NOT "
            f"reset and nothing was changed",
            hint=(f"`sqlite3 {path} 'PRAGMA integrity_check'` says what is wrong; restore it "
                  f"from a backup, or move it aside (`mv {path} {path}.broken`) to keep only "
                  f"the live and recent tasks of state.json"))
        self.path = path


class StoreBusy(WorkError):
    """Another orch process held the state lock for longer than we were willing to wait."""

    def __init__(self, lock_path: Path, timeout: float) -> None:
        super().__init__(f"{lock_path}: the task state is locked by another orch process "
                         f"(waited {timeout:g}s)",
                         hint="another `orch` command is running; try again when it is done")
        self.lock_path = lock_path


class TaskNotFound(UsageError):
    """No task, or more than one, matches an id prefix."""


class DuplicateTask(UsageError):
    """The issue already has a live (queued or running) task."""

    def __init__(self, live: Task) -> None:
        super().__init__(f"{live.repo}#{live.issue} already has a live task: {live.id} "
                         f"({live.status}{' on ' + live.host if live.host else ''})",
                         hint=f"follow it with `orch logs {live.id} -f`, or `orch cancel {live.id}`")
        self.task_id = live.id
        self.live = live


class InvalidTransition(UsageError):
    """A status change that makes no sense for the task's current status."""

    def __init__(self, task: Task, action: str, allowed: tuple[str, ...],
                 detail: str | None = None) -> None:
        msg = detail or (f"task {task.id} is {task.status}; only {_either(allowed)} task "
                         f"can be {action}")
        super().__init__(msg)
        self.task_id = task.id
        self.status = task.status


def _either(statuses: tuple[str, ...]) -> str:
    """('queued', 'running', 'lost') -> 'a queued, running or lost'."""
    words = list(statuses)
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return ("an " if text[0] in "aeiou" else "a ") + text


class NoSlot(WorkError):
    """Every slot of the host is held by a live task (another orchestrator took the last
    one since the placement was decided): the reservation is refused, nothing changed."""

    def __init__(self, host: str, slots: int) -> None:
        super().__init__(f"host {host} has no free slot ({slots} of {slots} held)",
                         hint="the next pass places the task again")
        self.host = host


class FenceLost(InvalidTransition):
    """A write made with a claim that is no longer the task's current one: another
    orchestrator took the task over after this one's lease ran out. Nothing changed.
    An InvalidTransition, so callers that leave a task moved on by someone else alone
    (launch.lose, again_or_give_up) do the same here."""

    def __init__(self, task: Task, fence: int) -> None:
        super().__init__(task, "changed", (), detail=(
            f"task {task.id}: this orch process's claim (fence {fence}) was taken over "
            f"(current fence {task.fence}, held by {task.claimed_by or 'nobody'}); "
            f"nothing was changed"))
        self.fence = fence


def redact_url(url: str) -> str:
    """A database URL without its password (never printed or logged with it)."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class StoreUnreachable(WorkError):
    """The database holding the state cannot be reached (exit 1); nothing was dispatched
    without a committed claim."""

    def __init__(self, url: str, detail: str) -> None:
        shown = redact_url(url)
        super().__init__(f"{shown}: the state database is unreachable ({_first_line(detail)})",
                         hint="check that the server runs and accepts connections from this "
                              "machine (`pg_isready -d URL`), the host and port, the user and "
                              "its password (PGPASSWORD or PGPASSFILE), and the database name")
        self.url = shown


class StateMoved(UsageError):
    """The state was migrated elsewhere (`orch store migrate`): it is read-only. `here`:
    the TinyDB state file, or the database (as shown); `back`: what `--to` takes to
    migrate back (default: the TinyDB state's directory)."""

    def __init__(self, here: Path | str, where: str, *, back: str | None = None) -> None:
        back = back or f"tinydb:{Path(here).parent}"
        super().__init__(f"{here}: this state was moved to {where} by `orch store migrate`; "
                         f"it is read-only and nothing was changed",
                         hint=f"set `state: {where}` in orch.yml (or $ORCH_STATE_URL), or "
                              f"migrate back with `orch store migrate --to {back}`")
        self.where = where


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no detail"])[0][:300]
