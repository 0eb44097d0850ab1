"""Where orch remembers its tasks: the store API the rest of orch uses.

`filestore` is the default backend: live and recent tasks in a TinyDB file, finished ones
in an SQLite archive beside it, under one cross-process lock (docs/state.md). Callers
import from here, not from a backend, so a backend can change under them.
"""

from __future__ import annotations

from ..core.tally import TaskTally
from .errors import (
                     ArchiveCorrupt,
                     DuplicateTask,
                     InvalidTransition,
                     StateCorrupt,
                     StoreBusy,
                     TaskNotFound,
)
from .filestore import Store, now_iso, parse_time

__all__ = ["ArchiveCorrupt", "DuplicateTask", "InvalidTransition", "StateCorrupt", "Store",
           "StoreBusy", "TaskNotFound", "TaskTally", "now_iso", "parse_time"]
