"""Task kinds: the one place where what a task *is* decides what it runs and how it ends.

Task.kind names a row of KINDS. The lifecycle (admit.py reserves, launch.py starts,
finalize.py ends) is the same for every kind and asks the kind for the three things that
differ:

- `branch(task, issue)`: the branch its job works on;
- `job(settings, host, task, issue, repo)` and `prompts(settings, task, issue)`: the
  remote job (a JobSpec for playbooks/dispatch.yml) and the agent's prompts;
- `deliver(forge, task, summary)`: what a succeeded job becomes on the forge, and the
  comment that says so. A failure, a cancel and a lost task end the same way for every
  kind (lifecycle/tell.py), with the task's error and error_kind.

An `issue` task works on `orch/<N>-<slug>` from the default branch, with the specialty's
prompt (and a command's extra instruction or approved plan, Task.request), and delivers a
pull request that closes the issue. A `followup` works on its pull request's head branch
as it is on the remote, adds a commit on top, and delivers a row in the PR body's runs
table and a reply to the command that asked (docs/conversation.md). A `plan` runs the
agent in plan mode (no edits) and delivers the plan as a comment on the issue.

Two optional class attributes say how the forge hears a task of the kind (tell.py reads
them; a kind without them is told like an issue): `replies` (True: the outcome is a reply
to the command that started the task, the issue's labels are left alone) and
`labels_outcome` (False: orch:running while it runs, but no orch:done / orch:failed and
the trigger label stays, since the issue's work is still to come).

Adding a kind (docs/SPEC.md: followup, plan, part): a class with these methods and its
row in KINDS; its tasks are created with `kind=` (and `parent`, `pr_number` as it needs)
through admit.reserve_new, from whatever triggers them (a PR comment, a plan, a split).
For example a follow-up's `branch` is the PR's head branch, its `job` starts from that
branch rather than the default one, its `prompts` carry the review comments, and its
`deliver` pushes to the existing PR and replies instead of opening one. A kind whose
tasks may run several at once for one issue (parts) also needs the store's one-live-task
rule keyed by more than the issue: that rule lives in store/filestore.py (Store.create).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from ..config.resources import prompts_dir
from ..config.settings import Settings
from ..core import report, shell
from ..core.models import INTEGRATE_KIND, PARENT_KIND, PART_KIND, PLANNER_KIND, Host, Issue, RepoFacts, Task
from ..core.prompts import (
    render_fix_prompt,
    render_merge_prompt,
    render_part_prompt,
    render_plan_prompt,
    render_prompt,
)
from ..errors import WorkError
from ..forge.base import Forge
from ..job.playbook import JobSpec
from ..registry import lookup


@dataclass(frozen=True)
class Delivery:
    """What a succeeded job became: the pull request (if the kind opens one) and the
    comment that tells the issue."""

    pr_url: str | None
    comment: str


class Kind(Protocol):
    name: str

    def branch(self, task: Task, issue: Issue) -> str: ...

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        """(the first run's prompt, the fix runs' prompt)."""
        ...

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec: ...

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery: ...


def _spec(settings: Settings, host: Host, task: Task, repo: RepoFacts, commit_message: str,
          **more: Any) -> JobSpec:
    """The JobSpec fields every kind shares (the task's workspace and branch, the
    repository, the host's agent; the default branch as the base unless `more` names
    another); `more`: what the kind adds (mode, base_fallback, run_tests, ...)."""
    assert task.branch and task.workspace
    more.setdefault("base_branch", repo.default_branch)
    return JobSpec.from_settings(settings, task_id=task.id, workspace=task.workspace,
                                 clone_url=repo.clone_url, branch=task.branch,
                                 agent_command=host.agent, commit_message=commit_message,
                                 **more)


def _fix_prompt(settings: Settings, task: Task, issue: Issue) -> str:
    """The fix run's prompt: the same template for every kind that runs tests."""
    return render_fix_prompt(issue=issue, repo=task.repo, branch=task.branch or "",
                             test_command=settings.tests.command,
                             prompts_dir=prompts_dir(settings), specialty=task.specialty)


