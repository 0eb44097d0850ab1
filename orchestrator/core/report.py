"""What orch writes on the forge: PR body, issue comments, labels (pure text).

Everything here is posted publicly under orch's identity, so only orch's own template
text is live Markdown. Every string from elsewhere (the failure reason from the host, the
agent's summary, test output, the cancel reason, even host names and branch names) goes
into a fenced block or an inline code span whose fence is longer than any backtick run
inside, so no mention, link, image or HTML in it ever renders; mentions are defused
besides (for mail and chat integrations that ignore code). `tests` is one of a fixed
set of words. The failure comment shows a plain summary of the log (orch's marker lines
and the failing test lines), never its raw tail unless `report.log_tail: full`, and
every body stays under GitHub's 65,536-character limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .models import Task
from .text import clean

LABEL_RUNNING = "orch:running"
LABEL_DONE = "orch:done"
LABEL_FAILED = "orch:failed"
LABEL_PLAN = "orch:plan"       # asks for a plan first (lifecycle/conversation.py)
MARKER = "<!-- orch -->"   # lets a person (and orch) recognise orch's own comment

BODY_LIMIT = 65_536            # GitHub refuses longer issue comments and PR bodies (422)
REASON_LIMIT = 1_000           # characters of a failure or cancel reason
SUMMARY_LIMIT = 30_000         # characters of the agent's summary in a PR body
LOG_SUMMARY_LIMIT = 4_096      # report.log_tail: summary
LOG_FULL_LIMIT = 16_384        # report.log_tail: full (the log's last lines)
LOG_LINE_LIMIT = 300           # characters of one log line in a comment
TEST_WORDS = ("passed", "failed", "none")
LOG_TAIL_MODES = ("none", "summary", "full")

# Marker kinds worth showing on the issue; `note` and `start` lines carry host paths,
# user names and process ids, which the public need not see.
_SHOWN_MARKERS = ("step", "agent", "tests", "warn", "error", "done")
_MARKER_PREFIX = "::orch:: "
# What a test runner prints about a failure: pytest (FAILED, E   ...), unittest (FAIL:,
# AssertionError), jest (✕), go (--- FAIL), TAP (not ok), summaries ("1 failed").
_FAILURE_LINE = re.compile(r"(?i:\bfail(?:ed|ure|ures|s)?\b)|\bError\b|Error:|\bassert|Traceback"
                           r"|\bpanic\b|^not ok\b|[✕✗×]|^E\s")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_BACKTICKS = re.compile(r"`+")


# --------------------------------------------------------------------------- safe pieces

def plain(text: object) -> str:
    """Untrusted text as plain characters: terminal escape sequences removed, other
    control characters replaced (core/text.py), mentions defused with a word joiner."""
    s = _ANSI.sub("", text if isinstance(text, str) else str(text))
    return _MENTION.sub("@\u2060", clean(s))


def _fence_for(text: str, minimum: int) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    return "`" * max(minimum, longest + 1)


def fenced(text: str, info: str = "") -> str:
    """A fenced block longer than any backtick run inside `text` (`text` is shown as
    written: callers pass it through `plain` first when it is untrusted)."""
    fence = _fence_for(text, 3)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def code(text: object, *, cell: bool = False) -> str:
    """`text` on one line as an inline code span that nothing inside can close; `cell`:
    for a table cell, where GitHub splits on `|` even inside code unless escaped."""
    s = " ".join(plain(text).split()) or "-"
    if cell:
        s = s.replace("|", "\\|")
    fence = _fence_for(s, 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fit(render: Callable[[int], str], limit: int) -> str:
    """render(cap) with the largest cap (halving from `limit`) whose body fits GitHub."""
    cap = limit
    body = render(cap)
    while len(body) > BODY_LIMIT and cap > 16:
        cap //= 2
        body = render(cap)
    return body


def tests_word(value: str | None) -> str:
    return value if value in TEST_WORDS else "n/a"


def _money(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"${value:.2f}"


def _facts(task: Task) -> str:
    rows = [("task", code(task.id, cell=True)), ("host", code(task.host or "-", cell=True)),
            ("specialty", code(task.specialty, cell=True)),
            ("branch", code(task.branch, cell=True) if task.branch else "-"),
            ("tests", tests_word(task.tests)),
            ("turns", str(int(task.turns)) if isinstance(task.turns, int) else "n/a"),
            ("cost", _money(task.cost_usd)), ("attempt", str(int(task.attempts)))]
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _table(task: Task) -> str:
    return "| | |\n|---|---|\n" + _facts(task)


def _url(url: str) -> str:
    """A URL the forge gave us, as a plain autolink when it plainly is one."""
    return url if re.fullmatch(r"(?:https?|file)://[^\s<>()\[\]`]+", url or "") else code(url)


def _reason(reason: str, limit: int = REASON_LIMIT) -> str:
    return fenced(_cut(plain(reason).strip() or "(no reason given)", limit), "text")


# --------------------------------------------------------------------------- the log

def _marker(line: str) -> str | None:
    """`::orch:: tests failed (exit 1): ...` -> `tests failed (exit 1): ...` for shown kinds."""
    if not line.startswith(_MARKER_PREFIX):
        return None
    kind, _, rest = line[len(_MARKER_PREFIX):].partition(" ")
    return f"{kind} {rest}".strip() if kind in _SHOWN_MARKERS else None


def _last_test_run(lines: list[str]) -> list[str]:
    """The output lines of the last test run (after its `tests running:` marker)."""
    run: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(_MARKER_PREFIX):
            if line.startswith(_MARKER_PREFIX + "tests running"):
                run, inside = [], True
            elif inside:
                inside = False
            continue
        if inside and line.strip():
            run.append(line)
    return run


def _bounded(lines: list[str], limit: int) -> str:
    """The last whole lines that fit in `limit` characters."""
    out: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > limit:
            break
        out.append(line)
    return "\n".join(reversed(out))


def log_excerpt(log: str, mode: str = "summary", limit: int | None = None) -> str:
    """What of the job log a failure comment shows (`report.log_tail`), as plain text.

    none: nothing. summary (the default): orch's marker lines and the failing lines of the
    last test run, at most LOG_SUMMARY_LIMIT characters. full: the log's last lines, at
    most LOG_FULL_LIMIT characters. Either way every line is plain (no escapes, mentions
    defused) and cut to LOG_LINE_LIMIT; the whole log stays in `orch logs`.
    """
    if mode == "none" or not log.strip():
        return ""
    lines = [_cut(plain(x.rstrip()), LOG_LINE_LIMIT) for x in log.splitlines()]
    if mode == "full":
        return _bounded([x for x in lines if x.strip()], limit or LOG_FULL_LIMIT)
    cap = limit or LOG_SUMMARY_LIMIT
    markers = [m for m in (_marker(x) for x in lines) if m]
    run = _last_test_run(lines)
    failing = [x for x in run if _FAILURE_LINE.search(x)] or run[-5:]
    tests = _bounded(failing, cap // 2) if failing else ""
    head = _bounded(markers, cap - len(tests) - 40)
    return head + (f"\n\nfailing test output:\n{tests}" if tests else "")


# --------------------------------------------------------------------------- comments

def comment_running(task: Task) -> str:
    return (f"{MARKER}\n:robot: **orch** is working on this issue on host {code(task.host)} "
            f"(task {code(task.id)}, specialty {code(task.specialty)}).\n\n"
            f"Follow it live with `orch logs {task.id} -f`.")


def comment_succeeded(task: Task, pr_url: str) -> str:
    return (f"{MARKER}\n:white_check_mark: **orch** opened {_url(pr_url)} for this issue.\n\n"
            + _table(task))


def comment_failed(task: Task, reason: str, log_excerpt: str) -> str:
    """The failure comment; `log_excerpt` is what `log_excerpt()` chose to show."""
    def render(cap: int) -> str:
        shown = _cut(plain(log_excerpt), cap)
        tail = (f"\n\n<details><summary>what the log says</summary>\n\n{fenced(shown, 'text')}"
                f"\n\n</details>") if shown.strip() else ""
        return (f"{MARKER}\n:x: **orch** could not finish this issue:\n\n"
                + _reason(reason, min(cap, REASON_LIMIT)) + "\n\n" + _table(task) + tail
                + f"\n\nThe workspace is kept on the host for inspection; `orch retry {task.id}` "
                  f"queues it again (`orch logs {task.id}` shows the whole log).")
    return _fit(render, LOG_FULL_LIMIT)


def comment_cancelled(task: Task, reason: str) -> str:
    """A job stopped on its host (a signal to the job)."""
    return (f"{MARKER}\n:stop_sign: **orch** task {code(task.id)} was cancelled:\n\n"
            + _reason(reason))


def comment_stopped(task: Task, status: str, reason: str, trigger: str) -> str:
    """A task that ended without finalize (cancelled, lost for good, ...)."""
    return (f"{MARKER}\n:stop_sign: **orch** task {code(task.id)} was {code(status)}:\n\n"
            + _reason(reason) + f"\n\nLabel the issue {code(trigger)} again, or run "
              f"`orch retry {task.id}`, to run it again.")


def pr_title(title: str) -> str:
    return " ".join(title.split())[:250] or "orch change"


def pr_body(task: Task, number: int, summary: str) -> str:
    def render(cap: int) -> str:
        text = _cut(plain(summary).strip(), cap) or "(the agent gave no summary)"
        return (f"{MARKER}\nThis pull request was made by **orch**: the agent ran on host "
                f"{code(task.host)}.\n\n### What changed\n\n{fenced(text, 'text')}\n\n"
                f"### Run\n\n{_table(task)}\n\n{RUNS_HEADING}\n\n{RUNS_HEAD}\n{run_row(task)}\n"
                f"{RUNS_END}\n\nCloses #{int(number)}\n")
    return _fit(render, SUMMARY_LIMIT)


# -- the runs table of a PR body: one row per run on the PR (the first, then follow-ups) --

RUNS_HEADING = "### Runs"
RUNS_HEAD = "| run | task | host | turns | cost | tests |\n|---|---|---|---|---|---|"
RUNS_END = "<!-- orch:runs -->"    # rows go above it; a body without it gets a new table


def run_row(task: Task) -> str:
    turns = str(int(task.turns)) if isinstance(task.turns, int) else "n/a"
    return (f"| {code(task.kind, cell=True)} | {code(task.id, cell=True)} | "
            f"{code(task.host or '-', cell=True)} | {turns} | {_money(task.cost_usd)} | "
            f"{tests_word(task.tests)} |")


def with_run_row(body: str, task: Task) -> str:
    """The PR body with `task`'s row in its runs table (replacing the task's row when it is
    there already: finalize may run twice). A body orch did not write (or a person cut the
    table from) gets the table at its end."""
    row = run_row(task)
    lines = body.splitlines()
    tag = f"| {code(task.kind, cell=True)} | {code(task.id, cell=True)} |"
    kept = [x for x in lines if not x.startswith(tag)]
    if RUNS_END in kept:
        at = kept.index(RUNS_END)
        kept.insert(at, row)
        out = "\n".join(kept)
    else:
        out = "\n".join(kept).rstrip() + f"\n\n{RUNS_HEADING}\n\n{RUNS_HEAD}\n{row}\n{RUNS_END}"
    return out[:BODY_LIMIT] + ("\n" if body.endswith("\n") else "")


# -- replies to commands (lifecycle/conversation.py) ---------------------------------------

def reply_taken(task: Task, what: str) -> str:
    return (f"{MARKER}\n:eyes: **orch** took this: {what} (task {code(task.id)}). "
            f"`orch logs {task.id} -f` follows it.")


def reply_followup_done(task: Task, summary: str, commit: str | None) -> str:
    text = _cut(plain(summary).strip(), SUMMARY_LIMIT) or "(the agent gave no summary)"
    pushed = f"pushed {code(commit[:12])}" if commit else "pushed a commit"
    return (f"{MARKER}\n:rocket: **orch** {pushed} to this pull request (task {code(task.id)}, "
            f"host {code(task.host)}):\n\n{fenced(text, 'text')}\n\n" + _table(task))


def reply_plan(task: Task, plan_text: str, handle: str) -> str:
    text = _cut(plain(plan_text).strip(), SUMMARY_LIMIT) or "(the agent gave no plan)"
    return (f"{MARKER}\n:memo: **orch**'s plan for this issue (by the agent on host "
            f"{code(task.host)}, task {code(task.id)}; nothing was changed):\n\n"
            f"{fenced(text, 'markdown')}\n\n{code(handle + ' approve')} starts the work with "
            f"this plan; {code(handle + ' plan <what to change>')} revises it.")


def reply_failed(task: Task, reason: str) -> str:
    return (f"{MARKER}\n:confused: **orch** could not do this (task {code(task.id)}); the pull "
            f"request's commits are as they were:\n\n" + _reason(reason)
            + next_step(task.error_kind))


def reply_stopped(task: Task, status: str, reason: str) -> str:
    return (f"{MARKER}\n:stop_sign: **orch** task {code(task.id)} was {code(status)}:\n\n"
            + _reason(reason))


def reply_refused(author: str, why: str) -> str:
    """The one reply to a command orch will not take (its author lacks the permission)."""
    return (f"{MARKER}\n**orch** does not take commands from {code(author or 'an unknown account')}: "
            f"{plain(why)}.")


def reply_note(text: str) -> str:
    """A short answer of orch's own words (a command it cannot carry out now)."""
    return f"{MARKER}\n**orch**: {plain(text)}"


