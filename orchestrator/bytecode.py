"""Jinja2 templates compiled once and kept in orch's cache (orchestrator/cache.py).

Compiling a template costs more than rendering it (the prompts: ~12 ms for the three a
dispatch renders, the lexer's set-up included; the playbook's bodies: ~15 ms), and the
same templates are compiled by every orch process. `Bytecode` is Jinja2's public
BytecodeCache interface over a dict of compiled templates by Jinja2's bucket key. Jinja2
checks every entry against its template's source (a changed template is compiled
again); the entry's cache key covers what shapes the compiled code besides the source
(the environment's options: the source of the module that sets them, Jinja2's and
Python's versions). An entry that does not load is compiled again, never an error.
"""

from __future__ import annotations

import types
from typing import Any

import jinja2
import jinja2.bccache

from . import cache


class Bytecode(jinja2.BytecodeCache):
    """Compiled templates in memory (`entries`); `kept` reads them from a cache entry,
    `save` writes them back when a template was compiled meanwhile."""

    def __init__(self, entries: dict[str, bytes] | None = None, *, entry: str | None = None,
                 key: str = "") -> None:
        self.entries: dict[str, bytes] = dict(entries or {})
        self.changed = False
        self._entry, self._key = entry, key

    @classmethod
    def kept(cls, entry: str, key: str) -> Bytecode:
        """The compiled templates cached under `entry` for `key` (none on a miss)."""
        return cls(cls.entries_in(cache.load(entry, key)), entry=entry, key=key)

    @staticmethod
    def entries_in(value: Any) -> dict[str, bytes] | None:
        """`value` if it has the shape of `entries` (read back from a cache), else None."""
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, bytes)
                                           for k, v in value.items()):
            return value
        return None

    def save(self) -> None:
        if self.changed and self._entry is not None:
            cache.store(self._entry, self._key, self.entries)
            self.changed = False

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self.entries.get(bucket.key)
        if data is None:
            return
        try:
            bucket.bytecode_from_string(data)
        except Exception:  # noqa: BLE001 - unreadable: compile
            bucket.reset()
        if bucket.code is not None and not isinstance(bucket.code, types.CodeType):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.entries[bucket.key] = bucket.bytecode_to_string()
        self.changed = True


def code_key(*sources: str) -> str:
    """The part of a cache key that stands for the code: these modules' source files
    (their `__file__`), Jinja2's version and Python's."""
    return cache.key(jinja2.__version__.encode(), *(cache.file_bytes(s) for s in sources))
