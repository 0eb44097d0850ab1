"""The read-only commands people run most (`orch tasks`, `orch show`) import only what
they use: asyncio costs ~35 ms at start-up here, and `orch tasks` has a 0.3 s budget
(issue 10). Checked in a fresh interpreter, on what it imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = ("import sys\nfrom orchestrator.cli import main\n"
        "try:\n    main(['--state-dir', sys.argv[1], *sys.argv[2:]])\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "heavy = [m for m in ('asyncio', 'asyncssh', 'github', 'jinja2') if m in sys.modules]\n"
        "assert not heavy, f'imported {heavy}'\n"
        "sys.exit(code)\n")


@pytest.mark.parametrize("args", [["tasks", "--json"], ["tasks"], ["show", "nosuchid"]])
def test_task_listings_import_no_event_loop_and_no_forge(tmp_path, args):
    r = subprocess.run([sys.executable, "-c", CODE, str(tmp_path / "state"), *args],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "imported" not in r.stderr, r.stderr
    assert r.returncode in (0, 2), r.stderr          # `show` of an unknown id: exit 2
