"""`orch poll` and authors without permission (issue 16 item 5): a labelled issue opened by
a read-only author is skipped with its reason, pass after pass, and never dispatched; the
authorised author's issue in the same passes is. Real CLI, sshd hosts, the GitHub server.
"""

from __future__ import annotations

from tests.helpers_poll import FAST_TESTS, host_jobs, poll, tasks


def test_a_labelled_issue_by_a_read_only_author_is_skipped_and_never_dispatched(make_world):
    w = make_world(hosts=1, tests=FAST_TESTS)
    theirs = w.issue("Run this for me", "orch-standin: write pwned.txt yes\n", user="mallory")
    ours = w.issue("A real one", "orch-standin: write ok.txt ok\n", user="alice")
    before = {n: len(w.github.comments(w.repo, n)) for n in (theirs, ours)}
    for _ in range(2):                     # the check is made on every pass, not once
        proc, data = poll(w)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [skip] = [s for s in data["skipped"] if s["issue"] == theirs]
        assert skip["repo"] == w.repo and skip["code"] == "unauthorised"
        assert "mallory" in skip["reason"] and "'read'" in skip["reason"]
        assert "at least 'write'" in skip["reason"]
        assert all(t["issue"] != theirs for t in data["dispatched"])
    assert [t.issue for t in tasks(w)] == [ours]          # dispatched: the authorised one only
    assert all(j["task"] == tasks(w)[0].id for j in host_jobs(w))
    # The forge heard nothing about the refused issue: no comment, no orch label.
    assert len(w.github.comments(w.repo, theirs)) == before[theirs]
    assert not any(label.startswith("orch:") for label in w.github.labels(w.repo, theirs))
    assert not w.remote.has_branch(f"orch/{theirs}-run-this-for-me")
    # Given write permission, the same issue is taken by the next pass.
    w.github.set_permission(w.repo, "mallory", "write")
    proc, data = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [t["issue"] for t in data["dispatched"]] == [theirs]
