"""prompts/*.md.j2 -> the agent's prompt text (pure).

The prompt carries the issue's untrusted text as data: it is written to prompt.md and
reaches the agent on stdin, never argv or a shell. One template per specialty (they
extend general.md.j2 and replace its intro), plus fix.md.j2 for the test-fix loop,
whose TEST_OUTPUT_MARKER line job.sh replaces with the tail of the failing output.
Comments are the ones intake let through (core/trust.py), each shown with its author's
login: `{{ comment }}` is its text, `{{ comment.author }}` who wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import Comment, Issue

if TYPE_CHECKING:
    import jinja2

TEST_OUTPUT_MARKER = "@@ORCH_TEST_OUTPUT@@"
FIX_PROMPT_TAG = "<!-- orch:fix-prompt -->"     # first line of every fix prompt
MAX_COMMENTS = 5
COMMENT_LIMIT = 4000


@contextmanager
def _env(prompts_dir: Path | str | None) -> Iterator[jinja2.Environment]:
    """The templates of `prompts_dir`, compiled once per content: the compiled ones come
    from orch's cache and what was compiled meanwhile goes back (orchestrator/bytecode.py:
    ~12 ms a dispatch otherwise). The key is this file's source, where the options are."""
    import jinja2

    from .. import cache
    from ..bytecode import Bytecode, code_key
    if prompts_dir is None:
        from ..config.resources import prompts_dir as find
        prompts_dir = find()
    bytecode = Bytecode.kept(cache.entry_name("prompts", prompts_dir), code_key(__file__))
    yield jinja2.Environment(loader=jinja2.FileSystemLoader(str(prompts_dir)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             bytecode_cache=bytecode)
    bytecode.save()


def _defang(text: str) -> str:
    """Untrusted text must not contain the line job.sh splices test output at."""
    return text.replace(TEST_OUTPUT_MARKER, "@@ORCH-TEST-OUTPUT@@")


class ShownComment(str):
    """A comment as a template sees it: the (cut, defanged) text, plus who wrote it and
    when (templates written before attribution print `{{ comment }}`: still its text)."""

    author: str
    created_at: str

    def __new__(cls, comment: Comment) -> ShownComment:
        body = comment.body
        if len(body) > COMMENT_LIMIT:
            body = body[:COMMENT_LIMIT] + "\n[… comment cut …]"
        shown = super().__new__(cls, _defang(body))
        shown.author = _defang(comment.author) or "unknown"
        shown.created_at = comment.created_at
        return shown

    @property
    def body(self) -> str:
        return str(self)


class Shown(str):
    """Text from a command, a review or a line comment as a template sees it: cut and
    defanged, with its author and, for a line comment, the file, line and diff hunk."""

    author: str
    path: str
    line: int | None
    diff_hunk: str
    state: str

    def __new__(cls, item: Mapping[str, Any]) -> Shown:
        body = str(item.get("body") or item.get("text") or "")
        if len(body) > COMMENT_LIMIT:
            body = body[:COMMENT_LIMIT] + "\n[… cut …]"
        shown = super().__new__(cls, _defang(body))
        shown.author = _defang(str(item.get("author") or "")) or "unknown"
        shown.path = _defang(str(item.get("path") or ""))
        line = item.get("line")
        shown.line = line if isinstance(line, int) else None
        shown.diff_hunk = _defang(str(item.get("diff_hunk") or ""))[-COMMENT_LIMIT:]
        shown.state = str(item.get("state") or "")
        return shown


def _request(request: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a command asked (Task.request), for the templates: every text vetted already
    (lifecycle/conversation.py lets through only authorised authors)."""
    r = request or {}
    raw_command, raw_previous = r.get("command"), r.get("previous")
    command = raw_command if isinstance(raw_command, Mapping) else None
    previous: Mapping[str, Any] = raw_previous if isinstance(raw_previous, Mapping) else {}
    return {
        "instruction": Shown(command) if command and (command.get("text") or "").strip() else None,
        "review_comments": [Shown(c) for c in r.get("comments") or [] if isinstance(c, Mapping)],
        "reviews": [Shown(v) for v in r.get("reviews") or [] if isinstance(v, Mapping)],
        "previous_summary": _defang(str(previous.get("summary") or "")).strip()[:COMMENT_LIMIT],
        "plan": _defang(str(r.get("plan") or "")).strip()[:4 * COMMENT_LIMIT],
        "revise": _defang(str(r.get("revise") or "")).strip()[:4 * COMMENT_LIMIT],
    }


def _context(issue: Issue, repo: str, branch: str, test_command: str | None,
             specialty: str, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
    comments = [ShownComment(c) for c in issue.comments[-MAX_COMMENTS:]]
    return {
        **_request(request),
        "issue": issue,
        "number": issue.number,
        "title": _defang(issue.title),
        "body": _defang(issue.body or "").rstrip() or "(no description)",
        "labels": [_defang(l) for l in issue.labels],
        "comments": comments,
        "url": issue.url,
        "repo": repo,
        "branch": branch,
        "test_command": test_command,
        "specialty": specialty,
        "test_output_marker": TEST_OUTPUT_MARKER,
        "fix_prompt_tag": FIX_PROMPT_TAG,
    }


def render_prompt(specialty: str, *, issue: Issue, repo: str, branch: str,
                  test_command: str | None, prompts_dir: Path | str | None = None,
                  request: Mapping[str, Any] | None = None, template: str | None = None) -> str:
    """The first run's prompt: `<specialty>.md.j2`, or general.md.j2 for an unknown one;
    `template` names another (followup.md.j2, plan.md.j2). `request`: what a command
    asked (Task.request), shown after the issue."""
    name = template or f"{specialty}.md.j2"
    with _env(prompts_dir) as env:
        try:
            chosen = env.get_template(name)
        except Exception:   # jinja2.TemplateNotFound, without importing jinja2 at module level
            if template is not None:
                raise
            chosen = env.get_template("general.md.j2")
        return chosen.render(_context(issue, repo, branch, test_command, specialty, request))


def render_fix_prompt(*, issue: Issue, repo: str, branch: str, test_command: str | None,
                      prompts_dir: Path | str | None = None, specialty: str = "general") -> str:
    """fix.md.j2: starts with FIX_PROMPT_TAG and holds TEST_OUTPUT_MARKER on a line of its
    own (added at the end if a customised template forgot it)."""
    with _env(prompts_dir) as env:
        text = env.get_template("fix.md.j2").render(
            _context(issue, repo, branch, test_command, specialty))
    if not text.startswith(FIX_PROMPT_TAG):
        text = f"{FIX_PROMPT_TAG}\n{text}"
    if f"\n{TEST_OUTPUT_MARKER}\n" not in text:
        text = text.rstrip("\n") + f"\n\n```\n{TEST_OUTPUT_MARKER}\n```\n"
    return text


def _shown_part(part: Any) -> dict[str, Any]:
    """A part as a template sees it: its text (perhaps a planner's output) defanged."""
    return {"k": int(part.k), "specialty": _defang(part.specialty), "title": _defang(part.title),
            "instructions": _defang(part.instructions),
            "paths": [_defang(p) for p in part.paths]}


def render_part_prompt(specialty: str, *, issue: Issue, repo: str, branch: str,
                       test_command: str | None, part: Any, parts: list[Any],
                       integrated: list[dict[str, Any]],
                       prompts_dir: Path | str | None = None) -> str:
    """A part's first prompt: the specialty's prompt for the whole issue, then part.md.j2
    (its own part, the others and the paths they own, the commits integrated so far).
    `part`/`parts`: core.split.Part; `integrated`: [{k, specialty, commit}]."""
    whole = render_prompt(specialty, issue=issue, repo=repo, branch=branch,
                          test_command=test_command, prompts_dir=prompts_dir)
    with _env(prompts_dir) as env:
        section = env.get_template("part.md.j2").render(
            part=_shown_part(part), parts=[_shown_part(p) for p in parts],
            integrated=[{"k": int(c["k"]), "specialty": _defang(str(c["specialty"])),
                         "commit": _defang(str(c["commit"]))} for c in integrated])
    return whole.rstrip("\n") + "\n" + section


def render_merge_prompt(*, issue: Issue, repo: str, branch: str,
                        parts: list[dict[str, Any]],
                        prompts_dir: Path | str | None = None) -> str:
    """merge.md.j2: the integration's conflict-fix prompt; `parts`: [{k, specialty, title,
    branch, summary}] of the parts being merged (job.sh appends the conflict itself)."""
    shown = [{"k": int(p["k"]), "specialty": _defang(str(p["specialty"])),
              "title": _defang(str(p["title"])), "branch": _defang(str(p["branch"])),
              "summary": _defang(str(p.get("summary") or ""))[:COMMENT_LIMIT]} for p in parts]
    with _env(prompts_dir) as env:
        return env.get_template("merge.md.j2").render(
            number=issue.number, title=_defang(issue.title), repo=repo, branch=branch,
            parts=shown, body=_defang(issue.body or "").rstrip() or "(no description)")


def render_plan_prompt(*, issue: Issue, specialties: list[str], max_parts: int,
                       prompts_dir: Path | str | None = None) -> str:
    """split-plan.md.j2: a planning run's prompt (its answer: split-schema.json)."""
    with _env(prompts_dir) as env:
        return env.get_template("split-plan.md.j2").render(
            number=issue.number, title=_defang(issue.title), specialties=specialties,
            max_parts=int(max_parts),
            body=_defang(issue.body or "").rstrip() or "(no description)")
