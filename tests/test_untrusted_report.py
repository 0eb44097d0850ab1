"""Issue 8 items 3 and 4: what orch posts publicly carries no live Markdown from elsewhere,
and a failure comment shows a plain, capped summary of the log, not its raw tail.

Each body is parsed as GitHub would (CommonMark + GFM tables, with markdown-it-py): no
link or image may come from the hostile text, and the text outside code holds no mention
and no bare URL (GitHub autolinks those); the only HTML is orch's own.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

from orchestrator.core import report
from tests.helpers_poll import FINAL, run_passes, tasks
from tests.test_report import _task

HOSTILE = "@octo-org/admins [re-authorize orch](https://evil) ![x](https://evil/t.png)"
TABLE_BREAKER = "passed | [click](https://evil) |"
_MD = MarkdownIt("commonmark").enable("table")
OWN_HTML = {"<!-- orch -->", "<details><summary>what the log says</summary>", "</details>",
            "<!-- orch:runs -->"}   # the end of a PR body's runs table (core/report.py)


def live_parts(body: str) -> dict[str, list[str]]:
    """What GitHub would render live: links, images, HTML, and the text outside code."""
    out: dict[str, list[str]] = {"links": [], "images": [], "html": [], "text": []}

    def walk(tokens) -> None:
        for t in tokens:
            if t.type == "link_open":
                out["links"].append(t.attrs.get("href", ""))
            elif t.type == "image":
                out["images"].append(t.attrs.get("src", ""))
            elif t.type in ("html_inline", "html_block"):
                out["html"].append(t.content.strip())
            elif t.type == "text":
                out["text"].append(t.content)
            if t.children:
                walk(t.children)
    walk(_MD.parse(body))
    return out


def assert_inert(body: str, allowed_urls: tuple[str, ...] = ()) -> None:
    parts = live_parts(body)
    assert parts["links"] == [] and parts["images"] == [], parts
    assert set(parts["html"]) <= OWN_HTML, parts["html"]
    text = " ".join(parts["text"])
    for url in allowed_urls:
        text = text.replace(url, "")
    assert "http" not in text, text                       # a bare URL GitHub would link
    assert "@octo-org" not in text and "@everyone" not in text, text
    assert len(body) <= report.BODY_LIMIT


LOG = "\n".join([
    "::orch:: start orch task ab12cd34 on host dev-7 as alice (pid 4242)",
    "::orch:: step clone",
    "::orch:: note cloned from the host's mirror /home/alice/orch-work/.mirrors/app.git",
    "::orch:: step agent",
    '{"type":"assistant","message":{"content":[{"type":"text","text":"cat .env"}]}}',
    "ANTHROPIC_API_KEY=sk-ant-secret-from-env",
    "::orch:: step tests",
    "::orch:: tests running: python3 -m pytest -q",
    "collected 2 items",
    "GITHUB_TOKEN=ghp_leaked_by_a_test",
    f"FAILED test_x.py::test_y - {HOSTILE}",
    "E       AssertionError: -1 != 5",
    "\x1b[31m1 failed\x1b[0m, 1 passed in 0.02s",
    f"::orch:: tests failed (exit 1): {HOSTILE}",
    f"::orch:: error tests still failing after 0 fix attempt(s) (exit 1): {HOSTILE}",
    "::orch:: done failed turns=3 cost_usd=0.1 tests=failed commit=-",
])


def test_failure_comment_is_inert_and_shows_only_markers_and_failing_lines():
    excerpt = report.log_excerpt(LOG)
    body = report.comment_failed(_task(tests=TABLE_BREAKER, host="h`1`|x", branch="b|c"),
                                 f"tests still failing: {HOSTILE}\n```\n</details>", excerpt)
    assert_inert(body)
    assert "| tests | n/a |" in body                       # not one of the fixed words
    rows = [ln for ln in body.splitlines() if ln.startswith("| ") and ln.endswith(" |")]
    assert len(rows) == 9, rows                             # header + 8 facts: nothing broke out
    assert "FAILED test_x.py::test_y" in body and "AssertionError: -1 != 5" in body
    assert "1 failed, 1 passed" in body and "\x1b" not in body
    for private in ("alice", "4242", "/home/", "sk-ant-secret", "ghp_leaked", "cat .env"):
        assert private not in body, private
    assert "orch retry ab12cd34" in body


def test_log_tail_modes():
    assert report.log_excerpt(LOG, "none") == ""
    summary = report.log_excerpt(LOG, "summary")
    assert summary.splitlines()[0] == "step clone" and "note" not in summary
    full = report.log_excerpt(LOG, "full")
    assert "ghp_leaked_by_a_test" in full and "@\u2060octo-org" in full   # the operator's choice
    huge = "\n".join(["::orch:: tests running: make test"]
                     + [f"FAILED case {i} " + "x" * 500 for i in range(2000)])
    assert len(report.log_excerpt(huge, "summary")) <= report.LOG_SUMMARY_LIMIT
    assert len(report.log_excerpt(huge, "full")) <= report.LOG_FULL_LIMIT


def test_every_body_fits_githubs_limit_whatever_the_input():
    monster = "`" * 70_000 + "\n" + "@everyone " * 20_000
    for body in (report.comment_failed(_task(), monster, monster),
                 report.pr_body(_task(), 7, monster),
                 report.comment_cancelled(_task(), monster),
                 report.comment_stopped(_task(), "cancelled", monster, "orch")):
        assert len(body) <= report.BODY_LIMIT
        assert_inert(body)


def test_pr_body_and_other_comments_fence_their_untrusted_text():
    summary = f"Fixed it. {HOSTILE}\n````\n<img src=x onerror=alert(1)>\n"
    body = report.pr_body(_task(tests="passed"), 7, summary)
    assert_inert(body)
    assert "Closes #7" in body and "| tests | passed |" in body
    assert_inert(report.comment_cancelled(_task(), f"stopped by SIGTERM {HOSTILE}"))
    assert_inert(report.comment_stopped(_task(), "cancelled", HOSTILE, "orch"))
    assert_inert(report.comment_running(_task(host="[x](https://evil)")))
    url = "https://github.test/octo/app/pull/8"
    assert_inert(report.comment_succeeded(_task(tests="passed"), url), allowed_urls=(url,))
    assert_inert(report.comment_succeeded(_task(), "javascript:alert(1) [x](https://evil)"))


def test_a_failing_test_printing_markdown_posts_nothing_live(make_world):
    script = f"echo 'HOST_SECRET=hunter2'\necho 'FAILED test_auth - {HOSTILE}'\nexit 1\n"
    w = make_world(hosts=1, files={"check.sh": script},
                   tests={"command": "sh check.sh", "max_fix_attempts": 0})
    n = w.issue("Add hello", "orch-standin: write hello.txt hi\n")
    run_passes(w, lambda ts: bool(ts) and ts[0].status in FINAL)
    [task] = tasks(w)
    assert task.status == "failed", (task.status, task.error)
    body = w.github.comments(w.repo, n)[-1]["body"]
    assert body.startswith(report.MARKER) and "could not finish" in body
    assert_inert(body)
    assert "FAILED test_auth" in body                      # the failing line is shown, inert
    assert "hunter2" not in body                           # other test output is not
    assert "hunter2" in w.orch("logs", task.id).stdout     # the full log stays in orch logs
