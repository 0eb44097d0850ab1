"""The hot state file: TinyDB's tables in state.json, replaced atomically, written once per
locked section.

Why it is built this way
- Writes go to a temporary file in the same directory, are fsynced, and replace the
  state with `os.replace` (atomic.replace_file), so a reader (which takes no lock) sees
  either the old or the new file, never half of one, and a writer killed mid-write leaves
  the old state intact. The file is 0600: it names every repository, issue and host.
  The previous version is kept as `state.json.bak` (a hard link to the replaced file, so
  it costs no copy).
- Unlike TinyDB's JSONStorage it keeps no file handle open: each read outside a locked
  section opens the file anew, so it sees the latest replaced version.
- Inside a locked section (`Store.locked()`, the cross-process lock held) the file is read
  once, every TinyDB operation works on that copy, and the result is written once when the
  outermost section ends: a dispatch's "no live task, a slot free, create, start" is one
  read and one write instead of one of each per step, and it becomes durable all at once.
  The section belongs to the thread holding the lock; other threads read the file.
- A file that does not parse is reported (`StateCorrupt`, exit 2) and never reset:
  losing the record of running jobs would make orch dispatch an issue twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from ..atomic import replace_file
from .errors import BACKUP_SUFFIX, StateCorrupt

Tables = dict[str, Any]
STATE_MODE = 0o600


class _Section(threading.local):
    """One thread's open locked section on one state file."""

    depth = 0
    data: Tables | None = None
    dirty = False


_SECTIONS: dict[Path, _Section] = {}
_SECTIONS_GUARD = threading.Lock()


def _section_for(path: Path) -> _Section:
    """Every storage on the same file in this process shares its sections (per thread), as
    every Store on one state dir shares its lock: a Store inside another's section sees
    what that section has written so far."""
    with _SECTIONS_GUARD:
        return _SECTIONS.setdefault(path, _Section())


class HotStorage(Storage):
    """TinyDB storage: atomic replace, refuses garbage, one write per locked section."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self._section = _section_for(self.path)

    # ------------------------------------------------------------- TinyDB's interface
    def read(self) -> Tables | None:
        s = self._section
        if not s.depth:
            return self.read_file()
        if s.data is None:
            s.data = self.read_file() or {}
        return s.data

    def write(self, data: Tables) -> None:
        s = self._section
        if not s.depth:
            self.write_file(data)
            return
        s.data, s.dirty = data, True

    def close(self) -> None:
        pass

    # ------------------------------------------------------------- sections
    @property
    def in_section(self) -> bool:
        return self._section.depth > 0

    def begin(self) -> None:
        """Open (or re-enter) this thread's section; the caller holds the state lock."""
        s = self._section
        if not s.depth:
            s.data, s.dirty = None, False
        s.depth += 1

    def touch(self) -> None:
        """Have the outermost section write the file even if nothing changed (so that
        `prepare` runs: the archive step of a state written by an older orch)."""
        self.read()
        self._section.dirty = True

    def end(self, prepare: Callable[[Tables], Tables]) -> None:
        """Close the section; the outermost one writes what it changed, through `prepare`.

        Also when the section ends by an exception: every store call that returned inside
        it did its work, as it would have without the section. A write that fails leaves
        the file as it was and forgets the section's changes (the next read sees the file).
        """
        s = self._section
        s.depth -= 1
        if s.depth:
            return
        data, dirty = s.data, s.dirty
        s.data, s.dirty = None, False
        if dirty and data is not None:
            self.write_file(prepare(data))

    # ------------------------------------------------------------- the file
    def read_file(self) -> Tables | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            # An empty file is a fresh start unless there was state before it.
            if self.backup.exists():
                raise StateCorrupt(self.path, "the file is empty but a backup exists")
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateCorrupt(self.path, f"not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StateCorrupt(self.path, "expected a JSON object of tables")
        return data

    def write_file(self, data: Tables) -> None:
        text = encode(data)
        replace_file(self.path, text, mode=STATE_MODE, before_replace=self._backup_current)
        fsync_dir(self.path.parent)
        _remove_stale_temps(self.path.parent, self.path.name)

    def _backup_current(self) -> None:
        """Keep the version about to be replaced as state.json.bak.

        Every write follows a read of the file (validated) under the lock, so the current
        file is known good. It is never modified in place, so a hard link preserves it
        exactly (and its 0600 mode); copying is the fallback where links are unsupported.
        """
        if not self.path.exists():
            return
        tmp = self.backup.with_name(f".{self.backup.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.path, tmp)
            except OSError:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, STATE_MODE)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(self.path.read_bytes())
            os.replace(tmp, self.backup)
        except OSError:
            tmp.unlink(missing_ok=True)   # a missing backup must not block the state write


def encode(data: Tables) -> str:
    """The file's text: one line per record, keys sorted, so a person can read, grep and
    diff it. Each record is encoded by the json module's C encoder, which `indent=` turns
    off: a whole-file `json.dumps(indent=1)` took ~9 ms for the hot file's 100 tasks, and a
    dispatch writes it five times. Any JSON reader (TinyDB's, the previous orch's) reads
    it: the layout is whitespace only."""
    def one(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    def table(rows: dict[str, Any]) -> str:
        if not rows:
            return "{}"
        return "{\n" + ",\n".join(f"  {one(k)}: {one(v)}" for k, v in sorted(rows.items())) + "\n }"

    if not data:
        return "{}\n"
    return "{\n" + ",\n".join(f" {one(name)}: {table(rows) if isinstance(rows, dict) else one(rows)}"
                              for name, rows in sorted(data.items())) + "\n}\n"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file durable (POSIX: the entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(directory: Path, name: str, older_than: float = 60.0) -> None:
    """Temp files left by a writer killed mid-write; harmless, but tidy them up."""
    cutoff = time.time() - older_than
    for p in directory.glob(f".{name}*.tmp"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass
