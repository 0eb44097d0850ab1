"""Where orch remembers its tasks: the store API the rest of orch uses.

`filestore` is the TinyDB file under a cross-process lock (the default and the demo's).
Callers import from here, not from a backend, so a backend can change under them.
"""

from __future__ import annotations

from .filestore import (
                        DuplicateTask,
                        InvalidTransition,
                        StateCorrupt,
                        Store,
                        StoreBusy,
                        TaskNotFound,
                        now_iso,
                        parse_time,
)

__all__ = ["DuplicateTask", "InvalidTransition", "StateCorrupt", "Store", "StoreBusy",
           "TaskNotFound", "now_iso", "parse_time"]
