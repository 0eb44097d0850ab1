"""Overlapping `orch poll` passes never double work (issue 4, "Overlap").

Real sshd hosts, real git, the test GitHub server, the real CLI in subprocesses. Two
layers are shown separately: the pass lock (a second pass waits briefly, then exits 0
saying so), and under it the store (even passes that skip the pass lock, and `orch
dispatch` racing a pass on the same issue, give one task and one PR per issue).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_no_orphans,
    assert_one_pr_per_issue,
    by_issue,
    poll,
    run_passes,
    tasks,
)

QUICK = "orch-standin: write {name}.txt {name}\n"


def test_eight_overlapping_polls_on_twenty_issues_make_twenty_tasks_and_prs(make_world):
    # 3 hosts x 7 slots: one pass can take all 20 issues at once.
    w = make_world(hosts=3, max_tasks=7, tests=FAST_TESTS)
    numbers = [w.issue(f"Overlap issue {i}", QUICK.format(name=f"f{i}")) for i in range(20)]
    procs = [w.popen("poll", *(["--json"] if i % 2 == 0 else [])) for i in range(8)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in outs] == [0] * 8, outs

    busy = 0
    for i, (_, out, _err) in enumerate(outs):
        if i % 2 == 0:
            data = json.loads(out)
            busy += bool(data["busy"])
            if data["busy"]:
                assert data["dispatched"] == [] and data["finalized"] == []
        elif "another orch poll pass holds the lock" in out:
            busy += 1
    assert busy >= 1, "no pass found the lock taken: the passes did not overlap"

    # Exactly one task per issue, whatever the interleaving.
    groups = by_issue(w)
    assert sorted(groups) == sorted(numbers)
    assert all(len(ts) == 1 for ts in groups.values()), groups
    assert len(tasks(w)) == 20

    run_passes(w, all_final(20), timeout=240)
    assert len(tasks(w)) == 20
    assert all(t.status == "succeeded" for t in tasks(w))
    assert_one_pr_per_issue(w, numbers)
    # orch took the trigger label off: a further pass finds nothing new.
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == [] and data["finalized"] == []
    assert len(tasks(w)) == 20 and len(w.github.pulls(w.repo)) == 20
    assert_no_orphans(w)


_RAW_PASS = """
import asyncio, json, sys
from orchestrator.app import App
from orchestrator.lifecycle.poll import run_pass
r = asyncio.run(run_pass(App(), []))
print(json.dumps({"dispatched": [t.id for t in r.dispatched],
                  "finalized": [t.id for t in r.finalized], "errors": r.errors}))
"""


def _raw_pass(w) -> subprocess.Popen[str]:
    """One pass WITHOUT the pass lock: only the store keeps it from doubling work."""
    return subprocess.Popen([sys.executable, "-c", _RAW_PASS], env=w.env(), cwd=w.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def test_lockless_passes_and_dispatch_racing_on_the_same_issues_never_double(make_world):
    w = make_world(hosts=2, max_tasks=4, tests=FAST_TESTS)
    numbers = [w.issue(f"Race issue {i}", "orch-standin: slow 0.2\n" + QUICK.format(name=f"r{i}"))
               for i in range(6)]
    # Round 1: three lockless passes and a detached `orch dispatch` of every issue, all
    # at once, all on the same six issues.
    racers = [_raw_pass(w) for _ in range(3)]
    racers += [w.popen("dispatch", f"{w.repo}#{n}", "--detach", "--json") for n in numbers]
    results = [(p.wait(timeout=300), *p.communicate()) for p in racers]
    for rc, out, err in results[:3]:
        assert rc == 0, out + err
    for rc, out, err in results[3:]:
        # a dispatch either got the issue or was refused because another process had it
        assert rc == 0 or (rc == 2 and "already has a live task" in err), (rc, out, err)
    groups = by_issue(w)
    assert sorted(groups) == sorted(numbers)
    assert all(len(ts) == 1 for ts in groups.values()), groups

    # Round 2: finalizing races too. Lockless passes in a loop, while a following
    # `orch dispatch` of a new issue waits to finalize its own task.
    n7 = w.issue("Race issue followed", "orch-standin: slow 0.3\n" + QUICK.format(name="r7"))
    follower = w.popen("dispatch", f"{w.repo}#{n7}", "--json")
    numbers.append(n7)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        batch = [_raw_pass(w) for _ in range(3)]
        for p in batch:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, out + err
        if all_final(len(numbers))(tasks(w)) and follower.poll() is not None:
            break
    rc = follower.wait(timeout=240)
    out, err = follower.communicate()
    # The follower, or a lockless pass, finalized it: once.
    assert rc == 0, out + err
    assert all(t.status == "succeeded" for t in tasks(w))
    assert len(tasks(w)) == len(numbers)
    assert_one_pr_per_issue(w, numbers)
    for t in tasks(w):
        finals = [h for h in t.history if h["to"] == "succeeded"]
        assert len(finals) == 1, t.history
    # One "opened a PR" comment per issue: finalize ran its side effects once per task
    # (a repeat would edit the same comment, never add one).
    for n in numbers:
        bodies = [c["body"] for c in w.github.comments(w.repo, n)]
        assert sum("opened" in b for b in bodies) == 1, bodies
    assert_no_orphans(w)
