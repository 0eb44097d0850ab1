"""job.log -> readable lines: the agent's stream-json as text, each tool call, test output,
the job's step headings and the final result with turns and cost.

Everything shown comes from programs we do not control (the agent, the tests, the issue's
author through both), so it is drawn as rich Text (never parsed as markup) and cleaned by
core/text.py's `clean` (no terminal escape sequence or bidi control gets through).
`plain=True` gives the same lines without styles, for pipes and files; `raw=True` prints
the log as written (cleaned all the same).
"""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.text import Text

from ..core import events as ev
from ..core.text import clean

__all__ = ["LogPrinter", "clean", "format_event", "render_plain"]

TOOL_RESULT_LIMIT = 100
RESULT_TEXT_LINES = 12


def _money(value: float | None) -> str:
    return "$?" if value is None else f"${value:.4f}"


def _marker(m: ev.Marker) -> list[Text]:
    text = clean(m.text)
    if m.kind == "step":
        return [Text(f"── {text} ", style="bold cyan") + Text("─" * max(3, 40 - len(text)),
                                                              style="cyan")]
    if m.kind == "agent":
        return [Text(f"▶ agent {text}", style="bold magenta")]
    if m.kind == "tests":
        style = "bold green" if text.startswith("passed") else \
            "bold red" if text.startswith(("failed", "timed out")) else "yellow"
        return [Text(f"⚑ tests {text}", style=style)]
    if m.kind == "done":
        state = text.split(" ", 1)[0]
        style = {"succeeded": "bold green", "cancelled": "bold yellow"}.get(state, "bold red")
        mark = {"succeeded": "✓", "cancelled": "■"}.get(state, "✗")
        return [Text(f"{mark} job {text}", style=style)]
    if m.kind == "error":
        return [Text(f"✗ {text}", style="bold red")]
    if m.kind == "warn":
        return [Text(f"! {text}", style="yellow")]
    if m.kind == "start":
        return [Text(f"orch: {text}", style="dim")]
    return [Text(f"· {text}", style="dim")]


def _result(r: ev.Result) -> list[Text]:
    parts = [r.subtype or "result"]
    if r.num_turns is not None:
        parts.append(f"{r.num_turns} turns")
    parts.append(_money(r.total_cost_usd))
    if r.duration_ms is not None:
        parts.append(f"{r.duration_ms / 1000:.1f}s")
    if r.permission_denials:
        parts.append(f"{len(r.permission_denials)} permission denials")
    head = Text(("✗ agent result (is_error): " if r.is_error else "■ agent result: ")
                + clean(" · ".join(parts)), style="bold red" if r.is_error else "bold green")
    out = [head]
    body = (r.result or "\n".join(r.errors)).strip()
    lines = body.splitlines()
    for line in lines[:RESULT_TEXT_LINES]:
        out.append(Text("  " + clean(line)))
    if len(lines) > RESULT_TEXT_LINES:
        out.append(Text(f"  … {len(lines) - RESULT_TEXT_LINES} more lines", style="dim"))
    return out


def format_event(event: ev.Event, step: str | None = None) -> list[Text]:
    """The terminal lines for one event ([] for events not worth a line)."""
    if isinstance(event, ev.Marker):
        return _marker(event)
    if isinstance(event, ev.AssistantText):
        return [Text(clean(line)) for line in event.text.strip("\n").splitlines() or [""]]
    if isinstance(event, ev.ToolUse):
        return [Text("→ ", style="cyan") + Text(event.name, style="bold cyan")
                + Text(f"  {clean(event.summary)}" if event.summary else "")]
    if isinstance(event, ev.ToolResult):
        summary = clean(ev.one_line(event.summary, TOOL_RESULT_LIMIT)) or "(no output)"
        if event.is_error:
            return [Text(f"  ✗ {summary}", style="red")]
        more = f"  ({event.lines} lines)" if event.lines > 1 else ""
        return [Text(f"  ← {summary}{more}", style="dim")]
    if isinstance(event, ev.Result):
        return _result(event)
    if isinstance(event, ev.Init):
        what = " · ".join(x for x in (f"session {event.session_id[:8]}" if event.session_id else "",
                                      event.model, event.version) if x)
        return [Text(f"agent started: {clean(what)}", style="dim")]
    if isinstance(event, ev.ApiRetry):
        n = f" {event.attempt}/{event.max_retries}" if event.attempt is not None else ""
        return [Text(f"! API retry{n}: {clean(event.error)}", style="yellow")]
    if isinstance(event, ev.Other):
        return [Text(f"[{clean(event.type)}]", style="dim")]
    if isinstance(event, ev.Text):
        # test output is the point of the tests step; elsewhere plain output is background
        return [Text(clean(event.text), style="" if step == "tests" else "dim")]
    return []


class LogPrinter:
    """Feed it job.log lines (`line()`), it prints them readably; keeps the current step."""

    def __init__(self, *, raw: bool = False, plain: bool = False, console: Console | None = None,
                 file: IO[str] | None = None, prefix: str = "") -> None:
        self.raw = raw
        self.prefix = clean(prefix)   # a split's part: `[part 1 backend] ` before each line
        self.plain = plain
        self.file = file
        self.console = console or Console(highlight=False, file=file, soft_wrap=True)
        self.step: str | None = None

    def render(self, line: str) -> list[Text]:
        out: list[Text] = []
        for event in ev.parse_line(line):
            if isinstance(event, ev.Marker) and event.kind == "step":
                self.step = event.text
            out.extend(format_event(event, self.step))
        return out

    def line(self, line: str) -> None:
        if self.raw:
            self._write(self.prefix + clean(line))
            return
        for text in self.render(line):
            if self.prefix:
                text = Text(self.prefix, style="bold") + text
            if self.plain or not self.console.is_terminal:
                # Off a terminal rich writes no styles and (soft_wrap) no line breaks of its
                # own: the same bytes as text.plain, without rich's per-call cost (a chatty
                # agent's `orch logs -f | ...` went at ~5,000 lines/s, rich-bound).
                self._write(text.plain)
            else:
                self.console.print(text)

    def _write(self, text: str) -> None:
        out = self.file or self.console.file
        out.write(text + "\n")
        out.flush()


def render_plain(lines: list[str]) -> list[str]:
    """A whole log as plain lines (for issue comments, files, tests)."""
    printer = LogPrinter(plain=True)
    return [t.plain for line in lines for t in printer.render(line)]
