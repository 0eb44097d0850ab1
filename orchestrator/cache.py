"""orch's cache: results derived from files, kept between runs because reading them back
costs less than making them again (job/steps.py: the dispatch playbook parsed, validated
and compiled, ~50 ms of every dispatch otherwise).

Where: `$XDG_CACHE_HOME/orch`, else `~/.cache/orch` (the XDG base-directory rule for
data that may be deleted at any time). Not the state directory: that one holds what must
not be lost, and is only known once orch.yml has been read, while a cache entry is the
same whatever the config.

One file per entry, named by what it is for, holding the key it was made for (a hash of
every input: a changed input is a different key, so a stale entry is never served) and
the value, in marshal (the stdlib's format for Python's own data and code objects).
Reading never fails: a missing, unreadable, foreign or corrupt entry is a miss, and a
write that fails is skipped (the next run makes the value again). The directory is
private (0700) and an entry not owned by this user, or writable by others, is not read:
compiled code is loaded from it.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .atomic import replace_file
from .private import private_dir

_FORMAT = "orch-cache-1"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/orch (an absolute $XDG_CACHE_HOME only, as the spec says), else
    ~/.cache/orch; not created here."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path("~/.cache").expanduser()
    return root / "orch"


def load(name: str, key: str) -> Any | None:
    """The value stored under `name` for `key`; None for a miss of any kind."""
    try:
        with open(cache_dir() / name, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
            entry = marshal.loads(fh.read())
    except Exception:  # noqa: BLE001 - missing, unreadable or corrupt: recompute
        return None
    if not (isinstance(entry, tuple) and len(entry) == 3 and entry[0] == _FORMAT
            and entry[1] == key):
        return None
    return entry[2]


def store(name: str, key: str, value: Any) -> None:
    """Keep `value` under `name` for `key` (replacing what was there), if it can be."""
    try:
        data = marshal.dumps((_FORMAT, key, value))
        replace_file(private_dir(cache_dir()) / name, data)
    except (OSError, ValueError):    # read-only home, full disk, a value marshal refuses
        pass


def key(*parts: bytes) -> str:
    """A key for an entry made from `parts` (each one delimited: no two lists of parts
    give the same key) by this Python."""
    h = hashlib.sha256()
    for part in (sys.version.encode(), *parts):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def file_bytes(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes for a key (a module's `__file__`, say). One that cannot be read
    gives random bytes: a key no entry was made for, so nothing stale is ever served."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return os.urandom(16)


def entry_name(kind: str, path: str | os.PathLike[str]) -> str:
    """The entry of `kind` for the file or directory at `path` (one per real path, so
    an edited file replaces its entry instead of adding one)."""
    return f"{kind}-" + hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:20]
