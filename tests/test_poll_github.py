"""GitHub in trouble during `orch poll` passes (issue 4, "GitHub trouble").

The real PyGithub talks to the test server, which injects the faults: 502s, a secondary
rate limit (403 + Retry-After), an answer slower than the client's timeout, a POST that
was carried out but answered 502, and a whole outage. Passes retry what is worth
retrying; an outage stops the pass with exit 1 and a clear message, leaving a state the
next pass finishes from, with one task and one PR per issue.
"""

from __future__ import annotations

from tests.ghserver import Fault
from tests.helpers_poll import (
    FAST_TESTS,
    all_final,
    assert_no_orphans,
    assert_one_pr_per_issue,
    by_issue,
    host_jobs,
    poll,
    run_passes,
    tasks,
    wait_for,
)

QUICK = "orch-standin: write g{i}.txt g{i}\n"


def _retried(gh, fault_status: int, method: str, path: str) -> bool:
    """A faulted request was followed by the same request succeeding."""
    reqs = gh.requests_matching(method, path)
    for i, r in enumerate(reqs):
        if r.fault and r.status == fault_status:
            return any(q.path == r.path and not q.fault and q.status < 400 for q in reqs[i + 1:])
    return False


def test_502_rate_limit_and_timeouts_are_retried_nothing_lost_or_doubled(make_world):
    w = make_world(hosts=2, tests=FAST_TESTS, github={"timeout": 2, "retries": 3})
    gh = w.github
    numbers = [w.issue(f"GitHub flaky {i}", QUICK.format(i=i)) for i in range(3)]
    gh.inject(Fault(status=502, method="GET", path="/issues"), times=2)         # the listing
    gh.inject(Fault.secondary_rate_limit(retry_after=1, path="/collaborators"))  # permission
    gh.inject(Fault(status=502, method="POST", path="/labels"))                 # a write
    gh.inject(Fault(delay=3.0, method="GET", path="/pulls"))                    # a timeout
    gh.inject(Fault(status=502, after=True, method="POST", path="/pulls"))      # done, then 502

    results = run_passes(w, all_final(len(numbers)), timeout=240)
    assert all(r["errors"] == [] for r in results), [r["errors"] for r in results]
    assert gh.pending_faults() == 0, "every fault was met"
    assert _retried(gh, 502, "GET", "/issues")
    assert _retried(gh, 403, "GET", "/collaborators")
    assert _retried(gh, 502, "POST", "/labels")
    timed_out = [r for r in gh.requests_matching("GET", "/pulls") if r.fault]
    assert timed_out and len(gh.requests_matching("GET", "/pulls")) > len(timed_out)
    # The PR whose creation was answered 502 was not opened twice.
    assert len(gh.requests_matching("POST", "/pulls")) >= len(numbers) + 1
    assert all(len(ts) == 1 for ts in by_issue(w).values())
    assert all(t.status == "succeeded" for t in tasks(w))
    assert_one_pr_per_issue(w, numbers)
    for n in numbers:
        labels = gh.labels(w.repo, n)
        assert "orch:done" in labels and "orch" not in labels and "orch:running" not in labels


def test_github_outage_stops_the_pass_exit_1_state_consistent_then_recovers(make_world):
    w = make_world(hosts=2, tests=FAST_TESTS)
    gh = w.github
    numbers = [w.issue(f"Outage {i}", QUICK.format(i=i)) for i in range(3)]
    proc, data = poll(w)
    assert proc.returncode == 0 and len(data["dispatched"]) == 3, proc.stdout + proc.stderr
    wait_for(lambda: sorted(j["state"] for j in host_jobs(w)) == ["succeeded"] * 3, 60,
             "the three jobs to finish")
    numbers.append(w.issue("Outage new", QUICK.format(i=3)))
    before = {t.id: t for t in tasks(w)}

    gh.set_outage(502)
    seen = len(gh.requests)
    proc = w.orch("poll")
    # One round of retries (github.retries: 3 -> 4 attempts) for the whole pass, not one
    # per finished task: the pass stops at the first unavailable answer.
    assert len(gh.requests) - seen == 4, [(r.method, r.path) for r in gh.requests[seen:]]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "GitHub API at" in proc.stderr and "unavailable" in proc.stderr
    assert "502" in proc.stderr and "this pass stopped" in proc.stderr
    proc, data = poll(w)          # --json says the same
    assert proc.returncode == 1 and data["aborted"] and data["dispatched"] == []
    # Consistent: the finished jobs wait to be finalized, nothing lost, failed or added,
    # no claim left behind.
    after = tasks(w)
    assert {t.id for t in after} == set(before)
    for t in after:
        assert t.status == "running" and t.claimed_by is None and t.pr_url is None
        assert not t.unreachable_since
    assert gh.pulls(w.repo) == []

    gh.set_outage(None)
    results = run_passes(w, all_final(len(numbers)), timeout=240)
    assert all(r["errors"] == [] for r in results)
    assert all(len(ts) == 1 for ts in by_issue(w).values())
    assert all(t.status == "succeeded" for t in tasks(w))
    assert_one_pr_per_issue(w, numbers)
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == [] and data["finalized"] == []
    assert_no_orphans(w)
