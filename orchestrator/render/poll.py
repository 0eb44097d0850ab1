"""The summary of one `orch poll` pass (cron mails it, so it stays short and plain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import console

if TYPE_CHECKING:
    from ..lifecycle.poll import PassResult


def summary(result: PassResult) -> None:
    if result.busy:
        console.print("another orch poll pass holds the lock; this pass did nothing "
                      "(the running pass does the work)", markup=False)
        return
    for t in result.finalized:
        console.print(f"finalized {t.id} {t.repo}#{t.issue}: {t.status} "
                      f"{t.pr_url or t.error or ''}", markup=False)
    for t in result.lost:
        console.print(f"lost      {t.id} {t.repo}#{t.issue}: {t.error or ''}", markup=False)
    for t in result.requeued:
        console.print(f"requeued  {t.id} {t.repo}#{t.issue} (attempt {t.attempts} done)",
                      markup=False)
    for k in result.killed:
        console.print(f"killed    stale job {k}", markup=False)
    for t in result.dispatched:
        console.print(f"dispatched {t.id} {t.repo}#{t.issue} -> {t.host} ({t.specialty})",
                      markup=False)
    for s in result.skipped:
        ref = f"{s['repo']}#{s['issue']}" if s.get("repo") else "all"
        console.print(f"skipped   {ref}: {s['reason']}", markup=False)
    for e in result.errors:
        console.print(f"error     {e}", markup=False)
    console.print(f"{len(result.dispatched)} dispatched, {len(result.finalized)} finalized, "
                  f"{len(result.skipped)} skipped, {len(result.errors)} errors"
                  + (" (pass stopped early)" if result.aborted else ""), markup=False)
