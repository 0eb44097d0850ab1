"""Registries, not string switches: the one lookup of a named row in a table of kinds.

The tables are forge/__init__.py FORGES, transport/__init__.py TRANSPORTS and
lifecycle/kinds.py KINDS; a name nobody registered is bad input, said with what is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .errors import UsageError

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str, *, hint: str | None = None) -> T:
    """`table[name]`, or a UsageError: "unknown <what> '<name>'" and the known names."""
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"unknown {what} {name!r}",
                         hint=hint or f"known {what}s: " + ", ".join(table)) from None
