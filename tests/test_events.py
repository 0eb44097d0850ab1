"""job.log lines -> events: the shapes Claude Code's stream-json really has, the job's
markers, and garbage (a log is written by programs we do not control)."""

from __future__ import annotations

import json
import random

import pytest

from orchestrator.core import events as ev

SID = "0f5c2d9e-1111-2222-3333-444455556666"


def j(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


INIT = j({"type": "system", "subtype": "init", "cwd": "/w/repo", "session_id": SID,
          "tools": ["Bash", "Read"], "model": "claude-sonnet-4", "permissionMode": "bypassPermissions",
          "claude_code_version": "2.1.197"})
TEXT = j({"type": "assistant", "message": {"id": "m1", "role": "assistant",
                                           "content": [{"type": "text", "text": "Let me look."}]},
          "session_id": SID})
TOOL = j({"type": "assistant", "message": {"content": [
    {"type": "tool_use", "id": "toolu_1", "name": "Bash",
     "input": {"command": "python3 -m pytest -q\n  --tb=short", "description": "Run tests"}}]}})
RESULT_BLOCK = j({"type": "user", "message": {"role": "user", "content": [
    {"tool_use_id": "toolu_1", "type": "tool_result", "content": "1 passed\nok"}]}})
RESULT_LIST = j({"type": "user", "message": {"role": "user", "content": [
    {"tool_use_id": "toolu_2", "type": "tool_result", "is_error": True,
     "content": [{"type": "text", "text": "Permission denied"}]}]}})
RETRY = j({"type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10,
           "retry_delay_ms": 1200, "error": {"type": "overloaded_error", "message": "Overloaded"}})
SUCCESS = j({"type": "result", "subtype": "success", "is_error": False, "duration_ms": 12345,
             "num_turns": 7, "result": "Fixed add().", "session_id": SID, "total_cost_usd": 0.1234,
             "usage": {"input_tokens": 1}, "permission_denials": [
                 {"tool_name": "WebFetch", "tool_use_id": "t9", "tool_input": {"url": "x"}}]})
MAX_TURNS = j({"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 41,
               "total_cost_usd": 1.5, "duration_ms": 9})
API_FAIL = j({"type": "result", "subtype": "success", "is_error": True, "num_turns": 1,
              "result": "API Error: 500", "total_cost_usd": 0})


def test_init():
    [e] = ev.parse_line(INIT)
    assert e == ev.Init(SID, "claude-sonnet-4", "/w/repo", ("Bash", "Read"), "2.1.197")


def test_assistant_text_and_tool_use():
    assert ev.parse_line(TEXT) == [ev.AssistantText("Let me look.")]
    [tool] = ev.parse_line(TOOL)
    assert tool == ev.ToolUse("Bash", "python3 -m pytest -q --tb=short", "toolu_1")


def test_several_blocks_on_one_line():
    line = j({"type": "assistant", "message": {"content": [
        {"type": "text", "text": "a"}, {"type": "tool_use", "name": "Read", "id": "t",
                                        "input": {"file_path": "/x/calc.py"}},
        {"type": "thinking", "thinking": "hmm"}, "junk"]}})
    assert ev.parse_line(line) == [ev.AssistantText("a"), ev.ToolUse("Read", "/x/calc.py", "t")]


def test_tool_results():
    assert ev.parse_line(RESULT_BLOCK) == [ev.ToolResult("toolu_1", False, "1 passed ok", 2)]
    assert ev.parse_line(RESULT_LIST) == [ev.ToolResult("toolu_2", True, "Permission denied", 1)]


def test_api_retry():
    assert ev.parse_line(RETRY) == [ev.ApiRetry(2, 10, "Overloaded", 1200.0)]


def test_result_success():
    [r] = ev.parse_line(SUCCESS)
    assert isinstance(r, ev.Result)
    assert (r.is_error, r.subtype, r.num_turns, r.total_cost_usd, r.result, r.duration_ms) == \
        (False, "success", 7, 0.1234, "Fixed add().", 12345.0)
    assert r.permission_denials[0]["tool_name"] == "WebFetch"


def test_result_errors_are_judged_by_is_error():
    [r] = ev.parse_line(MAX_TURNS)
    assert r.is_error and r.subtype == "error_max_turns" and r.result is None and r.num_turns == 41
    [r] = ev.parse_line(API_FAIL)
    assert r.is_error and r.subtype == "success"     # the subtype alone would lie


def test_result_with_odd_types():
    [r] = ev.parse_line(j({"type": "result", "is_error": "yes", "num_turns": "7",
                           "total_cost_usd": True, "result": 5, "permission_denials": "no"}))
    assert r == ev.Result(is_error=False)


def test_markers():
    assert ev.parse_line("::orch:: step clone") == [ev.Marker("step", "clone")]
    assert ev.parse_line("::orch:: done failed turns=3 cost_usd=0.1") == \
        [ev.Marker("done", "failed turns=3 cost_usd=0.1")]
    assert ev.parse_line("::orch::") == [ev.Marker("note", "")]
    assert ev.parse_line("  ::orch:: step x") == [ev.Text("  ::orch:: step x")]   # only at column 0


@pytest.mark.parametrize("line", ["", "plain test output", "{", "{not json}", "[1,2]", "null",
                                  '{"no":"type"}', '{"type":5}', '{"type":"assistant"}',
                                  '{"type":"assistant","message":"str"}', '{"type":"user","message":{}}',
                                  '{"type":"assistant","message":{"content":"just text"}}',
                                  "\x00\x1b[31m", '{"type":"result"'])
def test_garbage_never_raises(line):
    events = ev.parse_line(line)
    assert isinstance(events, list)


def test_unknown_types_are_kept():
    [e] = ev.parse_line('{"type":"stream_event","x":1}')
    assert isinstance(e, ev.Other) and e.type == "stream_event" and e.data == {"type": "stream_event", "x": 1}
    [e] = ev.parse_line('{"type":"system","subtype":"hook_response"}')
    assert isinstance(e, ev.Other) and e.type == "system/hook_response"


def test_plain_text_and_crlf():
    assert ev.parse_line("1 passed in 0.1s\r\n") == [ev.Text("1 passed in 0.1s")]


def test_fuzz():
    rnd = random.Random(7)
    alphabet = '{}[]":,\\ abtypesulr01\n\x00é'
    for _ in range(2000):
        ev.parse_line("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))))


def test_last_result_and_results():
    lines = [INIT, TEXT, SUCCESS, "::orch:: tests failed", INIT, API_FAIL, "garbage"]
    last = ev.last_result(lines)
    assert last is not None and last.is_error and last.result == "API Error: 500"
    assert [r.subtype for r in ev.results(lines)] == ["success", "success"]
    assert ev.last_result([INIT, TEXT]) is None


def test_tool_summaries():
    assert ev.tool_summary("TodoWrite", {"todos": [1, 2, 3]}) == "3 items"
    assert ev.tool_summary("Grep", {"path": ".", "pattern": "def add"}) == "def add"
    assert ev.tool_summary("X", {"flag": True, "n": 3}) == "3"
    assert ev.tool_summary("X", None) == ""
    assert len(ev.tool_summary("Bash", {"command": "x" * 500})) == ev.SUMMARY_LIMIT
