"""Write the state.json that tests/data/state-legacy.json.gz holds, through the store API.

It was run once with orch at 228c9bc (the version before the archive: every task in
state.json), as `PYTHONPATH=<that checkout> python tests/data/make_legacy_state.py OUT`,
and gzipped. The migration tests read that file as "a state written by the previous
version"; do not regenerate it with a newer orch (that would test nothing).

Every kind of record the previous version could leave: succeeded, failed and cancelled
tasks reported to the forge (finalized) or not yet, a running task holding a claim, a
queued one, a lost one, a task retried after a failure (its history names the previous
host), several tasks of one issue, hostile titles, local-forge tasks.
"""

from __future__ import annotations

import sys

from orchestrator.store import Store

HOSTILE = ["Fix `rm -rf $HOME`; $(reboot) \"quoted\" 'single'",
           "Ünïcödé titel — mit Umlauten ✓ and emoji 🚀",
           "<script>alert(1)</script> [bold]markup[/bold] \x1b[31mred",
           "a title\nwith a newline"]


def main(out: str) -> None:
    s = Store(out)
    n = 0

    def new(title: str = "Add the thing", repo: str = "octo/app", forge: str = "github",
            issue: int | None = None):
        nonlocal n
        n += 1
        return s.create(repo, issue if issue is not None else n, title, "backend", forge=forge)

    def run(t, host: str = "h1"):
        return s.start(t.id, host, f"orch/{t.issue}-x", f"~/orch-work/{t.id}", pid=4000 + n,
                       log_path=f"/state/logs/{t.id}.log")

    for i in range(40):
        t = run(new(HOSTILE[i % len(HOSTILE)] if i % 10 == 0 else f"Task number {i}"))
        s.update(t.id, comment_id=100 + i)
        s.update(t.id, cost_usd=0.25 + i / 100, turns=3 + i % 5, tests="passed",
                 commit=f"{i:040x}")
        s.update(t.id, pr_url=f"https://github.com/octo/app/pull/{1000 + i}")
        s.succeed(t.id, f"PR https://github.com/octo/app/pull/{1000 + i}", finalized=True)
    for i in range(12):
        t = run(new(f"Failing task {i}"))
        s.update(t.id, cost_usd=1.5, turns=40, tests="failed")
        s.fail(t.id, ["tests failed after 2 fix attempts", "timeout: ran 45m",
                      "agent error: error_max_turns"][i % 3], finalized=i % 4 != 0)
    for i in range(4):
        t = run(new(f"Cancelled task {i}", forge="local" if i % 2 else "github",
                    repo="/srv/issues/app" if i % 2 else "octo/app"))
        s.cancel(t.id, "cancelled by user", error="cancelled by user", finalized=True)
    # One issue, three tasks: failed, retried and failed again, then a live one.
    a = run(new("Thrice", issue=500))
    s.fail(a.id, "tests failed", finalized=True)
    s.requeue(a.id, "retried by user", reset_attempts=True)
    run(a, host="h2")
    s.fail(a.id, "tests failed again", finalized=True)
    b = new("Thrice", issue=500)
    run(b, host="h3")
    s.update(b.id, claimed_by="ci-box:4242", claimed_at="2026-01-01T00:00:00+00:00")
    s.create("octo/app", 501, "Queued one", "frontend")
    lost = run(new("Lost one"))
    s.mark_lost(lost.id, "host h1 unreachable for 10m")


if __name__ == "__main__":
    main(sys.argv[1])
