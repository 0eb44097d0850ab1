"""Root conftest: loads every tests/fixtures_*.py as a pytest plugin, and sorts the tests
into two tiers.

Each fixture module owns one real part (sshd fleet, GitHub server, git remotes, ...),
so they can grow independently. The tier rule lives in tests/tiers.py: a test that starts
a real part, or orch or another Python as a process, is marked `integration`; the rest is
the fast tier (`make test-fast` = `pytest -m "not integration"`, `make test-integration` =
`-m integration`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.tiers import is_integration

pytest_plugins = sorted(
    f"tests.{p.stem}" for p in (Path(__file__).parent / "tests").glob("fixtures_*.py"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue
        function = getattr(item, "originalname", item.name)
        if is_integration(item.path, function, getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_CACHE_HOME: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """orch's cache (orchestrator/cache.py) in a directory of this run, for the tests and
    every orch they start: never the user's ~/.cache/orch."""
    global _CACHE_HOME
    _CACHE_HOME = tempfile.mkdtemp(prefix="orch-test-cache-")
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_HOME:
        shutil.rmtree(_CACHE_HOME, ignore_errors=True)
