"""The summary of one `orch poll` pass (cron mails it, so it stays short and plain).

Task errors and skip reasons hold text from hosts and the forge: every line goes through
`text` (cleaned, never parsed as markup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .term import console, text

if TYPE_CHECKING:
    from ..lifecycle.poll import PassResult


def _say(line: str) -> None:
    console.print(text(line))


def summary(result: PassResult) -> None:
    if result.busy:
        _say("another orch poll pass holds the lock; this pass did nothing "
             "(the running pass does the work)")
        return
    for t in result.finalized:
        _say(f"finalized {t.id} {t.repo}#{t.issue}: {t.status} {t.pr_url or t.error or ''}")
    for t in result.lost:
        _say(f"lost      {t.id} {t.repo}#{t.issue}: {t.error or ''}")
    for t in result.requeued:
        _say(f"requeued  {t.id} {t.repo}#{t.issue} (attempt {t.attempts} done)")
    for k in result.killed:
        _say(f"killed    stale job {k}")
    for t in result.dispatched:
        _say(f"dispatched {t.id} {t.repo}#{t.issue} -> {t.host} ({t.specialty})")
    for s in result.skipped:
        ref = f"{s['repo']}#{s['issue']}" if s.get("repo") else "all"
        _say(f"skipped   {ref}: {s['reason']}")
    for e in result.errors:
        _say(f"error     {e}")
    _say(f"{len(result.dispatched)} dispatched, {len(result.finalized)} finalized, "
         f"{len(result.skipped)} skipped, {len(result.errors)} errors"
         + (" (pass stopped early)" if result.aborted else ""))
