"""The CLI's exit skips the interpreter's last garbage collection (orchestrator/cli
main(): gc.freeze at exit), and still says what it has to say and exits with its code."""

from __future__ import annotations

import subprocess
import sys

# Registered before main() runs, so it runs after main()'s own exit handler (atexit is
# last in, first out): what it sees is what the interpreter's final collection sees.
CHILD = """import atexit, gc, sys
atexit.register(lambda: print(f"frozen={gc.get_freeze_count()}", file=sys.stderr))
from orchestrator.cli import main
main(sys.argv[1:])
"""


def test_every_object_is_frozen_before_the_last_collection(tmp_path):
    p = subprocess.run([sys.executable, "-c", CHILD, "--state-dir", str(tmp_path / "state"),
                        "tasks", "--json"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
    frozen = int(p.stderr.rsplit("frozen=", 1)[1].split()[0])
    assert frozen > 10_000, p.stderr       # the imports' objects, skipped by the collector
