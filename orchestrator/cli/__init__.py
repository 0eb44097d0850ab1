"""The `orch` command line: a thin layer that parses, calls the core, and renders.

`main` is the console script (setup.cfg). It imports nothing heavy itself: the command
group (cli/group.py: click, then the one subcommand asked for) is imported inside
`collector_paused`, so that the start-up's imports run without the garbage collector.
"""

from __future__ import annotations

import atexit
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Seconds a command runs without the cyclic garbage collector (see collector_paused).
GC_PAUSE = 3.0


@contextmanager
def collector_paused(seconds: float = GC_PAUSE) -> Iterator[None]:
    """The cyclic garbage collector off for the first `seconds` of the block, then on
    again; as it was when the block ends, whichever comes first.

    Why: a command's start-up imports click, asyncssh, PyGithub and orch, ~200,000
    long-lived objects, and the collections they trigger walk them again and again: about
    150 ms of CPU in one `orch dispatch` (140 young, 12 middle and one full collection;
    bench/README.md). Start-up makes next to no cyclic garbage, and reference counting
    frees the rest as usual. A command that runs longer (`logs -f`, a dispatch following
    its job, `top`) has the collector back after `seconds`, from a timer thread (the gc
    module's calls are safe from any thread).

    Given back frozen first (gc.freeze): everything made so far is long-lived, and left
    young, the first collection after the pause would walk all of it at once (~150 ms).
    A test calling main() in-process has its objects frozen too; the collector frees
    whatever is made after."""
    if not gc.isenabled():          # someone turned it off on purpose: leave it so
        yield
        return
    gc.disable()
    timer = threading.Timer(seconds, _resume)
    timer.daemon = True             # never holds the process at exit
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _resume()


def _resume() -> None:
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `orch ARGS` (default: sys.argv), as cli/group.py runs it."""
    # At exit the interpreter's last garbage collection walks every object the imports
    # made (PyGithub's hundreds of classes, asyncssh, rich): 0.1-0.3 s of CPU for any
    # command here. Frozen, they are skipped. Nothing relies on that collection: state
    # and logs are written with fsync and closed (orchestrator/atomic.py), connections
    # are closed by their owners, and the OS takes back the rest. atexit, so that a test
    # calling main() in-process keeps its collector until the test run ends.
    atexit.register(gc.freeze)
    with collector_paused():
        from .group import run
        run(argv)