# -- the outcome of a task, as the issue hears it (lifecycle/tell.py says it) ------------

def labels_for(status: str, trigger: str) -> tuple[list[str], list[str]]:
    """(labels to add, labels to remove) when a task is `status`: orch:running while it
    runs; at the end orch:done or orch:failed, and the trigger label off, so that the
    label means "do this again" only once a person puts it back."""
    if status == "running":
        return [LABEL_RUNNING], [LABEL_DONE, LABEL_FAILED]
    if status == "succeeded":
        return [LABEL_DONE], [LABEL_RUNNING, trigger, LABEL_FAILED]
    if status == "failed":
        return [LABEL_FAILED], [LABEL_RUNNING, trigger, LABEL_DONE]
    return [], [LABEL_RUNNING, trigger]


# What a person can do about a failure, by its kind (Task.error_kind): said under the
# failure comment, so the reader does not have to decode the message.
_NEXT_STEPS = {
    "timeout": "raise `agent.timeout` (or `tests.timeout`) in orch.yml, or make the issue smaller",
    "max_turns": "raise `agent.max_turns` in orch.yml, or make the issue smaller",
    "budget": "raise `agent.max_cost_usd` in orch.yml, or make the issue smaller",
    "agent_error": "the agent itself failed (see the log); retry when its API is healthy",
    "agent_missing": "install the agent on the host, or set the host's `agent:` in the inventory",
    "no_result": "the agent stopped without a result (see the log); retry",
    "tests_failed": "the tests still fail after the fix runs: see the log, or raise "
                    "`tests.max_fix_attempts`",
    "tests_timeout": "the tests ran over `tests.timeout`: raise it, or make them faster",
    "tests_error": "the test command could not run: set `tests.command` (or the repository's "
                   "`.orch.yml` test_command)",
    "git_missing": "install git on the host (`orch bootstrap` checks it)",
    "root_refused": "log in to the host as another user, or set `agent.allow_root: true`",
    "no_changes": "the agent changed nothing: say more precisely what to change",
    "clone_failed": "check that the host can clone the repository (`repo_urls`, its "
                    "credentials; `orch bootstrap`)",
    "branch_failed": "check the repository's default branch",
    "push_failed": "check the host's push access and the branch protection rules",
    "start_failed": "check the host (`orch hosts`, `orch bootstrap`)",
    "lost": "the host went away during every attempt (`orch hosts`)",
}


