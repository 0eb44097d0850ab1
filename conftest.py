"""Root conftest: loads every tests/fixtures_*.py as a pytest plugin.

Each fixture module owns one real part (sshd fleet, GitHub server, git remotes, ...),
so they can grow independently.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.{p.stem}" for p in (Path(__file__).parent / "tests").glob("fixtures_*.py"))
