"""`orch logs PARENT [-f]` of a split: every part's (and integration's) log, each line
labelled with its part, the parts that run at once interleaved as their lines come.

New children appear while a split runs (a part whose dependencies were merged, the next
integration): the store is read again every `every` seconds, and each new child is
followed from its first byte. The follow ends when the split has ended and every child
it had has been read to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from ..app import App
from ..core.models import Task
from ..errors import OrchError
from ..fleet.pool import Fleet
from ..job import remote
from .follow import LineSink, NoticeSink, follow
from .split import part_of

SinkFor = Callable[[str], LineSink]   # a child's label -> where its lines go


def child_label(task: Task) -> str:
    """`part 1 backend`, `merge`, `tests`, `plan`: how a child's lines are prefixed."""
    part = part_of(task)
    if part is not None:
        return f"part {part.k} {task.specialty}"
    if task.kind == "planner":
        return "plan"
    return "tests" if (task.split or {}).get("final") else "merge"


async def _one(app: App, fleet: Fleet, child: Task, sink: LineSink, live: bool,
               on_notice: NoticeSink) -> None:
    """One child's whole log: orch's copy once it is finished, else from its host
    (followed to the end with `live`)."""
    if child.status != "running" and child.log_path and Path(child.log_path).is_file():
        for line in Path(child.log_path).read_text(errors="replace").splitlines():
            sink(line)
        return
    if not child.host or not child.workspace:
        return
    try:
        if live and child.status == "running":
            await follow(fleet, child, sink, on_notice=on_notice, give_up_after=60)
            return
        text = await remote.read_log(await fleet.connection(child.host), child.workspace)
    except OrchError as exc:
        on_notice(f"{child_label(child)}: {exc.message}")
        return
    for line in (text or "").splitlines():
        sink(line)


async def split_logs(app: App, parent: Task, sink_for: SinkFor, *, live: bool,
                     on_notice: NoticeSink, every: float = 1.0) -> None:
    """Every child's log through `sink_for(label)`; with `live`, until the split ends."""
    async with app.fleet() as fleet:
        begun: dict[str, asyncio.Task[None]] = {}
        while True:
            current = app.store.get(parent.id)
            for child in app.store.children(current):
                # a reserved child whose job has not started yet (no process group) has
                # no log to follow: taken on a later round
                if child.id in begun or (live and child.status == "queued") or (
                        live and child.status == "running" and child.pid is None):
                    continue
                sink = sink_for(child_label(child))
                begun[child.id] = asyncio.ensure_future(
                    _one(app, fleet, child, sink, live, on_notice))
                if not live:
                    await begun[child.id]     # one after another: a readable whole
            if not live or current.status != "running":
                break
            await asyncio.sleep(every)
        await asyncio.gather(*begun.values())