def next_step(error_kind: str | None) -> str:
    """A line for the end of a failure comment: what to do about a failure of this kind
    ("" when there is nothing particular to say)."""
    step = _NEXT_STEPS.get(error_kind or "")
    return f"\n\n**What to do**: {step}." if step else ""


# -- a split issue (docs/split.md): one tracking comment, one PR --------------------------

def _split_row(t: Task) -> str:
    info = t.split or {}
    if t.kind == "part":
        part = info.get("part", {})
        what = f"part {int(part.get('k', 0))}"
    elif t.kind == "planner":
        what = "plan"
    else:
        what = "tests" if info.get("final") else "merge"
    commit = code(t.commit[:12], cell=True) if t.commit else "-"
    return (f"| {what} | {code(t.specialty, cell=True)} | {code(t.host or '-', cell=True)} | "
            f"{code(t.status, cell=True)} | "
            f"{int(t.turns) if isinstance(t.turns, int) else 'n/a'} | {_money(t.cost_usd)} | "
            f"{tests_word(t.tests)} | {commit} |")


def split_table(children: list[Task]) -> str:
    """The parts (and integration runs) of a split, one row each."""
    head = "| | specialty | host | status | turns | cost | tests | commit |\n|---|---|---|---|---|---|---|---|"
    return "\n".join([head, *(_split_row(t) for t in children)])


