"""The forges of one run: one client per forge kind, calls one at a time, fail fast.

`orch poll` talks to the forge from worker threads (PyGithub is blocking) and from many
tasks at once; PyGithub's connection object is not thread-safe, so calls run one at a
time. Once the forge is found unavailable, every further call of the run fails at once
(a pass does not wait out the retries again for each issue), except for the repository
facts a job start needs (clone URL, default branch): those are remembered once read, and
the pass reads them before it reserves a slot, so starting a reserved job never waits on
(or fails for) a forge that went away meanwhile.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from ..app import App
from ..errors import ForgeUnavailable
from ..forge.base import Forge


class SerialForge:
    """A forge whose calls run one at a time and fail fast once it is unavailable."""

    MEMO = frozenset({"clone_url", "default_branch"})

    def __init__(self, forge: Forge) -> None:
        self._forge = forge
        self.kind = forge.kind
        self._lock = threading.Lock()
        self._memo: dict[tuple, object] = {}
        self.down: ForgeUnavailable | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._forge, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            with self._lock:
                if name in self.MEMO and key in self._memo:
                    return self._memo[key]
                if self.down is not None:
                    raise ForgeUnavailable(self.down.message, hint=self.down.hint)
                try:
                    value = attr(*args, **kwargs)
                except ForgeUnavailable as exc:
                    self.down = exc
                    raise
                if name in self.MEMO:
                    self._memo[key] = value
                return value
        return call


class Forges:
    """kind -> the run's SerialForge of that kind, built on first use (PyGithub clients
    are not free). Callable, as reconcile's `forge_for`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._made: dict[str, SerialForge] = {}

    def __call__(self, kind: str) -> Forge:
        if kind not in self._made:
            self._made[kind] = SerialForge(self.app.forge(kind))
        return cast(Forge, self._made[kind])   # a Forge by delegation
