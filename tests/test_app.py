"""App: where config, inventory and state are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.app import App, find_config
from orchestrator.errors import UsageError


def test_relative_state_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCH_HOME", "rel/state")
    app = App()
    assert app.state_dir == tmp_path / "rel" / "state"
    assert app.state_dir.is_dir()
    # The embedded local host's workspace is absolute too: its jobs run from $HOME.
    assert Path(app.local_host().workspace_root).is_absolute()


def test_no_inventory_means_one_local_host(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCH_INVENTORY", raising=False)
    app = App(state_dir=str(tmp_path / "s"))
    [host] = app.hosts
    assert host.connection == "local" and host.name == "local"


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="config file not found"):
        find_config(str(tmp_path / "nope.yml"))
