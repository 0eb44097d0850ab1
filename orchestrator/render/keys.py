"""Keys from the terminal for a full-screen view (`orch top`).

`TerminalKeys` puts the terminal in cbreak mode (keys arrive one by one, unechoed;
Ctrl-C still interrupts) for the life of a `with` block and restores the saved mode on
any way out of it. `decode` turns what the terminal sends into key names and is pure.

Why not a library: rich draws but reads no keys, and the full TUI frameworks bring
their own drawing and event loop; a view that needs arrows and a few letters needs
this much and no more.
"""

from __future__ import annotations

import asyncio
import os
import termios
import tty

# What terminals send for the keys the view knows (normal and application cursor mode).
SEQUENCES: dict[bytes, str] = {
    b"\x1b[A": "up", b"\x1bOA": "up", b"\x1b[B": "down", b"\x1bOB": "down",
    b"\x1b[C": "right", b"\x1bOC": "right", b"\x1b[D": "left", b"\x1bOD": "left",
    b"\x1b[5~": "pageup", b"\x1b[6~": "pagedown", b"\x1b[H": "home", b"\x1b[F": "end",
    b"\x1bOH": "home", b"\x1bOF": "end", b"\x1b[1~": "home", b"\x1b[4~": "end",
}
_BY_LENGTH = sorted(SEQUENCES, key=len, reverse=True)


def decode(data: bytes) -> list[str]:
    """Terminal input -> key names: "up", "down", ..., "esc", "enter", or the character
    itself ("q", "j"). Unknown escape sequences are dropped whole, other control bytes
    ignored."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            seq = next((s for s in _BY_LENGTH if data.startswith(s, i)), None)
            if seq is not None:
                keys.append(SEQUENCES[seq])
                i += len(seq)
                continue
            if data[i + 1:i + 2] in (b"[", b"O"):
                j = i + 2
                while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                    j += 1
                i = j + 1          # an unknown CSI/SS3 sequence: skip to its final byte
                continue
            keys.append("esc")
            i += 1
            continue
        if byte in (0x0D, 0x0A):
            keys.append("enter")
        elif 0x20 <= byte < 0x7F:
            keys.append(chr(byte))
        i += 1
    return keys


class TerminalKeys:
    """`with TerminalKeys(fd) as keys: key = await keys.get()` (inside a running loop)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._saved: list | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> TerminalKeys:
        self._saved = termios.tcgetattr(self.fd)
        try:
            tty.setcbreak(self.fd, termios.TCSANOW)
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.fd, self._readable)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None
        self._restore()

    def _restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 1024)
        except (BlockingIOError, InterruptedError):
            return
        if not data:                       # the terminal went away: quit like `q`
            assert self._loop is not None
            self._loop.remove_reader(self.fd)
            data = b"q"
        for key in decode(data):
            self.queue.put_nowait(key)

    async def get(self) -> str:
        return await self.queue.get()
