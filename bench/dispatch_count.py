"""Count what one `orch dispatch` does: SSH connections and round trips by phase, state
writes by the lifecycle call that made them. Run by bench/dispatch.py with the Python of
the orch build being counted (the installed one, or a previous version's venv):

    PYTHON bench/dispatch_count.py ORCH_ARGS...      -> one JSON object on the last line

The orch CLI runs in this process, unchanged; the counting wraps the transport's methods
and the state file's write from the outside (instrumentation of the benchmark only, never
part of orch). Timing is measured elsewhere, without it: as a whole `orch` process.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections import Counter

# What a round trip is for, told by the script it sends (job/remote.py, fleet/facts.py,
# lifecycle/finalize.py); checked in order.
PHASES = (("upload+start", "cat > .upload"), ("follow", "@@orch-follow"),
          ("status", "@alive="), ("stop+remove", "rm -rf"), ("fetch log", "/job.log"))

ssh: Counter[str] = Counter()
connections = Counter()
writes: list[str] = []


def phase(command: str, probe_command: str) -> str:
    if command == probe_command:
        return "probe"
    for name, mark in PHASES:
        if mark in command:
            return name
    return "other"


def caller() -> str:
    """The lifecycle (or cli) function whose store call led to this write."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename.replace("\\", "/")
        if "/orchestrator/lifecycle/" in f or "/orchestrator/cli/" in f:
            return f"{f.rsplit('/orchestrator/', 1)[1]}:{frame.name}"
    return "?"


def install() -> None:
    from orchestrator.fleet.facts import PROBE_COMMAND
    from orchestrator.transport import ssh as transport
    conn_cls = transport.SSHConnection
    run, stream, opener = conn_cls.run, conn_cls.stream, conn_cls.open.__func__

    async def counted_run(self, command, *a, **kw):
        ssh[phase(command, PROBE_COMMAND)] += 1
        return await run(self, command, *a, **kw)

    def counted_stream(self, command, *a, **kw):
        ssh[phase(command, PROBE_COMMAND)] += 1
        return stream(self, command, *a, **kw)

    async def counted_open(cls, *a, **kw):
        connections["ssh"] += 1
        return await opener(cls, *a, **kw)

    conn_cls.run, conn_cls.stream = counted_run, counted_stream
    conn_cls.open = classmethod(counted_open)
    try:                                    # this version: hot file + archive
        from orchestrator.store import archive, hotfile
        write = hotfile.HotStorage.write_file

        def counted_write(self, data):
            writes.append("state.json " + caller())
            return write(self, data)
        hotfile.HotStorage.write_file = counted_write
        put = archive.Archive.put

        def counted_put(self, records):
            if records:
                writes.append(f"archive ({len(records)} tasks) " + caller())
            return put(self, records)
        archive.Archive.put = counted_put
    except ImportError:                     # the previous version: one file
        from orchestrator.store import filestore
        write = filestore.AtomicJSONStorage.write

        def counted_old(self, data):
            writes.append("state.json " + caller())
            return write(self, data)
        filestore.AtomicJSONStorage.write = counted_old


def main() -> None:
    install()
    from orchestrator.cli import main as orch_main
    code = 0
    try:
        orch_main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(json.dumps({"exit": code, "connections": connections["ssh"], "ssh": dict(ssh),
                      "round_trips": sum(ssh.values()), "writes": writes}))


if __name__ == "__main__":
    main()
