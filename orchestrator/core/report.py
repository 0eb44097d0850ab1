"""What orch writes on the forge: PR body, issue comments, labels (pure text).

Issue text and job output are untrusted; here they only ever become Markdown inside
fences long enough that nothing in them can close the fence.
"""

from __future__ import annotations

import re

from .models import Task

LABEL_RUNNING = "orch:running"
LABEL_DONE = "orch:done"
LABEL_FAILED = "orch:failed"
MARKER = "<!-- orch -->"   # lets a person (and orch) recognise orch's own comment


def fenced(text: str, info: str = "") -> str:
    """A fence longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.2f}"


def _facts(task: Task) -> str:
    rows = [("task", f"`{task.id}`"), ("host", task.host or "-"),
            ("specialty", task.specialty), ("branch", f"`{task.branch}`" if task.branch else "-"),
            ("tests", task.tests or "n/a"), ("turns", str(task.turns) if task.turns is not None else "n/a"),
            ("cost", _money(task.cost_usd)), ("attempt", str(task.attempts))]
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _table(task: Task) -> str:
    return "| | |\n|---|---|\n" + _facts(task)


def comment_running(task: Task) -> str:
    return (f"{MARKER}\n:robot: **orch** is working on this issue on host `{task.host}` "
            f"(task `{task.id}`, specialty {task.specialty}).\n\n"
            f"Follow it live with `orch logs {task.id} -f`.")


def comment_succeeded(task: Task, pr_url: str) -> str:
    return (f"{MARKER}\n:white_check_mark: **orch** opened {pr_url} for this issue.\n\n"
            + _table(task))


def comment_failed(task: Task, reason: str, log_tail: str) -> str:
    tail = f"\n\n<details><summary>last lines of the log</summary>\n\n{fenced(log_tail)}\n\n</details>" \
        if log_tail.strip() else ""
    return (f"{MARKER}\n:x: **orch** could not finish this issue: {reason}\n\n"
            + _table(task) + tail
            + f"\n\nThe workspace is kept on the host for inspection; `orch retry {task.id}` "
              f"queues it again.")


def pr_title(title: str) -> str:
    return " ".join(title.split())[:250] or "orch change"


def pr_body(task: Task, number: int, summary: str) -> str:
    text = summary.strip() or "(the agent gave no summary)"
    return (f"{MARKER}\nThis pull request was made by **orch**: the agent ran on host "
            f"`{task.host}`.\n\n### What changed\n\n{fenced(text, 'text')}\n\n"
            f"### Run\n\n{_table(task)}\n\nCloses #{number}\n")


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


def comment_stopped(task: Task, status: str, reason: str, trigger: str) -> str:
    """A task that ended neither succeeded nor failed (cancelled; stopped on its host)."""
    return (f"{MARKER}\n:stop_sign: **orch** task `{task.id}` was {status}: {reason}\n\n"
            f"Label the issue `{trigger}` again, or run `orch retry {task.id}`, to run it again.")


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
