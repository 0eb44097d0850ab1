"""The GitHub forge's conversation calls (issue 11) and the PR options, through the real
PyGithub client against the GitHub-style server: the shapes, the 200/201/422 answers
docs/FIELD-NOTES.md lists, and pagination of the repository-wide lists."""

from __future__ import annotations

import requests

from orchestrator.config.settings import PullRequestSettings
from tests.test_forge_github import REPO, forge_for, gh  # noqa: F401 - the fixture


def test_pr_options_draft_reviewers_and_labels(gh):  # noqa: F811
    gh.set_permission(REPO, "alice", "write")
    forge = forge_for(gh, pr=PullRequestSettings(draft=True, reviewers=["alice"],
                                                 labels=["orch-made"]))
    url = forge.open_pull_request(REPO, head="orch/1-x", base="trunk", title="x", body="b")
    number = int(url.rsplit("/", 1)[1])
    pr = requests.get(f"{gh.url}/repos/{REPO}/pulls/{number}",
                      headers={"Authorization": f"token {gh.token}"}, timeout=5).json()
    assert pr["draft"] is True
    assert [u["login"] for u in pr["requested_reviewers"]] == ["alice"]
    assert gh.labels(REPO, number) == ["orch-made"]
    # Opening it again (a retried finalize) asks nothing twice.
    posts = gh.count("POST", "/requested_reviewers")
    assert forge.open_pull_request(REPO, head="orch/1-x", base="trunk", title="x", body="b") == url
    assert gh.count("POST", "/requested_reviewers") == posts


def test_reviews_line_comments_replies_and_reactions(gh):  # noqa: F811
    forge = forge_for(gh)
    n = gh.add_pull(REPO, "orch/2-y", base="trunk")
    gh.set_permission(REPO, "bob", "write")
    rid = gh.add_review(REPO, n, user="bob", event="REQUEST_CHANGES", body="no",
                        comments=[{"path": "a.py", "line": 2, "body": "here"}])
    [review] = forge.reviews(REPO, n)
    assert (review.id, review.state, review.author, review.number) == (rid, "CHANGES_REQUESTED", "bob", n)
    assert review.association == "COLLABORATOR"
    [line] = forge.review_comments(REPO, n, rid)
    assert (line.path, line.line, line.review_id, line.author) == ("a.py", 2, rid, "bob")
    # A line comment alone: its own COMMENTED review; a reply attaches to the thread's first.
    alone = gh.add_review_comment(REPO, n, "also", user="bob", path="b.py", line=1)
    assert [r.state for r in forge.reviews(REPO, n)] == ["CHANGES_REQUESTED", "COMMENTED"]
    reply_to_reply = gh.add_review_comment(REPO, n, "me too", user="bob", in_reply_to=alone)
    first = next(c for c in forge.review_comments(REPO, n) if c.id == reply_to_reply)
    assert first.in_reply_to == alone
    mine = forge.reply(REPO, first, "done")
    assert next(c for c in forge.review_comments(REPO, n) if c.id == mine).in_reply_to == alone
    # Reactions: 201 new, 200 when repeated; no reaction endpoint for a review itself.
    forge.react(REPO, line, "eyes")
    forge.react(REPO, line, "eyes")
    assert [q.status for q in gh.requests_matching("POST", "/reactions")] == [201, 200]
    assert gh.reactions(REPO, line.id) == ["eyes"]
    forge.react(REPO, review, "eyes")
    assert gh.count("POST", "/reactions") == 2
    # The PR's author cannot request changes on it (422).
    resp = requests.post(f"{gh.url}/repos/{REPO}/pulls/{n}/reviews",
                         headers={"Authorization": f"token {gh.token}"},
                         json={"event": "REQUEST_CHANGES", "body": "x"}, timeout=5)
    assert resp.status_code == 422
    ok = requests.post(f"{gh.url}/repos/{REPO}/pulls/{n}/reviews",
                       headers={"Authorization": f"token {gh.token}"},
                       json={"event": "COMMENT", "body": "fine"}, timeout=5)
    assert ok.status_code == 200


def test_the_repository_wide_lists_follow_every_page(gh):  # noqa: F811
    forge = forge_for(gh, per_page=100)
    issue = gh.add_issue(REPO, "i", labels=[])
    for i in range(230):
        gh.add_comment(REPO, issue, f"c{i}", user="alice")
    got = forge.remarks_since(REPO, "2020-01-01T00:00:00Z")
    assert [r.body for r in got] == [f"c{i}" for i in range(230)]
    assert gh.count("GET", "/repos/octo/app/issues/comments") == 3
    assert all(r.source == "issue_comment" and r.number == issue for r in got)
    assert forge.remarks_since(REPO, "2999-01-01T00:00:00Z") == []
