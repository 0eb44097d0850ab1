"""Follow a task's log live, surviving a dropped SSH link.

The log is read by byte offset: after a reconnect we ask the host for the bytes after
the last complete line we delivered, so no line is repeated or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..core.models import Task
from ..errors import HostUnreachable
from ..fleet.pool import Fleet
from ..job import remote

LineSink = Callable[[str], None]
NoticeSink = Callable[[str], None]


async def follow(fleet: Fleet, task: Task, on_line: LineSink, *, on_notice: NoticeSink | None = None,
                 offset: int = 0, give_up_after: float | None = None,
                 retry_every: float = 2.0) -> int:
    """Deliver every log line of `task` from `offset` until its job ends; return the offset.

    While the host is unreachable we retry every `retry_every` seconds, for at most
    `give_up_after` seconds in total (None: until the job is seen ending).
    """
    notice = on_notice or (lambda _msg: None)
    waited = 0.0
    while True:
        try:
            conn = await fleet.connection(task.host or "")
            start = offset
            async for end, line in remote.follow(conn, task.workspace or "", start):
                offset, waited = end, 0.0   # where to resume after a dropped link
                on_line(line)
            return offset
        except HostUnreachable as exc:
            await fleet.forget(task.host or "")
            if give_up_after is not None and waited >= give_up_after:
                raise
            notice(f"lost the link to {task.host} ({exc.detail}); reconnecting "
                   f"and resuming at byte {offset}")
            await asyncio.sleep(retry_every)
            waited += retry_every
