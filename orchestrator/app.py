"""The core API the CLI stands on: where config, inventory and state are, loaded lazily.

Resolution order follows docs/SPEC.md "Files and configuration". Nothing is read until a
command asks, so `orch inventory list` never opens the state file and `orch hosts`
never touches GitHub.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from .config.settings import Settings
from .core.models import SPECIALTIES, Host
from .errors import UsageError
from .private import private_dir

if TYPE_CHECKING:
    from .fleet.pool import Fleet
    from .forge.base import Forge
    from .forge.local import LocalForge
    from .store import Store

LOCAL_HOST_NAME = "local"
DEFAULT_INVENTORY = Path("inventory/hosts.yml")
# Said by `orch hosts` when no inventory is found: not an error (the embedded local host
# works), but a fresh user needs to know how to add the real fleet.
NO_INVENTORY_NOTE = "no inventory file: orch uses the embedded local host (this machine)"
NO_INVENTORY_HINT = ("add a host with `orch inventory add NAME --address ADDRESS` (it writes "
                     f"./{DEFAULT_INVENTORY}), or copy inventory/hosts.example.yml from orch's "
                     "repository there and edit it; --inventory PATH or $ORCH_INVENTORY name another file")


def find_config(cli_path: str | None) -> Path | None:
    """--config, $ORCH_CONFIG, ./orch.yml, ~/.config/orch/orch.yml; None: built-in defaults."""
    explicit = cli_path or os.environ.get("ORCH_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UsageError(f"{p}: config file not found",
                             hint="check --config / $ORCH_CONFIG, or remove it to use the defaults")
        return p
    for candidate in (Path("orch.yml"), Path("~/.config/orch/orch.yml").expanduser()):
        if candidate.is_file():
            return candidate
    return None


class App:
    def __init__(self, config_path: str | None = None, inventory_path: str | None = None,
                 state_dir: str | None = None) -> None:
        self._config_arg = config_path
        self._inventory_arg = inventory_path
        self._state_arg = state_dir

    @property
    def state_dir_given(self) -> str | None:
        """The state dir the command line named (--state-dir), if it named one."""
        return self._state_arg

    def sandbox(self, state_dir: str, settings: Settings) -> App:
        """An App with this one's config file but `settings` in force, its own state dir
        and the embedded local host alone, whatever the inventory (`orch demo`)."""
        app = App(config_path=self._config_arg, inventory_path=None, state_dir=state_dir)
        app.__dict__["settings"] = settings           # the cached_property's value
        app.__dict__["hosts"] = [app.local_host()]
        return app

    @cached_property
    def settings(self) -> Settings:
        from .config.load import load_settings
        path = find_config(self._config_arg)
        return load_settings(path) if path else Settings()

    @cached_property
    def state_dir(self) -> Path:
        raw = self._state_arg or os.environ.get("ORCH_HOME") or self.settings.state_dir \
            or "~/.local/state/orch"
        # Absolute: the local host's workspace lives here and its jobs run from $HOME.
        return private_dir(Path(raw).expanduser().absolute())

    @cached_property
    def inventory_path(self) -> Path | None:
        """The hosts.yml in force, or None for the embedded default (one local host)."""
        explicit = self._inventory_arg or os.environ.get("ORCH_INVENTORY") or self.settings.inventory
        if explicit:
            p = Path(explicit).expanduser()
            if not p.is_file():
                raise UsageError(f"{p}: inventory file not found",
                                 hint="create it (see inventory/hosts.example.yml) or `orch inventory add`")
            return p
        return DEFAULT_INVENTORY if DEFAULT_INVENTORY.is_file() else None

    @cached_property
    def hosts(self) -> list[Host]:
        path = self.inventory_path
        if path is None:
            return [self.local_host()]
        from .fleet.inventory import load_inventory
        return load_inventory(path)

    def local_host(self) -> Host:
        """The embedded default: this machine, every specialty, workspace in the state dir."""
        return Host(name=LOCAL_HOST_NAME, address="localhost", connection="local",
                    specialties=SPECIALTIES, workspace_root=str(self.state_dir / "work"))

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise UsageError(f"no host named {name!r} in the inventory (known: {known})")

    def task_log_path(self, task_id: str) -> Path:
        """Where orch keeps its own copy of a task's job log (the workspace may be gone)."""
        return private_dir(self.state_dir / "logs") / f"{task_id}.log"

    def fleet(self, hosts: list[Host] | None = None) -> Fleet:
        """The hosts of one run (every host, or `hosts`), with the agent-version cache of
        the state dir: a probe by any command skips `<agent> --version` on a host whose
        agent binary has not changed (fleet/agent_cache.py)."""
        from .fleet.agent_cache import AgentVersionCache
        from .fleet.pool import Fleet
        return Fleet(self.hosts if hosts is None else hosts, self.settings,
                     version_cache=AgentVersionCache(self.state_dir))

    @cached_property
    def store(self) -> Store:
        from .store import Store
        return Store(self.state_dir)

    @overload
    def forge(self, kind: Literal["local"]) -> LocalForge: ...
    @overload
    def forge(self, kind: str) -> Forge: ...

    def forge(self, kind: str) -> Forge:
        """A new forge of `kind` (a row of forge/__init__.py FORGES) on these settings."""
        from .forge import make_forge
        return make_forge(kind, self.settings, self.state_dir)
