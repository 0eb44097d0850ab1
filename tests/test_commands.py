"""Command comments (core/commands.py), the runs table and replies (core/report.py), the
store's command records and cursors, the follow-up prompt: pure or in-process, fast."""

from __future__ import annotations

from orchestrator.core import report
from orchestrator.core.commands import RUN, Command, command_key, parse_command
from orchestrator.core.models import Issue, Task
from orchestrator.core.prompts import render_prompt
from orchestrator.store import Store
from tests.legacy_state import legacy_records, write_legacy


def test_a_command_starts_with_the_handle_and_its_first_word_picks_the_verb():
    assert parse_command("@orch please add docs\nmore", "@orch") == \
        Command(RUN, "please add docs\nmore")
    assert parse_command("  @orch cancel", "@orch") == Command("cancel", "")
    assert parse_command("@orch plan use sqlite\nand tests", "@orch") == \
        Command("plan", "use sqlite\nand tests")
    assert parse_command("@ORCH: Approve", "@orch") == Command("approve", "")
    assert parse_command("@orch", "@orch") == Command(RUN, "")
    assert parse_command("@orchestra do it", "@orch") is None        # someone else
    assert parse_command("thanks @orch retry", "@orch") is None       # not the first line's start
    assert parse_command("> @orch retry", "@orch") is None            # a quote is not a command
    assert parse_command("@bot retry", "@bot") == Command("retry", "")


def test_a_command_is_named_by_where_it_was_written_and_its_id():
    assert command_key("o/r", "issue_comment", 5) != command_key("o/r", "review_comment", 5)
    assert command_key("o/r", "review", 5) == "o/r|review|5"


def _task(**kw) -> Task:
    base = dict(id="ab12cd34", repo="o/r", issue=7, title="t", specialty="general",
                host="h1", turns=3, cost_usd=0.12, tests="passed")
    return Task(**{**base, **kw})


def test_the_runs_table_gets_one_row_per_run_and_a_repeated_row_replaces_itself():
    first = _task()
    body = report.pr_body(first, 7, "did it")
    fu = _task(id="ef56ab78", kind="followup", turns=5, host="h2")
    once = report.with_run_row(body, fu)
    twice = report.with_run_row(once, fu)
    assert once == twice
    rows = [x for x in once.splitlines() if x.startswith("| `")]
    assert [("ab12cd34" in r, "ef56ab78" in r) for r in rows] == [(True, False), (False, True)]
    assert "| 5 |" in rows[1] and "`h2`" in rows[1]
    assert once.index("ef56ab78") < once.index(report.RUNS_END) < once.index("Closes #7")
    # A body a person rewrote without the table gets one at its end.
    rewritten = report.with_run_row("my own words", fu)
    assert rewritten.startswith("my own words") and rewritten.rstrip().endswith(report.RUNS_END)


def test_replies_fence_what_others_wrote():
    hostile = "@everyone [x](https://evil) <img src=x>"
    body = report.reply_followup_done(_task(), hostile, "0123456789abcdef")
    assert "@\u2060everyone" in body and "```text" in body and "`0123456789ab`" in body
    refused = report.reply_refused("mallory](https://evil)", "needs write")
    assert "`mallory](https://evil)`" in refused


def test_command_records_are_taken_once_and_survive_a_state_of_the_previous_version(tmp_path):
    write_legacy(tmp_path, legacy_records())            # no commands table in it
    store = Store(tmp_path)
    before = len(store.list())
    with store.locked():
        assert store.take_command("o/r|issue_comment|1", task_id="x") is True
        assert store.take_command("o/r|issue_comment|1", task_id="y") is False
    again = Store(tmp_path)                              # another process, later
    assert again.command("o/r|issue_comment|1")["task_id"] == "x"
    assert again.take_command("o/r|issue_comment|1") is False
    again.update_command("o/r|issue_comment|1", replies={"succeeded": 9})
    assert Store(tmp_path).command("o/r|issue_comment|1")["replies"] == {"succeeded": 9}
    assert len(again.list()) == before                  # the tasks are as they were
    assert again.cursor("commands:github:o/r") is None
    again.set_cursor("commands:github:o/r", "2026-01-01T00:00:00Z")
    again.set_cursor("commands:github:o/r", "2026-01-02T00:00:00Z")
    assert Store(tmp_path).cursor("commands:github:o/r") == "2026-01-02T00:00:00Z"


def test_a_task_of_the_previous_version_has_no_request():
    record = legacy_records()[0]
    assert "request" not in record
    assert Task.from_json(record).request is None


def test_the_followup_prompt_attributes_every_request_and_comment():
    issue = Issue(repo="o/r", number=7, title="Add x", body="the issue")
    request = {"command": {"text": "rename it", "author": "alice"},
               "comments": [{"author": "bob", "path": "a.py", "line": 3, "diff_hunk": "@@ -1 +1 @@\n+x",
                             "body": "not like this"}],
               "reviews": [{"author": "bob", "state": "CHANGES_REQUESTED", "body": "see inline"}],
               "previous": {"summary": "added x"}}
    text = render_prompt("general", issue=issue, repo="o/r", branch="orch/7-add-x",
                         test_command=None, request=request, template="followup.md.j2")
    assert "## The request (by @alice)\n\nrename it" in text
    assert "--- @bob on `a.py` line 3 ---" in text and "+x" in text and "not like this" in text
    assert "review by @bob (changes requested)" in text and "see inline" in text
    assert "added x" in text and "the issue" in text
    plain = render_prompt("general", issue=issue, repo="o/r", branch="b", test_command=None,
                          request={"command": {"text": "also docs", "author": "alice"}})
    assert "The request that started this run (by @alice)" in plain and "also docs" in plain


def test_old_command_records_are_forgotten_recent_ones_kept(tmp_path):
    store = Store(tmp_path)
    store.take_command("o/r|issue_comment|1")
    store.update_command("o/r|issue_comment|1", taken_at="2020-01-01T00:00:00+00:00")
    store.take_command("o/r|issue_comment|2")
    assert store.forget_commands("2021-01-01T00:00:00+00:00") == 1
    assert store.command("o/r|issue_comment|1") is None
    assert store.command("o/r|issue_comment|2") is not None
