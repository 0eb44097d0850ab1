"""The log renderer: readable lines from stream-json, markers and plain output; nothing
from the log can inject rich markup or terminal escapes."""

from __future__ import annotations

import io
import json

from rich.console import Console

from orchestrator.render.log import LogPrinter, clean, render_plain


def j(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


LOG = [
    "::orch:: start orch task abcd1234",
    "::orch:: step agent",
    "::orch:: agent run 1 (the issue)",
    j({"type": "system", "subtype": "init", "session_id": "0123456789", "model": "claude-x"}),
    j({"type": "assistant", "message": {"content": [{"type": "text", "text": "I will fix add().\nSecond line."}]}}),
    j({"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Edit", "id": "t1",
                                                     "input": {"file_path": "/w/calc.py"}}]}}),
    j({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
                                                "content": "ok\nmore"}]}}),
    j({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t2",
                                                "is_error": True, "content": "denied"}]}}),
    j({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "error": "overloaded"}),
    j({"type": "result", "subtype": "success", "is_error": False, "num_turns": 3,
       "total_cost_usd": 0.0421, "duration_ms": 5300, "result": "Changed add()."}),
    "::orch:: step tests",
    "::orch:: tests running: python3 -m pytest -q",
    "1 passed in 0.02s",
    "::orch:: tests passed",
    "::orch:: done succeeded turns=3 cost_usd=0.0421 tests=passed commit=abc",
]


def test_plain_rendering():
    out = render_plain(LOG)
    assert out == [
        "orch: orch task abcd1234",
        "── agent " + "─" * 35,
        "▶ agent run 1 (the issue)",
        "agent started: session 01234567 · claude-x",
        "I will fix add().",
        "Second line.",
        "→ Edit  /w/calc.py",
        "  ← ok more  (2 lines)",
        "  ✗ denied",
        "! API retry 1/10: overloaded",
        "■ agent result: success · 3 turns · $0.0421 · 5.3s",
        "  Changed add().",
        "── tests " + "─" * 35,
        "⚑ tests running: python3 -m pytest -q",
        "1 passed in 0.02s",
        "⚑ tests passed",
        "✓ job succeeded turns=3 cost_usd=0.0421 tests=passed commit=abc",
    ]


def test_error_result_and_failed_job():
    out = render_plain([j({"type": "result", "subtype": "error_max_turns", "is_error": True,
                           "num_turns": 41, "total_cost_usd": 1.5}),
                        "::orch:: error max turns: the agent hit agent.max_turns",
                        "::orch:: done failed turns=41"])
    assert out == ["✗ agent result (is_error): error_max_turns · 41 turns · $1.5000",
                   "✗ max turns: the agent hit agent.max_turns", "✗ job failed turns=41"]


def test_no_markup_and_no_escapes_get_through():
    buf = io.StringIO()
    printer = LogPrinter(console=Console(file=buf, force_terminal=True, width=200, highlight=False))
    evil = "[bold red]not markup[/] \x1b]0;title\x07 \x1b[2J done"
    printer.line(evil)
    printer.line(j({"type": "assistant", "message": {"content": [{"type": "text", "text": evil}]}}))
    text = buf.getvalue()
    assert text.count("[bold red]not markup[/]") == 2
    assert "\x1b]0;" not in text and "\x1b[2J" not in text and "\x07" not in text
    assert clean("a\tb\rc\x00") == "a    bc�"


def test_raw_mode_prints_the_log_as_written():
    buf = io.StringIO()
    printer = LogPrinter(raw=True, file=buf)
    for line in LOG[:4]:
        printer.line(line)
    assert buf.getvalue().splitlines() == LOG[:4]


def test_plain_mode_to_a_file():
    buf = io.StringIO()
    printer = LogPrinter(plain=True, file=buf)
    printer.line("::orch:: step clone")
    printer.line("Cloning into 'repo'...")
    assert buf.getvalue() == "── clone " + "─" * 35 + "\nCloning into 'repo'...\n"
    assert printer.step == "clone"


def test_off_a_terminal_the_fast_path_writes_what_rich_would() -> None:
    """`orch logs -f | ...` skips rich's per-line cost: the bytes must stay rich's."""
    hostile = [j({"type": "assistant", "message": {"content": [{"type": "text", "text":
               "héllo ✓ 🚀 [bold]x[/] \x1b[31mred\ttab   "}]}}), "一二三四五六七八九十" * 30, ""]
    rich_out = io.StringIO()
    console = Console(file=rich_out, highlight=False, soft_wrap=True)
    reference = LogPrinter(console=console)
    for line in LOG + hostile:
        for text in reference.render(line):
            console.print(text)
    fast_out = io.StringIO()
    printer = LogPrinter(console=Console(file=fast_out, highlight=False, soft_wrap=True))
    assert not printer.console.is_terminal
    for line in LOG + hostile:
        printer.line(line)
    assert fast_out.getvalue() == rich_out.getvalue()
    # On a terminal it is still rich, with its styles.
    tty_out = io.StringIO()
    tty = LogPrinter(console=Console(file=tty_out, highlight=False, soft_wrap=True,
                                     force_terminal=True, color_system="standard"))
    tty.line("::orch:: tests passed")
    assert "\x1b[" in tty_out.getvalue() and "tests passed" in tty_out.getvalue()
