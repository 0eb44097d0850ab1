"""What orch writes on the forge (pure): untrusted text stays inside its fence."""

from __future__ import annotations

from orchestrator.core import report
from orchestrator.core.models import Task


def _task(**kw) -> Task:
    base = dict(id="ab12cd34", repo="octo/app", issue=7, title="t", specialty="backend",
                status="running", host="h1", branch="orch/7-t", attempts=1, turns=3,
                cost_usd=0.1234, tests="passed")
    base.update(kw)
    return Task(**base)


def test_fence_is_longer_than_any_backtick_run_inside():
    text = "before\n```\nclosing attempt\n`````\nafter"
    out = report.fenced(text)
    fence = out.splitlines()[0]
    assert fence == "``````"
    assert out.endswith("\n" + fence)
    assert out.count(fence) == 2


def test_pr_body_closes_the_issue_and_shows_the_run():
    body = report.pr_body(_task(), 7, "Added the endpoint.")
    assert "Closes #7" in body
    assert "Added the endpoint." in body
    assert "$0.12" in body and "| turns | 3 |" in body and "| tests | passed |" in body


def test_failure_comment_fences_the_log_tail_and_says_how_to_retry():
    tail = "```\n<script>alert(1)</script>\n@everyone"
    body = report.comment_failed(_task(tests="failed"), "tests still failing", tail)
    assert "tests still failing" in body
    assert "orch retry ab12cd34" in body
    fence = "````"
    assert f"{fence}text\n{report.plain(tail)}\n{fence}" in body
    assert "@\u2060everyone" in body                   # the mention is defused too


def test_titles_are_single_line_and_bounded():
    assert report.pr_title("a\nb\tc   d") == "a b c d"
    assert len(report.pr_title("x" * 1000)) == 250
    assert report.pr_title("   ") == "orch change"