def plan_table(plan: list[dict[str, Any]]) -> str:
    """The parts of a plan (perhaps a planning run's: every cell is a code span)."""
    rows = ["| part | specialty | title | paths | after |", "|---|---|---|---|---|"]
    for p in plan:
        rows.append(f"| {int(p.get('k', 0))} | {code(p.get('specialty', ''), cell=True)} | "
                    f"{code(_cut(str(p.get('title', '')), 200), cell=True)} | "
                    f"{code(', '.join(map(str, p.get('paths', [])))[:300] or '-', cell=True)} | "
                    f"{', '.join(str(int(d)) for d in p.get('depends_on', [])) or '-'} |")
    return "\n".join(rows)


def _plan_of(parent: Task) -> str:
    plan = (parent.split or {}).get("plan", [])
    return plan_table(plan) + "\n\n" if plan else ""


def comment_split(parent: Task, children: list[Task], parts: int) -> str:
    """The tracking comment while the split runs (edited as parts start and finish): the
    plan, then the runs."""
    plan = (parent.split or {}).get("plan", [])
    if not plan:
        return (f"{MARKER}\n:robot: **orch** is planning how to split this issue into parts "
                f"(task {code(parent.id)}).\n\n" + split_table(children))
    return (f"{MARKER}\n:robot: **orch** split this issue into {int(parts)} parts that run in "
            f"parallel on the fleet (task {code(parent.id)}); they are merged into "
            f"{code(parent.branch or '-')} and opened as one pull request.\n\n"
            + plan_table(plan) + "\n\n" + split_table(children)
            + f"\n\nFollow every part with `orch logs {parent.id} -f`.")


