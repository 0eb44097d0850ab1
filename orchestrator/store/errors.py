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
