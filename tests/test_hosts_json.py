"""`orch hosts --json` prints without importing render/ (rich): its printer must stay
byte-for-byte render.print_json, and the command must not pull rich in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.cli import hosts as cli_hosts
from orchestrator.render import print_json

DATA = [{"name": "h1", "address": "10.0.0.1", "reachable": True, "specialties": ["a", "é"],
         "load1": 0.5, "cpus": None, "error": None, "path": Path("/x"), "nested": {"k": [1, 2]}},
        {"name": "h2", "unicode": "ünï ✓", "quote": "a\"b\\c\n"}]


def test_json_printer_is_render_print_json(capsys):
    for data in (DATA, [], {"a": 1}):
        print_json(data)
        expected = capsys.readouterr().out
        cli_hosts.print_json(data)
        assert capsys.readouterr().out == expected


def test_hosts_json_imports_no_rich(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  here:\n    connection: local\n"
                   f"    workspace_root: {tmp_path / 'ws'}\n    agent: /bin/true\n")
    code = ("import sys\nfrom orchestrator.cli import main\n"
            "try:\n    main(['--inventory', sys.argv[1], '--state-dir', sys.argv[2], 'hosts', '--json'])\n"
            "except SystemExit:\n    pass\n"
            "assert not [m for m in sys.modules if m.startswith(('rich', 'ruamel'))], 'imported'\n")
    r = subprocess.run([sys.executable, "-c", code, str(inv), str(tmp_path / "state")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"name": "here"' in r.stdout