def comment_split_succeeded(parent: Task, children: list[Task], pr_url: str) -> str:
    return (f"{MARKER}\n:white_check_mark: **orch** opened {_url(pr_url)} for this issue: "
            f"its parts, integrated and tested together.\n\n" + _plan_of(parent)
            + split_table(children))


def comment_split_failed(parent: Task, children: list[Task], culprit: Task | None,
                         reason: str) -> str:
    """The split failed: which part (or integration) and why; the others were stopped."""
    who = "the split"
    if culprit is not None:
        info = culprit.split or {}
        who = (f"part {int(info.get('part', {}).get('k', 0))} ({code(culprit.specialty)}, task "
               f"{code(culprit.id)})" if culprit.kind == "part"
               else f"the planning run (task {code(culprit.id)})" if culprit.kind == "planner"
               else f"the integration (task {code(culprit.id)})")
    return (f"{MARKER}\n:x: **orch** could not finish this issue: {who} failed, and the "
            f"parts still running were cancelled.\n\n" + _reason(reason) + "\n\n"
            + _plan_of(parent) + split_table(children)
            + f"\n\n`orch retry {parent.id}` runs the failed parts and the integration again "
              f"(the parts that succeeded are kept).")


def comment_split_cancelled(parent: Task, children: list[Task], reason: str) -> str:
    return (f"{MARKER}\n:stop_sign: **orch** split {code(parent.id)} was cancelled with "
            f"every part:\n\n" + _reason(reason) + "\n\n" + split_table(children))


def split_pr_body(parent: Task, children: list[Task], summaries: dict[str, str]) -> str:
    """The one PR of a split: a table of the parts and what each part's agent said."""
    def render(cap: int) -> str:
        each = max(16, cap // max(1, len(summaries)))
        said = "\n\n".join(f"**{code(t.specialty)} part** ({code(t.host or '-')}):\n\n"
                           + fenced(_cut(plain(summaries.get(t.id, "")).strip(), each)
                                    or "(no summary)", "text")
                           for t in children if t.id in summaries)
        return (f"{MARKER}\nThis pull request was made by **orch**: the issue was split into "
                f"parts that ran in parallel on several hosts, then merged and tested "
                f"together.\n\n### Parts\n\n{split_table(children)}\n\n### What changed\n\n"
                f"{said or '(no summaries)'}\n\nCloses #{int(parent.issue)}\n")
    return _fit(render, SUMMARY_LIMIT)
