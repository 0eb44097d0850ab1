"""Where orch remembers its tasks: the store API the rest of orch uses, and its backends.

A backend is one row of BACKENDS, chosen by the scheme of the state's address
(`state:` in orch.yml, or $ORCH_STATE_URL): `tinydb` (the default, and the embedded demo:
live and recent tasks in a TinyDB file, finished ones in an SQLite archive beside it,
under one cross-process file lock; store/filestore.py) or `postgresql` (one database
several orchestrators share; store/postgres.py, needs `pip install orch[postgres]`).
Both implement the same API and the same rules (store/transitions.py), checked by one
contract test suite (tests/test_store_contract.py). Callers import from here, not from a
backend, so a backend can change under them. docs/state.md tells when to use which.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.tally import TaskTally
from ..errors import UsageError
from ..registry import lookup
from .clock import now_iso, parse_time
from .errors import (
    ArchiveCorrupt,
    DuplicateTask,
    FenceLost,
    InvalidTransition,
    NoSlot,
    StateCorrupt,
    StateMoved,
    StoreBusy,
    StoreUnreachable,
    TaskNotFound,
    redact_url,
)
from .filestore import Store

STATE_URL_ENV = "ORCH_STATE_URL"


@dataclass(frozen=True)
class BackendKind:
    name: str
    schemes: tuple[str, ...]   # the address schemes that select it
    target: str                # "module:Class", imported on first use (psycopg is optional)

    def open(self, address: str, state_dir: Path) -> Any:
        module, _, name = self.target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls.from_address(address, state_dir)


BACKENDS: dict[str, BackendKind] = {k.name: k for k in (
    BackendKind("tinydb", ("tinydb",), "orchestrator.store.filestore:Store"),
    BackendKind("postgresql", ("postgresql", "postgres"), "orchestrator.store.postgres:PgStore"),
)}


def backend_of(address: str) -> BackendKind:
    """The backend an address selects ("tinydb:PATH", "postgresql://...")."""
    scheme = address.split(":", 1)[0].lower() if ":" in address else ""
    by_scheme = {s: k for k in BACKENDS.values() for s in k.schemes}
    return lookup(by_scheme, scheme, "state backend",
                  hint="`state:` is tinydb:PATH or postgresql://USER@HOST:PORT/DB")


def open_store(address: str | None, state_dir: Path) -> Store:
    """The store at `address` (None: the TinyDB state in `state_dir`)."""
    if not address:
        return Store(state_dir)
    if "://" not in address and not address.startswith("tinydb:"):
        raise UsageError(f"state {redact_url(address)!r} is not an address",
                         hint="`state:` is tinydb:PATH or postgresql://USER@HOST:PORT/DB")
    # Every backend has Store's API (tests/test_store_contract.py holds them to it).
    store: Store = backend_of(address).open(address, state_dir)
    return store


__all__ = ["BACKENDS", "STATE_URL_ENV", "ArchiveCorrupt", "BackendKind", "DuplicateTask",
           "FenceLost", "InvalidTransition", "NoSlot", "StateCorrupt", "StateMoved", "Store",
           "StoreBusy", "StoreUnreachable", "TaskNotFound", "TaskTally", "backend_of",
           "now_iso", "open_store", "parse_time", "redact_url"]
