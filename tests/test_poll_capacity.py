"""Capacity (issue 4): 30 issues on 3 hosts with max_tasks 2. While the passes run, a
sampler looks ON the hosts (every `<workspace_root>/*/status` saying state=running whose
process group is alive, as docs/CONTRACTS.md counts a running job) and never sees more
than 2 jobs on one host; all 30 issues end with one PR each.
"""

from __future__ import annotations

import threading
import time

from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_no_orphans,
    assert_one_pr_per_issue,
    by_issue,
    run_passes,
    running_jobs,
    tasks,
)


class Sampler(threading.Thread):
    def __init__(self, w, every: float = 0.03) -> None:
        super().__init__(daemon=True)
        self.w = w
        self.every = every
        self.stop = threading.Event()
        self.samples = 0
        self.peak: dict[str, int] = {}
        self.over: list[tuple[float, str, list[str]]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for host, ids in running_jobs(self.w).items():
                self.peak[host] = max(self.peak.get(host, 0), len(ids))
                if len(ids) > 2:
                    self.over.append((time.monotonic(), host, ids))
            self.samples += 1
            time.sleep(self.every)


def test_thirty_issues_three_hosts_never_more_than_two_jobs_per_host(make_world):
    w = make_world(hosts=3, max_tasks=2, tests=FAST_TESTS)
    numbers = [w.issue(f"Capacity issue {i}",
                       f"orch-standin: slow 0.2\norch-standin: turns 3\n"
                       f"orch-standin: write cap{i}.txt {i}\n") for i in range(30)]
    sampler = Sampler(w)
    sampler.start()
    try:
        results = run_passes(w, all_final(30), timeout=240, max_passes=80)
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
    assert sampler.over == [], sampler.over[:5]
    assert sampler.samples > 100
    # The sampler did see the hosts full (it would have seen an overfull one).
    assert sorted(sampler.peak.values()) == [2, 2, 2], sampler.peak
    # Each pass took only what fitted, oldest issue first, and said so for the rest.
    first = results[0]
    assert len(first["dispatched"]) == 6
    assert sorted(d["issue"] for d in first["dispatched"]) == numbers[:6]
    waiting = [s for s in first["skipped"] if "left for the next pass" in s["reason"]]
    assert len(waiting) == 24 and all("full: 2/2" in s["reason"] for s in waiting)
    assert all(len(ts) == 1 for ts in by_issue(w).values())
    assert len(tasks(w)) == 30 and all(t.status == "succeeded" for t in tasks(w))
    assert_one_pr_per_issue(w, numbers)
    assert_no_orphans(w)
