"""The full-screen `orch top`: a rich Live view on the alternate screen, driven by keys.

One loop: a round of probes every interval (ops/watch.py; the probes run on while the
view draws), a redraw whenever an answer or a key arrives. `l` shows the selected task's
log (followed live while its job runs, through the same follow as `orch logs -f`), `c`
cancels the task after a y/n (through the same cancel as `orch cancel`).

The terminal is given back as it was on every way out: `q`, Ctrl-C, SIGTERM/SIGHUP, an
error. The `with` blocks own that (Live leaves the alternate screen and shows the cursor,
TerminalKeys restores the saved tty mode); signals only end the loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from rich.console import RenderableType
from rich.live import Live
from rich.text import Text

from ..app import App
from ..core.models import LIVE_STATUSES, Task
from ..errors import OrchError
from ..ops import snapshot as snap_mod
from ..ops.watch import Watcher, watching
from ..render import top as draw
from ..render.keys import TerminalKeys
from ..render.log import LogPrinter, clean
from ..render.term import console

FOLLOW_KEEP = 2000          # log rows kept while following
CANCELLABLE = (*LIVE_STATUSES, "lost")   # what lifecycle.control.cancel_task stops
PAGE = 10
REDRAW_GAP = 0.2           # seconds: a frame of 50 hosts costs ~70 ms to draw on a busy 2-core machine


class LiveTop:
    def __init__(self, app: App, watcher: Watcher, keys: TerminalKeys) -> None:
        self.app = app
        self.watcher = watcher
        self.keys = keys
        self.done = False
        self.exit_code = 0
        self.snapshot: snap_mod.Snapshot | None = None
        self.message: Text | None = None
        self.asking: str | None = None                  # task id awaiting "cancel? y/n"
        self.log_mode: Task | None = None
        self.log_rows: deque[Text] = deque(maxlen=FOLLOW_KEEP)
        self.log_state = ""
        self._follow: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ drawing
    def view(self) -> RenderableType:
        height = console.size.height
        if self.log_mode is not None:
            t = self.log_mode
            title = (Text("log of ", style="bold") + Text(clean(t.id), style="bold") + Text(" ")
                     + Text(clean(f"{t.repo}#{t.issue}"), style="bold") + Text(" · ")
                     + Text(clean(self.log_state), style="dim"))
            return draw.log_view(title, list(self.log_rows), height=height,
                                 footer=Text("q / esc: back to the table", style="dim"))
        assert self.snapshot is not None
        return draw.frame(self.snapshot, height=height, footer=self._footer())

    def _footer(self) -> Text:
        if self.asking:
            row = self.snapshot.row(self.asking) if self.snapshot else None
            what = f"{row.id} ({row.ref}: {row.title})" if row else self.asking
            return Text("cancel task ", style="bold yellow") + Text(clean(what)) \
                + Text("? y/n", style="bold yellow")
        return self.message or Text(draw.KEYS_HELP, style="dim")

    # ------------------------------------------------------------------ keys
    def on_key(self, key: str) -> None:
        if self.asking is not None:
            task_id, self.asking = self.asking, None
            if key in ("y", "Y"):
                self._spawn(self._cancel(task_id))
            else:
                self.message = Text(f"task {task_id} not cancelled", style="dim")
            return
        if self.log_mode is not None:
            if key in ("q", "esc", "l", "left"):
                self._leave_log()
            return
        self.message = None
        moves = {"up": -1, "k": -1, "down": 1, "j": 1, "pageup": -PAGE, "pagedown": PAGE,
                 "home": -10**6, "end": 10**6}
        if key == "q":
            self.done = True
        elif key in moves and self.snapshot is not None:
            self.watcher.selected = snap_mod.move(self.snapshot, self.snapshot.selected, moves[key])
            self.snapshot = self.watcher.snapshot()
            self.watcher.fetch_log()
        elif key in ("l", "enter"):
            task = self._selected_task()
            if task is not None:
                self._open_log(task)
        elif key == "c":
            task = self._selected_task()
            if task is None:
                return
            if task.status in CANCELLABLE:
                self.asking = task.id
            else:
                self.message = Text(clean(f"task {task.id} is {task.status}: nothing to cancel"),
                                    style="yellow")

    def _selected_task(self) -> Task | None:
        selected = self.snapshot.selected if self.snapshot else None
        return self.watcher.task(selected) if selected else None

    # ------------------------------------------------------------------ actions
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _cancel(self, task_id: str) -> None:
        from ..lifecycle.control import cancel_task
        self.message = Text(f"cancelling task {task_id}…", style="yellow")
        self.watcher.changed.set()
        try:
            task = await cancel_task(self.app, task_id)
            self.message = Text(clean(f"task {task.id} cancelled ({task.error or 'stopped'})"),
                                style="yellow")
        except OrchError as exc:
            self.message = Text(clean(f"orch: {exc}").replace("\n", " "), style="bold red")
        self.watcher.changed.set()

    def _open_log(self, task: Task) -> None:
        self.log_mode = task
        self.log_rows.clear()
        self._follow = asyncio.create_task(self._follow_log(task))

    def _leave_log(self) -> None:
        self.log_mode = None
        if self._follow is not None:
            self._follow.cancel()
            self._follow = None

    async def _follow_log(self, task: Task) -> None:
        from ..lifecycle.follow import follow
        printer = LogPrinter()

        def add(line: str) -> None:
            self.log_rows.extend(draw.log_lines([line], printer))
            self.watcher.changed.set()

        def notice(msg: str) -> None:
            self.log_rows.append(Text(clean(f"orch: {msg}"), style="yellow"))
            self.watcher.changed.set()

        try:
            if task.status == "running" and task.host and task.workspace:
                self.log_state = f"following on {task.host}"
                await follow(self.watcher.fleet, task, add, on_notice=notice)
                self.log_state = "the job ended"
            else:
                for line in await asyncio.to_thread(self.watcher.local_log, task, FOLLOW_KEEP):
                    add(line)
                self.log_state = f"{task.status}; orch's copy of the log"
                if not self.log_rows:
                    self.log_rows.append(Text("(no log yet)", style="dim"))
        except OrchError as exc:
            notice(str(exc))
            self.log_state = "not followed"
        self.watcher.changed.set()

    # ------------------------------------------------------------------ the loop
    async def loop(self, live: Live) -> None:
        next_round = 0.0
        key_wait: asyncio.Future[Any] = asyncio.ensure_future(self.keys.get())
        try:
            while not self.done:
                if time.monotonic() >= next_round:
                    await self.watcher.start_round()
                    next_round = time.monotonic() + self.watcher.interval
                self.watcher.changed.clear()
                self.snapshot = self.watcher.snapshot()
                live.update(self.view(), refresh=True)
                changed: asyncio.Future[Any] = asyncio.ensure_future(self.watcher.changed.wait())
                done, _ = await asyncio.wait(
                    {key_wait, changed}, return_when=asyncio.FIRST_COMPLETED,
                    timeout=max(0.0, next_round - time.monotonic()))
                changed.cancel()
                if key_wait in done:
                    self.on_key(key_wait.result())
                    while not self.keys.queue.empty() and not self.done:
                        self.on_key(self.keys.queue.get_nowait())
                    key_wait = asyncio.ensure_future(self.keys.get())
                elif changed in done:
                    await asyncio.sleep(REDRAW_GAP)   # a burst of answers lands in one redraw
        finally:
            key_wait.cancel()
            self._leave_log()

    async def settle(self) -> None:
        """Let a cancel under way finish: it holds the task's claim until it has."""
        if self._work:
            await asyncio.wait(set(self._work), timeout=30)

    def stop(self, code: int) -> None:
        self.done = True
        self.exit_code = code
        self.watcher.changed.set()


async def run(app: App, interval: float) -> int:
    """The live view until `q` (or a signal); returns the exit code."""
    loop = asyncio.get_running_loop()
    async with watching(app, interval=interval) as watcher:
        with TerminalKeys(sys.stdin.fileno()) as keys:
            top = LiveTop(app, watcher, keys)
            handled = []
            for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)):
                loop.add_signal_handler(sig, top.stop, code)
                handled.append(sig)
            loop.add_signal_handler(signal.SIGWINCH, watcher.changed.set)   # redraw at the new size
            handled.append(signal.SIGWINCH)
            try:
                with Live(console=console, screen=True, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False) as live:
                    await top.loop(live)
            finally:
                for sig in handled:
                    loop.remove_signal_handler(sig)
        await top.settle()
    return top.exit_code
