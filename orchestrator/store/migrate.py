"""`orch store migrate`: copy every task from one backend to another, and check it.

One transaction on the target (PostgreSQL: one transaction; TinyDB: one `locked()`
section, whose finished, reported tasks move to the archive as it ends). Idempotent: a
task already there is replaced by the source's copy, so a migration that was cut off is
simply run again. After the copy, the target is checked (every source task there, with
the same status; at most one live task per issue; the counts) before the source is
marked moved: a TinyDB state becomes read-only, and every later write to it is refused
with where the state went (errors.StateMoved).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..core.models import LIVE_STATUSES
from ..errors import WorkError


@dataclass(frozen=True)
class Migrated:
    source: str       # where the tasks came from (no password)
    target: str       # where they went (no password)
    copied: int       # tasks copied
    total: int        # tasks the target holds afterwards
    live: int         # queued or running tasks among them


def migrate(source: Any, target: Any) -> Migrated:
    """Copy every task of `source` into `target` (two stores), check, mark the source."""
    if source.where == target.where:
        raise WorkError(f"the state is already at {target.where}")
    records = list(source.records())
    if hasattr(target, "unmark_moved"):
        target.unmark_moved()   # migrating back into a state that was moved away
    commands, cursors = source.conversation()
    with target.locked():
        copied = target.put_all(iter(records))
        # The command comments already taken: a migrated state must not take one again.
        target.put_conversation(commands, cursors)
    check(records, target)
    if hasattr(source, "mark_moved"):
        source.mark_moved(target.where)
    wanted = {doc["id"] for _, doc in records}
    live = sum(1 for _, doc in records if doc.get("status") in LIVE_STATUSES)
    return Migrated(source.where, target.where, copied, max(target.count(), len(wanted)), live)


def check(records: list[tuple[int, dict[str, Any]]], target: Any) -> None:
    """WorkError unless `target` holds every record with its status and the invariants
    hold (at most one live task per issue)."""
    there = {t.id: t for t in target.list(archived=True)}
    missing = [doc["id"] for _, doc in records if doc["id"] not in there]
    changed = [doc["id"] for _, doc in records
               if doc["id"] in there and there[doc["id"]].status != doc.get("status")]
    live = Counter((t.repo, t.issue) for t in there.values() if t.status in LIVE_STATUSES)
    doubled = [f"{repo}#{issue}" for (repo, issue), n in live.items() if n > 1]
    if missing or changed or doubled:
        raise WorkError(f"the copy at {target.where} does not match: {len(missing)} task(s) "
                        f"missing, {len(changed)} with another status, issues with more than "
                        f"one live task: {', '.join(doubled[:5]) or 'none'}; the source was "
                        f"left as it was", hint="run the migration again")
