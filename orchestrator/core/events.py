"""job.log lines -> typed events (pure).

job.log interleaves three kinds of line: the agent's stream-json (`claude -p
--output-format stream-json --verbose`), the job's own markers (`::orch:: KIND TEXT`,
written by job.sh), and plain output (git, the tests, anything a step prints). This
module names each line so the renderer and finalize never parse JSON by hand. It never
raises on a line: a log is partly written by programs we do not control. A line longer
than MAX_EVENT_LINE is not parsed at all, and any failure to parse one (a 200 KB run of
nested brackets makes json.loads raise RecursionError) makes it plain text, so one hostile
line can neither stop `orch poll` nor `orch logs`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MARKER = "::orch::"
SUMMARY_LIMIT = 160
# Longer lines are shown as text, never parsed. A real stream-json line is rarely past a
# few hundred KB (a tool result holding a large file); parsing cost grows with the line.
MAX_EVENT_LINE = 1024 * 1024


@dataclass(frozen=True)
class Init:
    """system/init: the agent session started."""

    session_id: str = ""
    model: str = ""
    cwd: str = ""
    tools: tuple[str, ...] = ()
    version: str = ""


@dataclass(frozen=True)
class AssistantText:
    text: str


@dataclass(frozen=True)
class ToolUse:
    """The agent called a tool; `summary` is a short, single-line view of its input."""

    name: str
    summary: str = ""
    id: str = ""


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str = ""
    is_error: bool = False
    summary: str = ""
    lines: int = 0


@dataclass(frozen=True)
class ApiRetry:
    attempt: int | None = None
    max_retries: int | None = None
    error: str = ""
    retry_delay_ms: float | None = None


@dataclass(frozen=True)
class Result:
    """The final `result` event of one agent run. Judge it by `is_error`, never `subtype`."""

    is_error: bool
    subtype: str = ""
    num_turns: int | None = None
    total_cost_usd: float | None = None
    result: str | None = None
    duration_ms: float | None = None
    permission_denials: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    # --json-schema's validated answer (a planning run's parts); agent output: untrusted
    structured_output: Any = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class Marker:
    """A line job.sh wrote: `::orch:: step clone`, `::orch:: done failed <why>`, ..."""

    kind: str
    text: str = ""


@dataclass(frozen=True)
class Other:
    """A stream-json event of a type this module does not know (kept, not dropped)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Text:
    """Anything else: git and test output, the agent's stderr, garbage."""

    text: str


Event = Init | AssistantText | ToolUse | ToolResult | ApiRetry | Result | Marker | Other | Text


def one_line(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Collapse whitespace and cut, for summaries that must fit one terminal line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _num(value: Any) -> float | None:
    """A finite number, else None (json.loads reads NaN and Infinity literals)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None else None


_INPUT_KEYS = ("command", "file_path", "pattern", "path", "url", "query", "description",
               "prompt", "notebook_path", "skill")


def tool_summary(name: str, tool_input: Any) -> str:
    """The one input field that tells a human what the call does (Bash: its command, ...)."""
    if not isinstance(tool_input, dict):
        return one_line(tool_input) if tool_input else ""
    if name == "TodoWrite" and isinstance(tool_input.get("todos"), list):
        return f"{len(tool_input['todos'])} items"
    for key in _INPUT_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return one_line(value)
    for value in tool_input.values():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return one_line(str(value))
    return ""


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [c.get("text", "") for c in content if isinstance(c, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _message_blocks(data: dict[str, Any]) -> list[Any]:
    message = data.get("message")
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _assistant(data: dict[str, Any]) -> list[Event]:
    events: list[Event] = []
    for block in _message_blocks(data):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            events.append(AssistantText(block["text"]))
        elif kind == "tool_use":
            name = str(block.get("name") or "tool")
            events.append(ToolUse(name, tool_summary(name, block.get("input")),
                                  str(block.get("id") or "")))
    return events


def _user(data: dict[str, Any]) -> list[Event]:
    events: list[Event] = []
    for block in _message_blocks(data):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            text = _result_text(block.get("content"))
            events.append(ToolResult(str(block.get("tool_use_id") or ""),
                                     bool(block.get("is_error")), one_line(text),
                                     len(text.splitlines())))
    return events


def _result(data: dict[str, Any]) -> Result:
    denials = data.get("permission_denials")
    errors = data.get("errors")
    text = data.get("result")
    return Result(
        is_error=data.get("is_error") is True,
        subtype=str(data.get("subtype") or ""),
        num_turns=_int(data.get("num_turns")),
        total_cost_usd=_num(data.get("total_cost_usd")),
        result=text if isinstance(text, str) else None,
        duration_ms=_num(data.get("duration_ms")),
        permission_denials=tuple(d for d in denials if isinstance(d, dict))
        if isinstance(denials, list) else (),
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        structured_output=data.get("structured_output"))


def _system(data: dict[str, Any]) -> Event:
    subtype = data.get("subtype")
    if subtype == "init":
        tools = data.get("tools")
        return Init(str(data.get("session_id") or ""), str(data.get("model") or ""),
                    str(data.get("cwd") or ""),
                    tuple(str(t) for t in tools) if isinstance(tools, list) else (),
                    str(data.get("claude_code_version") or ""))
    if subtype == "api_retry":
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message") or json.dumps(error)
        return ApiRetry(_int(data.get("attempt")), _int(data.get("max_retries")),
                        one_line(str(error or "")), _num(data.get("retry_delay_ms")))
    return Other(f"system/{subtype}", data)


def parse_marker(line: str) -> Marker | None:
    if not line.startswith(MARKER):
        return None
    rest = line[len(MARKER):].strip()
    kind, _, text = rest.partition(" ")
    return Marker(kind or "note", text.strip())


def parse_line(line: str) -> list[Event]:
    """All events on one log line (an assistant message may carry several blocks);
    whatever the line holds, never raises: a line that is not a readable event is Text."""
    line = line.rstrip("\r\n")
    marker = parse_marker(line)
    if marker is not None:
        return [marker]
    stripped = line.strip()
    if not stripped.startswith("{") or len(stripped) > MAX_EVENT_LINE:
        return [Text(line)]
    try:
        return _events(line, stripped)
    except Exception:  # noqa: BLE001 - RecursionError, MemoryError, ...: "not an event"
        return [Text(line)]


def _events(line: str, stripped: str) -> list[Event]:
    data = json.loads(stripped)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return [Text(line)]
    kind = data["type"]
    if kind == "assistant":
        return _assistant(data)
    if kind == "user":
        return _user(data)
    if kind == "result":
        return [_result(data)]
    if kind == "system":
        return [_system(data)]
    return [Other(kind, data)]


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    for line in lines:
        yield from parse_line(line)


def last_result(lines: Iterable[str]) -> Result | None:
    """The last agent result in a log (the fix run's, when there was one)."""
    found: Result | None = None
    for line in lines:
        if '"result"' not in line:
            continue   # cheap pre-filter: logs can be megabytes of stream-json
        for event in parse_line(line):
            if isinstance(event, Result):
                found = event
    return found


def results(lines: Iterable[str]) -> list[Result]:
    """Every agent run's result, in order (the main run, then each fix run)."""
    return [e for e in parse_lines(lines) if isinstance(e, Result)]
