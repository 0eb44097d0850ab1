"""Timestamps as every task field holds them: ISO-8601 UTC with whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current time, ISO-8601 UTC with seconds: what every timestamp field holds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(value: str | datetime) -> datetime:
    """An ISO-8601 string (or datetime) as an aware UTC datetime; naive means UTC."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
