"""orch-standin-agent: a deterministic STAND-IN for `claude -p --output-format stream-json --verbose`.

It is not an AI. The test suite and `orch demo` (offline, or without a Claude login) use it
where the real Claude Code CLI would run: same flags, prompt on stdin, the same stream-json
events (system/init, assistant text and tool_use, user tool_result, a final result with
is_error, num_turns, total_cost_usd, result), the same refusals (stream-json without
--verbose; bypassPermissions as root without IS_SANDBOX=1).

What it does is decided by directive lines in the prompt (so: in the issue body), each
`orch-standin: VERB ARGS...`, ARGS split like a POSIX shell would (quote text with spaces;
inside TEXT/OLD/NEW, \\n and \\t mean newline and tab). Paths are relative to the working
directory (the checkout) and may not leave it. Nothing from the prompt is ever executed.

  write PATH TEXT        create or overwrite PATH with TEXT (a final newline is added)
  append PATH TEXT       append TEXT and a newline to PATH
  replace PATH OLD NEW   replace every OLD with NEW in PATH
  delete PATH            remove PATH
  say TEXT               an assistant text message
  fail-first             the first run also plants a failing pytest test
                         (test_orch_standin_planted.py); the fix run (its prompt starts
                         with <!-- orch:fix-prompt -->) removes it
  never-fix              like fail-first, but fix runs change nothing
  turns N                N extra (read-only) tool turns; --max-turns is honoured like the
                         real CLI (error_max_turns, exit 1)
  report-turns N         the result claims num_turns N
  loop                   tool turns forever, ignoring --max-turns
  slow SECONDS           wait this long before each turn
  sleep-forever          start, spawn a `sleep` child, then hang (for timeouts and kill)
  stubborn               ignore SIGINT and SIGTERM (only SIGKILL stops it)
  cost USD               the result reports this total_cost_usd (ignoring --max-budget-usd,
                         like a client-side estimate that overshot)
  is-error               the result says is_error: true (subtype success, exit 1), like an
                         API failure
  crash                  exit 3 mid-line, without a result event
  structured JSON        with --json-schema, the result event's structured_output is JSON
  linger                 after the result event, keep the stream open and hang (the real
                         CLI can: "stop reading at the result event")

`orch-standin[SCOPE]: VERB ...` acts only in a prompt of that scope: a split's part prompt
(`<!-- orch:part SPECIALTY -->`, scope SPECIALTY) or its merge fix (`merge`); plain
directives act only in prompts without a scope.

In a fix run only fail-first/never-fix act; the file directives belong to the first run.
With no directive at all it changes nothing and says so.

Beyond the CLI, for the tests that pin how orch calls it:
  --json-style compact|spaced|reordered
                         how each event is written: compact (the CLI's own `{"type":"x",...}`),
                         spaced (`{"type" : "x" , ...}`, as a wrapper re-serialising it might)
                         or reordered (top-level keys reversed: "type" last)
  the init event         carries `argv` (its arguments) and `stdin_bytes` / `stdin_sha256`
                         (what it read on standard input), so a test can tell where the
                         prompt came from, and `credential_sha256`: a SHA-256 of each of
                         ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN it was given (never
                         the value), so a test can tell the key arrived
  sessions               like the CLI: the init event's session_id is --session-id when
                         given, else a fresh one; each run appends its transcript to
                         ${CLAUDE_CONFIG_DIR:-~/.claude}/projects/<cwd, / as ->/<id>.jsonl;
                         --resume ID continues session ID when its transcript is on this
                         machine (in any project), else exits 1 "No conversation found"
  --permission-mode plan like the CLI's plan mode: no file is changed; the result is the
                         plan (the file directives it would carry out, as steps)
  .mcp.json              like the CLI, the project's MCP servers (`mcpServers` in the
                         working directory's .mcp.json) are started, unless
                         --strict-mcp-config is given (then only --mcp-config counts, and
                         the stand-in takes none): each server's command is run once, as
                         the CLI would spawn it, which is what a hostile repository wants
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = "2.1.197 (orch stand-in)"
MODEL = "orch-standin"
FIX_PROMPT_TAG = "<!-- orch:fix-prompt -->"   # == orchestrator.core.prompts.FIX_PROMPT_TAG
PLANTED = "test_orch_standin_planted.py"
_DIRECTIVE = re.compile(r"^[ \t>]*orch-standin(?:\[([A-Za-z0-9_-]+)\])?:[ \t]*(.*?)[ \t]*$",
                        re.MULTILINE)
# The scopes a prompt of a split issue carries (prompts/part.md.j2, merge.md.j2): the
# part's specialty, or "merge" for the integration's conflict fix.
_SCOPE = re.compile(r"^<!-- orch:(?:part ([A-Za-z0-9_-]+)|(merge|plan)-prompt) -->$", re.MULTILINE)
_ESCAPES = re.compile(r"\\(n|t|\\)")
COST_PER_TURN = 0.0042
# The variables the real CLI takes a key from (its init event names the one in use as
# apiKeySource); the stand-in reports a SHA-256 of each, never the value.
CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")


@dataclass
class Plan:
    """What the directives asked for, in order; flags for the run as a whole."""

    actions: list[tuple[str, list[str]]] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    turns: int = 0
    report_turns: int | None = None
    cost: float | None = None
    slow: float = 0.0
    problems: list[str] = field(default_factory=list)
    structured: Any = None             # what --json-schema's structured_output is


def unescape(text: str) -> str:
    return _ESCAPES.sub(lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


_ARITY = {"write": 2, "append": 2, "replace": 3, "delete": 1, "say": 1}
_FLAGS = {"fail-first", "never-fix", "loop", "sleep-forever", "stubborn", "is-error", "crash",
          "linger"}


def prompt_scopes(prompt: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _SCOPE.finditer(prompt)}


def parse_directives(prompt: str) -> Plan:
    """The directives that act on this prompt: `orch-standin[SCOPE]:` ones only in a
    prompt of that scope (a split's part or merge fix), plain ones only in a prompt
    without a scope (so each part of a split does its own part of one issue)."""
    plan = Plan()
    scopes = prompt_scopes(prompt)
    for match in _DIRECTIVE.finditer(prompt):
        scope, text = match.group(1), match.group(2)
        if (scope not in scopes) if scope else bool(scopes):
            continue
        try:
            words = shlex.split(text)
        except ValueError as exc:
            plan.problems.append(f"cannot parse {text!r}: {exc}")
            continue
        if not words:
            continue
        verb, args = words[0].lower(), words[1:]
        try:
            if verb in _ARITY:
                n = _ARITY[verb]
                if len(args) < n:
                    raise ValueError(f"{verb} needs {n} argument(s)")
                if verb == "say":
                    args = [" ".join(args)]
                plan.actions.append((verb, [unescape(a) for a in args[:n]]))
            elif verb in _FLAGS:
                plan.flags.add(verb)
            elif verb == "turns":
                plan.turns += int(args[0])
            elif verb == "report-turns":
                plan.report_turns = int(args[0])
            elif verb == "cost":
                plan.cost = float(args[0])
            elif verb == "slow":
                plan.slow = float(args[0])
            elif verb == "structured":
                plan.structured = json.loads(" ".join(args))
            else:
                raise ValueError(f"unknown directive {verb!r}")
        except (ValueError, IndexError) as exc:
            plan.problems.append(f"{text!r}: {exc}")
    return plan


JSON_STYLES = ("compact", "spaced", "reordered")


def dump_event(event: dict[str, Any], style: str = "compact") -> str:
    """One event as one line of JSON in `style` (see --json-style): the same data each way."""
    if style == "reordered":
        event = dict(reversed(list(event.items())))
    separators = (" , ", " : ") if style == "spaced" else (",", ":")
    return json.dumps(event, ensure_ascii=False, separators=separators)


class Emitter:
    """stream-json on stdout, one JSON object per line (compact by default), flushed at once."""

    def __init__(self, session_id: str, stream: bool, style: str = "compact") -> None:
        self.session_id = session_id
        self.stream = stream
        self.style = style
        self.tool_n = 0

    def emit(self, event: dict[str, Any]) -> None:
        if self.stream:
            line = dump_event(event, self.style) + "\n"
            sys.stdout.buffer.write(line.encode("utf-8", "surrogateescape"))
            sys.stdout.flush()

    def _message(self, role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            msg = {"id": f"msg_standin_{self.tool_n}", "type": "message", "role": role,
                   "model": MODEL, "content": content, "stop_reason": None,
                   "usage": {"input_tokens": 10, "output_tokens": 10}}
        return {"type": role, "message": msg, "parent_tool_use_id": None,
                "session_id": self.session_id}

    def text(self, text: str) -> None:
        self.emit(self._message("assistant", [{"type": "text", "text": text}]))

    def tool(self, name: str, tool_input: dict[str, Any], result: str, is_error: bool = False) -> None:
        self.tool_n += 1
        tid = f"toolu_standin_{self.tool_n:04d}"
        self.emit(self._message("assistant", [{"type": "tool_use", "id": tid, "name": name,
                                               "input": tool_input}]))
        block: dict[str, Any] = {"tool_use_id": tid, "type": "tool_result", "content": result}
        if is_error:
            block["is_error"] = True
        self.emit(self._message("user", [block]))


class Refused(Exception):
    pass


def _inside(path: str) -> Path:
    """PATH relative to the working directory, refusing anything that would leave it."""
    if not path or os.path.isabs(path):
        raise Refused(f"refused: {path!r} is not a relative path")
    cwd = Path.cwd().resolve()
    target = (cwd / path).resolve()
    if target != cwd and cwd not in target.parents:
        raise Refused(f"refused: {path!r} leaves the working directory")
    return target


def apply(verb: str, args: list[str]) -> tuple[str, dict[str, Any], str]:
    """Perform one file action; returns (tool name, tool input, tool result text)."""
    if verb == "write":
        target = _inside(args[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        content = args[1] if args[1].endswith("\n") else args[1] + "\n"
        target.write_text(content, encoding="utf-8")
        return "Write", {"file_path": str(target), "content": content}, \
            f"File created successfully at: {target}"
    if verb == "append":
        target = _inside(args[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(args[1] + "\n")
        return "Edit", {"file_path": str(target), "new_string": args[1]}, f"Appended to {target}"
    if verb == "replace":
        target = _inside(args[0])
        old = target.read_text(encoding="utf-8")
        count = old.count(args[1])
        target.write_text(old.replace(args[1], args[2]), encoding="utf-8")
        return "Edit", {"file_path": str(target), "old_string": args[1], "new_string": args[2]}, \
            f"Replaced {count} occurrence(s) in {target}"
    if verb == "delete":
        target = _inside(args[0])
        target.unlink(missing_ok=True)
        return "Bash", {"command": f"rm -f {shlex.quote(args[0])}",
                        "description": "Delete a file"}, ""
    raise Refused(f"unknown action {verb}")


_PLANTED_TEST = '''"""Planted by orch-standin-agent (fail-first / never-fix): a deliberately failing test."""


def test_left_failing_by_the_standin():
    assert 1 + 1 == 3, "the orch stand-in left this test failing on purpose"
'''


def start_mcp_servers(strict: bool) -> list[dict[str, str]]:
    """The project's .mcp.json servers, started as the CLI starts them (see the docstring);
    none with --strict-mcp-config. Returns the init event's `mcp_servers`."""
    if strict:
        return []
    try:
        config = json.loads(Path(".mcp.json").read_text(encoding="utf-8"))
        servers = config.get("mcpServers") or {}
    except (OSError, ValueError, AttributeError):
        return []
    started = []
    for name, server in servers.items() if isinstance(servers, dict) else ():
        command = server.get("command") if isinstance(server, dict) else None
        if not isinstance(command, str):
            continue
        args = [str(a) for a in server.get("args") or []]
        try:
            subprocess.run([command, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
            started.append({"name": str(name), "status": "connected"})
        except (OSError, subprocess.SubprocessError):
            started.append({"name": str(name), "status": "failed"})
    return started


class Run:
    def __init__(self, opts: argparse.Namespace, prompt: str, stdin: bytes = b"",
                 argv: list[str] | None = None) -> None:
        self.opts = opts
        self.plan = parse_directives(prompt)
        self.fix = prompt.startswith(FIX_PROMPT_TAG)
        self.stdin = stdin
        self.argv = list(argv or [])
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogateescape")).hexdigest()
        session = opts.resume or opts.session_id or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"orch-standin:{digest}:{time.time_ns()}"))
        self.prompt = prompt
        self.out = Emitter(session, opts.output_format == "stream-json", opts.json_style)
        self.turns = 0
        self.started = time.monotonic()
        self.notes: list[str] = []

    def before_turn(self) -> None:
        """The real CLI stops at --max-turns with error_max_turns; `loop` ignores it."""
        limit = self.opts.max_turns
        if limit is not None and self.turns >= limit and "loop" not in self.plan.flags:
            raise MaxTurns()
        if self.plan.slow:
            time.sleep(self.plan.slow)

    def turn(self, name: str, tool_input: dict[str, Any], result: str, is_error: bool = False) -> None:
        self.before_turn()
        self.turns += 1
        self.out.tool(name, tool_input, result, is_error)

    def act(self, verb: str, args: list[str]) -> None:
        self.before_turn()
        try:
            name, tool_input, result = apply(verb, args)
            self.notes.append(f"{verb} {args[0]}")
            is_error = False
        except Refused as exc:
            name, tool_input, result, is_error = "Write", {"file_path": args[0]}, str(exc), True
        except OSError as exc:
            name, tool_input, result, is_error = "Edit", {"file_path": args[0]}, f"error: {exc}", True
        self.turns += 1
        self.out.tool(name, tool_input, result, is_error)

    def main(self) -> int:
        o = self.out
        mcp = start_mcp_servers(self.opts.strict_mcp_config)
        o.emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": o.session_id,
                "tools": ["Bash", "Edit", "Read", "Write"], "mcp_servers": mcp, "model": MODEL,
                "permissionMode": self.opts.permission_mode or "default",
                "apiKeySource": next((n for n in CREDENTIAL_VARS if os.environ.get(n)), "none"),
                "credential_sha256": {n: hashlib.sha256(os.environ[n].encode()).hexdigest()
                                      for n in CREDENTIAL_VARS if os.environ.get(n)},
                "claude_code_version": VERSION, "pid": os.getpid(), "pgid": os.getpgid(0),
                "stand_in": True, "argv": self.argv, "stdin_bytes": len(self.stdin),
                "stdin_sha256": hashlib.sha256(self.stdin).hexdigest()})
        for problem in self.plan.problems:
            o.text(f"(stand-in) ignoring a directive: {problem}")
        flags = self.plan.flags
        if "stubborn" in flags:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if "crash" in flags:
            o.text("(stand-in) about to crash, as the prompt asked")
            sys.stderr.write("orch stand-in: crashing as instructed (no result event)\n")
            sys.stderr.flush()
            sys.stdout.write('{"type":"assistant","message":{"content":[{"type":"text","text":"cut sho')
            sys.stdout.flush()
            os._exit(3)
        if "sleep-forever" in flags:
            o.text("(stand-in) thinking forever, as the prompt asked")
            subprocess.Popen(["sleep", "86400"], stdin=subprocess.DEVNULL)
            while True:
                time.sleep(3600)
        try:
            if self.opts.permission_mode == "plan":
                self.plan_run()
            elif self.fix:
                self.fix_run()
            else:
                self.first_run()
            while "loop" in flags:
                self.turn("Read", {"file_path": os.getcwd()}, "(stand-in) looping, as the prompt asked")
        except MaxTurns:
            return self.result(is_error=True, subtype="error_max_turns", text=None,
                               num_turns=self.turns + 1)
        if "is-error" in flags:
            return self.result(is_error=True, subtype="success",
                               text="API Error: 500 (orch stand-in: is-error, as the prompt asked)")
        summary = "; ".join(self.notes) or "no orch-standin directives: nothing to change"
        o.text(f"(stand-in) done: {summary}")
        save_transcript(o.session_id, self.prompt, summary)
        return self.result(is_error=False, subtype="success", text=f"Stand-in run: {summary}.")

    def plan_run(self) -> None:
        """Plan mode: read-only; the plan lists what the file directives would do."""
        steps = [f"{verb} {args[0]}" for verb, args in self.plan.actions if verb != "say"]
        self.turn("Read", {"file_path": os.getcwd()}, "(stand-in) plan mode: reading only")
        self.notes.append("plan: " + ("; ".join(steps) or "nothing to change"))

    def first_run(self) -> None:
        if not self.plan.actions and not self.plan.turns:
            self.out.text("(stand-in) the prompt has no orch-standin directives; changing nothing")
        for verb, args in self.plan.actions:
            if verb == "say":
                self.out.text(args[0])
            else:
                self.act(verb, args)
        for i in range(self.plan.turns):
            self.turn("Read", {"file_path": os.getcwd()}, f"(stand-in) read-only turn {i + 1}")
        if self.plan.flags & {"fail-first", "never-fix"}:
            self.act("write", [PLANTED, _PLANTED_TEST])

    def fix_run(self) -> None:
        self.out.text("(stand-in) fix run: reading the failing output")
        if "never-fix" in self.plan.flags:
            self.out.text("(stand-in) I could not find the cause (never-fix)")
            return
        if Path(PLANTED).exists():
            self.act("delete", [PLANTED])
        else:
            self.out.text("(stand-in) nothing of mine to fix")

    def result(self, *, is_error: bool, subtype: str, text: str | None,
               num_turns: int | None = None) -> int:
        turns = num_turns if num_turns is not None else self.turns + 1
        if self.plan.report_turns is not None:
            turns = self.plan.report_turns
        cost = self.plan.cost if self.plan.cost is not None else round(COST_PER_TURN * turns, 6)
        budget = self.opts.max_budget_usd
        if self.plan.cost is None and budget is not None and cost > budget and not is_error:
            is_error, subtype, text = True, "error_max_budget_usd", None
        event: dict[str, Any] = {
            "type": "result", "subtype": subtype, "is_error": is_error,
            "duration_ms": int((time.monotonic() - self.started) * 1000), "duration_api_ms": 0,
            "num_turns": turns, "session_id": self.out.session_id, "total_cost_usd": cost,
            "usage": {"input_tokens": 10 * turns, "output_tokens": 10 * turns},
            "permission_denials": [], "stand_in": True}
        if text is not None:
            event["result"] = text
        if self.opts.json_schema is not None and not is_error:
            # the real CLI validates against the schema; the stand-in returns what the
            # prompt's `structured JSON` directive says, unvalidated (orch must validate)
            event["structured_output"] = self.plan.structured
        if self.out.stream:
            self.out.emit(event)
        elif self.opts.output_format == "json":
            print(dump_event(event, self.opts.json_style))
        else:
            print(text or subtype)
        while "linger" in self.plan.flags:
            time.sleep(3600)
        return 1 if is_error else 0


