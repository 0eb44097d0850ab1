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


# A command run the way the console script runs it, its collections counted from main()'s
# start (gc.callbacks); "control" runs it with the pause taken out.
COUNTED = """import contextlib, gc, sys
import orchestrator.cli as entry
if sys.argv[1] == "control":
    entry.collector_paused = contextlib.nullcontext
seen = []
gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(info["generation"]))
try:
    entry.main(sys.argv[2:])
finally:
    print(f"collections={len(seen)} enabled={gc.isenabled()}", file=sys.stderr)
"""


def _counted(tmp_path, mode: str) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-c", COUNTED, mode, "--state-dir", str(tmp_path / "state"),
                        "tasks", "--json"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr
    assert "enabled=True" in p.stderr, p.stderr            # given back at the end
    return int(p.stderr.rsplit("collections=", 1)[1].split()[0]), p.stderr


def test_start_up_runs_without_the_collector_and_gives_it_back(tmp_path):
    paused, err = _counted(tmp_path, "paused")
    control, _ = _counted(tmp_path, "control")
    # With the collector on, importing the CLI and the store triggers dozens; paused, at
    # most the one right after it is given back, as main() returns.
    assert control >= 20 and paused <= 1, (control, err)


def test_a_long_command_gets_the_collector_back_and_a_disabled_one_stays_off():
    import gc
    import time

    from orchestrator.cli import collector_paused
    assert gc.isenabled()
    with collector_paused(0.2):
        assert not gc.isenabled()
        deadline = time.monotonic() + 10
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.isenabled()          # the timer gave it back while the block ran
        assert gc.get_freeze_count() > 0   # what was made before: never walked again
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused(0.05):
            time.sleep(0.2)
            assert not gc.isenabled()  # off on purpose before: the timer leaves it off
        assert not gc.isenabled()
    finally:
        gc.enable()
