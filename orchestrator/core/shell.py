"""Quoting for everything that reaches a shell on a host.

Untrusted text (issue titles and bodies) never reaches a shell except through `quote`;
paths from the inventory go through `path` so that a leading `~` still means $HOME.
"""

from __future__ import annotations

import re
import shlex
import unicodedata


def quote(value: object) -> str:
    """Single-quote any value for POSIX sh."""
    return shlex.quote(str(value))


def path(value: str) -> str:
    """Quote a path for sh, keeping a leading `~/` as "$HOME"/ so it expands remotely."""
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        rest = value[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(value)


def join(args: list[str]) -> str:
    """Quote every word of a command line."""
    return " ".join(shlex.quote(a) for a in args)


_SLUG_BAD = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 40) -> str:
    """A branch-safe slug: lowercase ASCII letters, digits and single dashes, never empty.

    Accented letters keep their base letter ("Café" -> "cafe", by Unicode decomposition);
    anything else that is not a letter or digit separates words.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c if c.isascii() else "" if unicodedata.combining(c) else " "
                         for c in decomposed)
    s = _SLUG_BAD.sub("-", ascii_text.lower()).strip("-")
    s = s[:limit].rstrip("-")
    return s or "issue"


def branch_name(issue_number: int, title: str) -> str:
    """`orch/<N>-<slug>`: valid for `git check-ref-format` whatever the title holds."""
    return f"orch/{int(issue_number)}-{slug(title)}"
