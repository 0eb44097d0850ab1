"""The agent's version per host, remembered between probes: `<state_dir>/agent-versions.json`.

Why: `<agent> --version` is the largest cost of a probe on a real fleet (the CLI starts
in 0.1-0.3 s, a node install slower; the rest of the probe is a few builtins). The probe
script (fleet/facts.py) prints the agent's key every time, from one `stat` of the file
the agent command resolved to (path, size, mtime, inode; symlinks followed), and runs
`--version` only when the key orch passes in differs from it. So an unchanged host costs
no extra process, and replacing the binary (an update, a reinstall) is seen at once.

Entry: host -> {"command", "key", "version", "at"}. It is used only for the same agent
command, and only while younger than MAX_AGE: a wrapper or `npx ...` can change what it
runs without its own file changing, so even an unchanged key is re-checked now and then.

The file is orch's own (0600), replaced atomically (atomic.replace_file) under a file
lock, and written only when something changed; a corrupted or missing file is an empty
cache, never an error (the next probe simply asks the hosts again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import replace_file
from ..core.models import HostFacts

FILE = "agent-versions.json"
LOCK = "agent-versions.json.lock"
MAX_AGE = 6 * 3600.0         # seconds an entry may be used without asking the host again


@dataclass(frozen=True)
class Cached:
    """What the last probe learned: the binary's key and the version it printed."""

    key: str
    version: str


class AgentVersionCache:
    def __init__(self, state_dir: Path, *, max_age: float = MAX_AGE,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / FILE
        self.max_age = max_age
        self.clock = clock
        self._entries: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = _read(self.path)
        return self._entries

    def lookup(self, host: str, command: str) -> Cached | None:
        """The cached version for `host` running `command`, if still fit to use."""
        e = self._load().get(host)
        if not e or e.get("command") != command or not e.get("key") or not e.get("version"):
            return None
        at = e.get("at")
        if not isinstance(at, (int, float)) or not 0 <= self.clock() - at <= self.max_age:
            return None
        return Cached(str(e["key"]), str(e["version"]))

    def record(self, probed: Iterable[tuple[HostFacts, str]]) -> None:
        """Remember the versions these probes ran `--version` for (facts, agent command);
        a version taken from the cache, or no version at all, changes nothing."""
        fresh = {f.name: {"command": command, "key": f.agent_key, "version": f.agent_version,
                          "at": self.clock()}
                 for f, command in probed
                 if f.agent_version and f.agent_key and not f.agent_version_cached}
        if not fresh:
            return
        from filelock import FileLock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path.parent / LOCK), timeout=30):
            entries = _read(self.path)          # again, under the lock: others may have written
            entries.update(fresh)
            replace_file(self.path, json.dumps({"version": 1, "hosts": entries}, indent=2,
                                               sort_keys=True) + "\n")
        self._entries = entries


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        return {}
    return {str(k): v for k, v in hosts.items() if isinstance(v, dict)}