class IssueKind:
    """An issue, worked on from the default branch, delivered as a pull request."""

    name = "issue"

    def branch(self, task: Task, issue: Issue) -> str:
        return shell.branch_name(issue.number, issue.title)

    template: str | None = None       # the first run's template (None: the specialty's)

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        return (render_prompt(task.specialty, issue=issue, repo=task.repo,
                              branch=task.branch or "", test_command=settings.tests.command,
                              prompts_dir=prompts_dir(settings), request=task.request,
                              template=self.template),
                _fix_prompt(settings, task, issue))

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        return _spec(settings, host, task, repo,
                     f"{issue.title} (#{issue.number})\n\norch task {task.id}, "
                     f"specialty {task.specialty}.\n")

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        base = await asyncio.to_thread(forge.default_branch, task.repo)
        pr_url = await asyncio.to_thread(
            forge.open_pull_request, task.repo, head=task.branch or "", base=base,
            title=report.pr_title(task.title), body=report.pr_body(task, task.issue, summary))
        return Delivery(pr_url, report.comment_succeeded(task, pr_url))


class FollowupKind(IssueKind):
    """A follow-up on orch's pull request: the PR's head branch as it is now, one more
    commit on top (pushed with a lease), the PR body's runs table and a reply."""

    name = "followup"
    template = "followup.md.j2"
    replies = True

    def branch(self, task: Task, issue: Issue) -> str:
        assert task.branch, "a follow-up is created with its pull request's head branch"
        return task.branch

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        previous = (task.request or {}).get("previous") or {}
        # The previous run's session is resumed only where it ran (its transcript is
        # there); the job checks that the transcript is still on the host.
        resume = previous.get("session_id") if previous.get("host") == host.name else None
        return _spec(settings, host, task, repo,
                     f"{issue.title} (#{issue.number}): follow-up\n\norch task {task.id} "
                     f"(follow-up on pull request #{task.pr_number}).\n",
                     start_from_branch=True,
                     resume_session=resume if isinstance(resume, str) else None)

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        assert task.pr_number is not None
        pr = await asyncio.to_thread(forge.get_pull, task.repo, task.pr_number)
        await asyncio.to_thread(forge.edit_pull_body, task.repo, pr.number,
                                report.with_run_row(pr.body, task))
        return Delivery(pr.url, report.reply_followup_done(task, summary, task.commit))


class PlanKind(IssueKind):
    """Plan first: the agent in plan mode (nothing edited, nothing pushed); the plan is
    posted on the issue, and `@orch approve` starts an issue task with it."""

    name = "plan"
    template = "plan.md.j2"
    labels_outcome = False

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        spec = super().job(settings, host, task, issue, repo)
        return dataclasses.replace(spec, mode="plan", run_tests=False)

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        handle = str((task.request or {}).get("handle") or "@orch")
        return Delivery(None, report.reply_plan(task, summary, handle))


KINDS: dict[str, Kind] = {k.name: k for k in (IssueKind(), FollowupKind(), PlanKind())}


# -- a split issue's tasks (core/split.py, lifecycle/split.py, docs/split.md) -------------
# Their methods import core/split.py where they use it: a task of another kind never loads it.

class PartKind:
    """One part of a split issue: its own branch from the integration branch as it is when
    the part starts (the default branch until the first integration), the whole issue
    plus its part in the prompt; it delivers nothing itself: lifecycle/split.py merges it."""

    name = PART_KIND

    def branch(self, task: Task, issue: Issue) -> str:
        from ..core.split import Part, part_branch
        return part_branch(issue.number, issue.title, Part.from_json((task.split or {})["part"]))

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        from ..core.split import Part
        info = task.split or {}
        return (render_part_prompt(task.specialty, issue=issue, repo=task.repo,
                                   branch=task.branch or "", test_command=settings.tests.command,
                                   part=Part.from_json(info["part"]),
                                   parts=[Part.from_json(p) for p in info.get("plan", [])],
                                   integrated=list(info.get("integrated", [])),
                                   prompts_dir=prompts_dir(settings)),
                _fix_prompt(settings, task, issue))

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        from ..core.split import Part, integration_branch
        part = Part.from_json((task.split or {})["part"])
        return _spec(settings, host, task, repo,
                     f"{issue.title} (#{issue.number}), part {part.k}: {part.title}\n\n"
                     f"orch task {task.id}, specialty {task.specialty}.\n",
                     base_branch=integration_branch(issue.number, issue.title),
                     base_fallback=repo.default_branch,
                     # the suite runs once every part is in (a part alone may need another's work)
                     run_tests=False)

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        return Delivery(None, "")   # the parent's tracking comment says it (lifecycle/tell.py)


