"""Issue 8 item 5: one hostile line in job.log stops neither `orch poll` nor `orch logs`.

The repository's tests print a 200 KB line of nested brackets that looks like a stream-json
`result` event; json.loads raises RecursionError on it. On a real host through the real
CLI: every pass still finishes (the task is finalized), `orch logs` prints the log, and a
failure nobody foresaw in one task's reconcile is recorded on that task while the pass
goes on with the others.
"""

from __future__ import annotations

import asyncio
import json

from orchestrator.core import events as ev
from tests.helpers_poll import FINAL, poll, run_passes, tasks

DEPTH = 100_000
HOSTILE_LINE = '{"type":"result","is_error":false,"x":' + "[" * DEPTH + "]" * DEPTH + "}"
# The repository's test command prints it (a test's output reaches job.log as written).
PRINT_IT = ("python3 -c 'import sys; d=100000; sys.stdout.write(\"{\\\"type\\\":\\\"result\\\","
            "\\\"is_error\\\":false,\\\"x\\\":\" + \"[\"*d + \"]\"*d + \"}\\n\")'")


def test_parse_line_never_raises_on_hostile_lines():
    assert len(HOSTILE_LINE) > 200_000
    assert ev.parse_line(HOSTILE_LINE) == [ev.Text(HOSTILE_LINE)]
    assert ev.last_result([HOSTILE_LINE]) is None
    huge = '{"type":"result","result":"' + "a" * (ev.MAX_EVENT_LINE + 10) + '"}'
    assert isinstance(ev.parse_line(huge)[0], ev.Text)        # too long: not parsed at all
    nan = '{"type":"result","is_error":false,"total_cost_usd":NaN,"duration_ms":Infinity}'
    [result] = ev.parse_line(nan)
    assert result.total_cost_usd is None and result.duration_ms is None


def test_a_hostile_test_output_line_stops_neither_poll_nor_logs(make_world):
    w = make_world(hosts=1, tests={"command": PRINT_IT})
    n = w.issue("Add hello", "orch-standin: write hello.txt hi")
    run_passes(w, lambda ts: bool(ts) and ts[0].status in FINAL)
    done = tasks(w)[0]
    assert done.status == "succeeded", (done.status, done.error)
    assert done.pr_url and w.github.pulls(w.repo)[0]["head"] == done.branch
    log = w.orch("logs", done.id)
    assert log.returncode == 0, log.stderr[-2000:]
    assert "Traceback" not in log.stderr
    assert "[[[[" in log.stdout                       # shown as text, not parsed
    raw = w.orch("logs", done.id, "--raw")
    assert raw.returncode == 0 and HOSTILE_LINE in raw.stdout
    # and another pass over the finished world is as quiet as ever
    proc, data = poll(w)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert n == done.issue


def test_an_unforeseen_failure_of_one_task_is_recorded_and_the_pass_goes_on(tmp_path):
    from orchestrator.app import App
    from orchestrator.lifecycle import reconcile as rec
    from orchestrator.store import Store

    store = Store(tmp_path)
    bad = store.start(store.create("o/r", 1, "t", "backend").id, host="h", branch="b",
                      workspace="~/w/a")
    good = store.start(store.create("o/r", 2, "t", "backend").id, host="h", branch="c",
                       workspace="~/w/b")
    app = App(state_dir=str(tmp_path))
    out = rec.ReconcileResult()
    seen: list[str] = []

    async def boom() -> None:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    async def fine() -> None:
        seen.append("good")

    async def both() -> None:
        await rec._guard(app, out, bad, boom())
        await rec._guard(app, out, good, fine())
    asyncio.run(both())
    assert seen == ["good"]
    assert len(out.errors) == 1 and bad.id in out.errors[0] and "RecursionError" in out.errors[0]
    assert "RecursionError" in (store.get(bad.id).error or "")
    assert store.get(good.id).error is None
    json.loads((tmp_path / "state.json").read_text())


def test_a_line_longer_than_the_local_stream_limit_does_not_end_logs_follow(tmp_path):
    """`orch logs -f` on a local host streams through an asyncio reader with a 16 MiB line
    limit: a longer line comes in pieces instead of ending the stream with ValueError."""
    from orchestrator.core.models import Host
    from orchestrator.job import remote
    from orchestrator.transport.local import LocalConnection

    ws = tmp_path / "work" / "abcd1234"
    ws.mkdir(parents=True)
    huge = 17 * 1024 * 1024
    with open(ws / "job.log", "w") as fh:
        fh.write("::orch:: step agent\n" + "[" * huge + "\n" + "::orch:: done succeeded\n")
    (ws / "status").write_text("state=succeeded\n")
    conn = LocalConnection(Host(name="local", address="localhost", connection="local"))

    async def follow() -> list[str]:
        return [line async for _, line in remote.follow(conn, str(ws))]
    lines = asyncio.run(follow())
    assert lines[0] == "::orch:: step agent" and lines[-1] == "::orch:: done succeeded"
    assert sum(len(x) for x in lines[1:-1]) >= 16 * 1024 * 1024


def test_follow_survives_the_log_vanishing_while_it_follows(tmp_path):
    """A finalize elsewhere removes the workspace while `orch logs -f` / a following
    `orch dispatch` reads it: the trailer then has no size; that must end the follow with
    the lines read, not a ValueError traceback."""
    import os
    import signal
    import subprocess
    import threading

    from orchestrator.core.models import Host
    from orchestrator.job import remote
    from orchestrator.transport.local import LocalConnection

    ws = tmp_path / "work" / "abcd1234"
    ws.mkdir(parents=True)
    job = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (ws / "status").write_text(f"state=running\npgid={job.pid}\n")
        (ws / "job.log").write_text("::orch:: step agent\n\xff\xfe not utf-8 \n")
        conn = LocalConnection(Host(name="local", address="localhost", connection="local"))
        seen: list[str] = []

        def vanish() -> None:           # once following, the workspace goes, the job ends
            (ws / "job.log").unlink()
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()                  # reaped: a zombie still answers kill -0 (tail --pid)

        async def follow() -> None:
            async for _, line in remote.follow(conn, str(ws)):
                seen.append(line)
                if len(seen) == 2:
                    threading.Timer(0.5, vanish).start()
        asyncio.run(asyncio.wait_for(follow(), 30))
        assert seen[0] == "::orch:: step agent" and len(seen) == 2
    finally:
        job.kill()
        job.wait()
