"""Follow a task's log live, surviving a dropped SSH link.

The log is read by byte offset: after a reconnect we ask the host for the bytes after
the last complete line we delivered, so no line is repeated or lost.

The follow ends when the job does. The job's last log line (`::orch:: done ...`) comes
just before its final status, so a follower that sees it asks for the status at once
and ends if the status is final, instead of waiting for the host's `tail --pid` to notice
the process is gone (up to a second per poll, and longer where the host's init is slow
to reap: a zombie still answers `kill -0`). That status is handed on (Followed.status):
finalize needs it anyway. The host waits up to DONE_SETTLE seconds for a status that
is a little late (the job writes it right after the line; under load that can take longer
than the question takes to arrive). A done line whose status is still not final (the line
was in test output), or whose log goes on past it, is just a line: the follow goes on;
after MAX_FALSE_DONE such lines it ends only as it did before (tail --pid), so output
full of them cannot slow the follow down.

With `keep_log`, a follow that delivered the log from byte 0 to that final status also
hands on the whole log (Followed.log), so finalize need not read job.log again: a final
status means the log is complete (docs/CONTRACTS.md), and the byte offsets guarantee that
no line was lost or repeated across a reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass

from ..core.models import Task
from ..errors import HostUnreachable
from ..fleet.pool import Fleet
from ..job import remote

LineSink = Callable[[str], None]
NoticeSink = Callable[[str], None]

DONE_SETTLE = 2.0      # seconds the host waits for a final status after a done line
MAX_FALSE_DONE = 2     # done lines not followed by the end before they are ignored


@dataclass(frozen=True)
class Followed:
    """Where a follow ended: the byte offset after the last line delivered, and the job's
    final status when the follow read it (None: the job ended some other way, e.g. the
    host's `tail --pid` saw it gone; the caller reads the status itself)."""

    offset: int
    status: remote.JobStatus | None = None
    log: str | None = None     # the whole job.log, when kept and complete (see above)


async def follow(fleet: Fleet, task: Task, on_line: LineSink, *, on_notice: NoticeSink | None = None,
                 offset: int = 0, give_up_after: float | None = None,
                 retry_every: float = 2.0, keep_log: bool = False) -> Followed:
    """Deliver every log line of `task` from `offset` until its job ends.

    While the host is unreachable we retry every `retry_every` seconds, for at most
    `give_up_after` seconds in total (None: until the job is seen ending).
    """
    notice = on_notice or (lambda _msg: None)
    waited = 0.0
    workspace = task.workspace or ""
    # The lines, while they are the whole log and within remote.read_log's cap.
    kept: list[str] | None = [] if keep_log and offset == 0 else None
    false_done = 0
    while True:
        try:
            conn = await fleet.connection(task.host or "")
            done_line = False
            async with aclosing(remote.follow(conn, workspace, offset)) as lines:
                async for end, line in lines:
                    offset, waited = end, 0.0   # where to resume after a dropped link
                    on_line(line)
                    if kept is not None:
                        kept.append(line)
                        if end > remote.LOG_MAX_BYTES:   # host byte offsets, from 0
                            kept = None     # finalize reads the log's capped end itself
                    if false_done < MAX_FALSE_DONE and remote.says_done(line):
                        done_line = True
                        break
            if not done_line:
                return Followed(offset)
            status, size = await remote.read_final_status(conn, workspace, settle=DONE_SETTLE)
            if status is None:
                return Followed(offset)
            if status.final and size == offset:       # the end: every line delivered
                whole = "".join(f"{x}\n" for x in kept) if kept is not None else None
                return Followed(offset, status, whole)
            # Not the job's own end (test output), or more log after it: follow on.
            false_done += 1
        except HostUnreachable as exc:
            await fleet.forget(task.host or "")
            if give_up_after is not None and waited >= give_up_after:
                raise
            notice(f"lost the link to {task.host} ({exc.detail}); reconnecting "
                   f"and resuming at byte {offset}")
            await asyncio.sleep(retry_every)
            waited += retry_every
