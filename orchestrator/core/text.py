"""Text from outside made inert for a terminal (pure).

Issue titles, task errors, host replies, agent output and GitHub's messages may carry
terminal control sequences (`ESC ] 8 ;; URL BEL` makes a hyperlink, `ESC [ 2 J` clears the
screen, OSC 52 writes the clipboard) and bidirectional-text controls that make a line read
differently from what it holds. `clean` is the one function every such string goes
through before it is printed; the renderers then draw it as rich `Text`, never as markup.
"""

from __future__ import annotations

import re

# C0 controls but TAB and LF, DEL, C1 controls (a lone 0x9B is CSI on some terminals),
# the bidi embedding/override/isolate controls (U+202A-202E, U+2066-2069) and the
# invisible direction marks (U+200E, U+200F, U+061C), which spoof the order of text too.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
REPLACEMENT = "\ufffd"


def clean(text: object) -> str:
    """`text` with every control character replaced by U+FFFD; tabs become four spaces
    and carriage returns vanish (a CR would let a line overwrite itself)."""
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(REPLACEMENT, s.replace("\t", "    ").replace("\r", ""))


def clean_line(text: object) -> str:
    """`clean` on one line: newlines become spaces (table cells, one-line notices)."""
    return clean(text).replace("\n", " ")