class IntegrateKind:
    """A split's integration: merge finished parts into `orch/<N>-<slug>` in dependency
    order (a conflict: a fix run with both parts' summaries); the last one runs the whole
    test suite with the fix loop. lifecycle/split.py opens the one PR afterwards."""

    name = INTEGRATE_KIND

    def branch(self, task: Task, issue: Issue) -> str:
        from ..core.split import integration_branch
        return integration_branch(issue.number, issue.title)

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        return (render_merge_prompt(issue=issue, repo=task.repo, branch=task.branch or "",
                                    parts=list((task.split or {}).get("merge", [])),
                                    prompts_dir=prompts_dir(settings)),
                _fix_prompt(settings, task, issue))

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        info = task.split or {}
        return _spec(settings, host, task, repo,
                     f"{issue.title} (#{issue.number}): integration fixes\n\n"
                     f"orch task {task.id}.\n",
                     base_branch=task.branch, base_fallback=repo.default_branch,
                     mode="integrate", run_tests=bool(info.get("final")),
                     merge_branches=tuple(str(p["branch"]) for p in info.get("merge", [])))

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        return Delivery(None, "")   # lifecycle/split.py opens the PR once all is in


class PlannerKind:
    """A planning run: the agent, on a `general` host, answers with the parts of a split
    (--json-schema, prompts/split-schema.json); nothing is committed or pushed.
    lifecycle/split.py validates the answer before any part runs."""

    name = PLANNER_KIND

    def branch(self, task: Task, issue: Issue) -> str:
        from ..core.split import integration_branch
        return integration_branch(issue.number, issue.title) + "--plan"

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        from ..core.models import SPECIALTIES
        known = list(dict.fromkeys([*settings.specialties, *SPECIALTIES]))
        return (render_plan_prompt(issue=issue, specialties=known,
                                   max_parts=settings.split.max_parts,
                                   prompts_dir=prompts_dir(settings)),
                _fix_prompt(settings, task, issue))

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        return _spec(settings, host, task, repo, f"{issue.title} (#{issue.number}): plan\n",
                     mode="plan", run_tests=False, json_schema=split_schema(settings))

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        return Delivery(None, "")   # lifecycle/split.py reads and checks the plan


def split_schema(settings: Settings) -> str:
    """The planner's JSON schema, compact (prompts/split-schema.json; the shipped one when
    a customised prompts_dir has none)."""
    import json

    from ..core.split import SCHEMA_FILE
    path = prompts_dir(settings) / SCHEMA_FILE
    if not path.is_file():
        path = prompts_dir() / SCHEMA_FILE
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"))


class SplitKind:
    """A split issue's parent: it holds no slot and runs no job (its parts do); it is
    moved on by lifecycle/split.py, which opens the one PR from the integration branch."""

    name = PARENT_KIND

    def branch(self, task: Task, issue: Issue) -> str:
        from ..core.split import integration_branch
        return integration_branch(issue.number, issue.title)

    def prompts(self, settings: Settings, task: Task, issue: Issue) -> tuple[str, str]:
        raise WorkError(f"task {task.id} is a split: its parts run, it does not")

    def job(self, settings: Settings, host: Host, task: Task, issue: Issue,
            repo: RepoFacts) -> JobSpec:
        raise WorkError(f"task {task.id} is a split: its parts run, it does not")

    async def deliver(self, forge: Forge, task: Task, summary: str) -> Delivery:
        raise WorkError(f"task {task.id} is a split: lifecycle/split.py delivers it")


KINDS.update({k.name: k for k in (PartKind(), IntegrateKind(), PlannerKind(), SplitKind())})


def kind_of(task: Task) -> Kind:
    """The kind a task names; a kind this version does not know is bad input (a state
    file written by a newer orch), said once, never guessed."""
    return lookup(KINDS, task.kind, "task kind",
                  hint=f"task {task.id} was written by an orch that knows more kinds than "
                       f"this one ({', '.join(KINDS)}): upgrade orch, or `orch cancel` it")