class MaxTurns(Exception):
    pass


def _config_dir() -> Path:
    return Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")


def find_transcript(session: str) -> Path | None:
    """The transcript of `session` in any project on this machine (what --resume searches)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", session or ""):
        return None
    return next(iter(sorted((_config_dir() / "projects").glob(f"*/{session}.jsonl"))), None)


def save_transcript(session: str, prompt: str, summary: str) -> None:
    """Append this run to its session's transcript (the project dir is the cwd, / as -)."""
    project = re.sub(r"[^A-Za-z0-9]", "-", os.getcwd())
    where = find_transcript(session) or _config_dir() / "projects" / project / f"{session}.jsonl"
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        with open(where, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"type": "user", "prompt_sha256": hashlib.sha256(
                prompt.encode("utf-8", "surrogateescape")).hexdigest()}) + "\n")
            fh.write(json.dumps({"type": "result", "result": summary}) + "\n")
    except OSError:
        pass   # like the CLI, a transcript that cannot be written does not fail the run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orch-standin-agent", add_help=True,
                                description="A deterministic stand-in for the Claude Code CLI "
                                            "(-p, stream-json). Not an AI: see the module docstring.")
    p.add_argument("prompt", nargs="?")
    p.add_argument("-p", "--print", dest="print_mode", action="store_true")
    p.add_argument("--output-format", choices=("text", "json", "stream-json"), default="text")
    p.add_argument("--input-format", default="text")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--max-turns", type=int)
    p.add_argument("--model")
    p.add_argument("--permission-mode")
    p.add_argument("--dangerously-skip-permissions", action="store_true")
    p.add_argument("--max-budget-usd", type=float)
    p.add_argument("--setting-sources")
    p.add_argument("--session-id")
    p.add_argument("-r", "--resume")
    p.add_argument("--allowedTools", "--allowed-tools", dest="allowed_tools")
    p.add_argument("--strict-mcp-config", action="store_true")
    p.add_argument("--mcp-config", action="append")
    p.add_argument("--json-schema")
    p.add_argument("--json-style", choices=JSON_STYLES, default="compact",
                   help="stand-in only: how events are serialised (see the module docstring)")
    p.add_argument("-v", "--version", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    opts, unknown = _parser().parse_known_args(argv)
    if opts.version:
        print(VERSION)
        return 0
    if unknown:
        sys.stderr.write(f"orch stand-in: ignoring unsupported arguments: {' '.join(unknown)}\n")
    if not opts.print_mode:
        sys.stderr.write("orch stand-in: only print mode (-p) is supported\n")
        return 2
    if opts.output_format == "stream-json" and not opts.verbose:
        sys.stderr.write("Error: When using --print, --output-format=stream-json requires --verbose\n")
        return 1
    bypass = opts.dangerously_skip_permissions or opts.permission_mode == "bypassPermissions"
    if bypass and hasattr(os, "geteuid") and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        sys.stderr.write("--dangerously-skip-permissions cannot be used with root/sudo privileges "
                         "for security reasons\n")
        return 1
    # Like node, start with default signal handling even if the parent ignored SIGINT.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    raw = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    stdin = raw.decode("utf-8", "replace")
    prompt = "\n".join(p for p in (opts.prompt, stdin) if p)
    if not prompt.strip():
        sys.stderr.write("Error: Input must be provided either through stdin or as a prompt "
                         "argument when using --print\n")
        return 1
    if opts.resume and find_transcript(opts.resume) is None:
        sys.stderr.write(f"No conversation found with session ID: {opts.resume}\n")
        return 1
    try:
        return Run(opts, prompt, raw, list(sys.argv[1:] if argv is None else argv)).main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
