"""Replace a file atomically: temporary file in the same directory, fsync, os.replace.

A reader (or a node_exporter scrape) sees the old file or the new one, never half of one,
and a writer killed mid-write leaves the old file intact. One implementation for the
state file, YAML edits, the metrics textfile and the cache (orchestrator/cache.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_file(path: Path, text: str | bytes, *, mode: int | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write `text` (UTF-8, or bytes as they are) to `path` atomically; `mode` None keeps
    mkstemp's 0600.

    `before_replace` runs after the data is durable and before the rename (the store
    uses it to keep the previous version as a backup).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
