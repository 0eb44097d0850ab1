"""orch's own files on this machine are its user's alone: directories 0700, files and
locks 0600.

The state directory holds the task table, copies of job logs (the issue's text, the
agent's output) and, for a `connection: local` host, the workspaces: nothing another
local user should read, or write (a lock file they could hold would stall orch).
"""

from __future__ import annotations

from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600     # state.json, log copies, lock files (filelock's `mode=`)


def private_dir(path: Path) -> Path:
    """`path` as a directory, created (with its parents) 0700 when missing; an existing
    directory is left as it is (the operator may share it on purpose)."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)
    return path
