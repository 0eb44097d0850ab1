"""The example inventory is an example: a fresh checkout of orch has only
inventory/hosts.example.yml, which orch never loads by itself; with no inventory orch has
the embedded local host and `orch hosts` says how to add one. A ./inventory/hosts.yml the
user writes is still the default inventory (docs/SPEC.md, "Files and configuration")."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.app import NO_INVENTORY_HINT, NO_INVENTORY_NOTE
from orchestrator.cli import main
from orchestrator.fleet.inventory import load_inventory

REPO = Path(__file__).resolve().parent.parent


def run_orch(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The real CLI entry point, in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding what git ships under inventory/ (a fresh checkout's), as cwd;
    no config, inventory or state of the machine running the tests leaks in."""
    shipped = subprocess.run(["git", "-C", str(REPO), "ls-files", "inventory"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert shipped, "the repository ships its example inventory"
    for rel in shipped:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("ORCH_CONFIG", "ORCH_INVENTORY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_a_fresh_checkout_ships_only_the_example() -> None:
    shipped = subprocess.run(["git", "-C", str(REPO), "ls-files", "inventory"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert shipped == ["inventory/hosts.example.yml"]
    hosts = load_inventory(REPO / "inventory" / "hosts.example.yml")      # and it is valid
    assert [h.name for h in hosts] == ["backend-1", "frontend-1"]


def test_hosts_in_a_fresh_checkout_uses_the_local_host_and_says_how_to_add_one(
        checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_orch(["hosts", "--json"], capsys)
    rows = json.loads(out)                                   # stdout is JSON only
    assert [r["name"] for r in rows] == ["local"]
    assert rows[0]["reachable"] is True and code == 0
    assert "192.168.1." not in out + err                     # the example's addresses: never probed
    assert f"orch: {NO_INVENTORY_NOTE}\nhint: {NO_INVENTORY_HINT}\n" in err
    assert "orch inventory add" in err and "inventory/hosts.example.yml" in err

    code, out, err = run_orch(["hosts"], capsys)             # the table says it too
    assert code == 0 and "local" in out and "hint: add a host" in err


def test_a_hosts_yml_the_user_writes_is_the_default_inventory(
        checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (checkout / "inventory" / "hosts.yml").write_text(
        f"hosts:\n  mine:\n    connection: local\n    workspace_root: {checkout / 'work'}\n")
    code, out, err = run_orch(["hosts", "--json"], capsys)
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["mine"]
    assert NO_INVENTORY_NOTE not in err


def test_an_explicit_inventory_is_not_second_guessed(checkout: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "fleet.yml"
    inv.write_text(f"hosts:\n  elsewhere:\n    connection: local\n    workspace_root: {tmp_path / 'w'}\n")
    code, out, err = run_orch(["--inventory", str(inv), "hosts", "--json"], capsys)
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["elsewhere"]
    assert NO_INVENTORY_NOTE not in err
    code, _, err = run_orch(["--inventory", str(tmp_path / "missing.yml"), "hosts"], capsys)
    assert code == 2 and "inventory file not found" in err and "hosts.example.yml" in err
