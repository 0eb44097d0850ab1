"""Launch: place a task on a host, record it, and start its remote job detached.

The placement decision and the task record are made under the store lock, so any
number of concurrent `orch` processes neither double an issue nor overfill a host.
The slow parts (probing hosts, starting the job over SSH) happen outside the lock:
the task is marked running *before* the job starts, which reserves the host slot;
if orch dies in between, reconcile finds a running task without a job and requeues it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..app import App
from ..config.resources import playbooks_dir, prompts_dir
from ..core import shell
from ..core.models import Host, HostFacts, Issue, Placement, Task
from ..core.prompts import render_fix_prompt, render_prompt
from ..core.schedule import place
from ..core.trust import local_refusals
from ..errors import OrchError, WorkError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..forge.clone import clone_url as forge_clone_url
from ..job import remote
from ..job.playbook import JobSpec, render_job
from . import claims


@dataclass
class Launched:
    task: Task
    placement: Placement


def workspace_for(host: Host, task_id: str) -> str:
    return f"{host.workspace_root.rstrip('/')}/{task_id}"


def unhealthy_hosts(app: App, forge_kind: str = "github") -> dict[str, str]:
    """Hosts whose last `orch bootstrap` failed: never chosen until they pass; and local
    hosts for a GitHub task without the operator's opt-in (core/trust.py)."""
    from ..fleet.bootstrap import failed_hosts
    return {**local_refusals(app.hosts, forge_kind, app.settings.allow_local_github),
            **failed_hosts(app.state_dir)}


async def probe(fleet: Fleet) -> dict[str, HostFacts]:
    return {f.name: f for f in await fleet.probe()}


def decide(app: App, specialty: str, reason: str, facts: dict[str, HostFacts],
           pinned: str | None = None, forge_kind: str = "github") -> Placement:
    """The scheduling decision against the store's current reservations (call under lock)."""
    return place(specialty, reason, app.hosts, facts, reserved=app.store.reserved(),
                 pinned=pinned, unhealthy=unhealthy_hosts(app, forge_kind))


def reserve(app: App, task: Task, placement: Placement, issue: Issue) -> Task:
    """queued -> running on the placed host, before the job exists (call under lock).

    The task carries this process's claim until start_job has started the job: if this
    process dies in between, reconcile sees a claim whose process is gone and a workspace
    without a job, and requeues the task at once (no grace period to wait out).
    """
    assert placement.host is not None
    host = app.host(placement.host)
    return app.store.start(task.id, host=host.name,
                           branch=shell.branch_name(issue.number, issue.title),
                           workspace=workspace_for(host, task.id), pid=None,
                           **claims.mine())


def job_spec(app: App, task: Task, issue: Issue, clone_url: str, base_branch: str | None) -> JobSpec:
    s = app.settings
    host = app.host(task.host or "")
    assert task.branch and task.workspace
    return JobSpec(
        task_id=task.id, workspace=task.workspace, clone_url=clone_url,
        base_branch=base_branch, branch=task.branch,
        agent_command=host.agent or s.agent.command, max_turns=s.agent.max_turns,
        model=s.agent.model, permission_mode=s.agent.permission_mode,
        max_cost_usd=s.agent.max_cost_usd, agent_timeout=s.agent.timeout,
        allow_root=s.agent.allow_root, agent_env=dict(s.agent.env),
        test_command=s.tests.command, test_timeout=s.tests.timeout,
        max_fix_attempts=s.tests.max_fix_attempts, git_author=s.git.author,
        commit_message=f"{issue.title} (#{issue.number})\n\norch task {task.id}, "
                       f"specialty {task.specialty}.\n")


async def start_job(app: App, fleet: Fleet, forge: Forge, task: Task, issue: Issue) -> Task:
    """Render job.sh and the prompts, start the job detached, record its process group.

    Any failure leaves the task failed with the reason (and nothing half-started that
    reconcile would not also clean up).
    """
    s = app.settings
    try:
        branch = task.branch
        if not branch:          # reserve() gives every task its branch before a start
            raise WorkError(f"task {task.id} has no branch: it was never reserved")
        clone_url = await asyncio.to_thread(forge_clone_url, s, task.repo, lambda: forge)
        base = await asyncio.to_thread(forge.default_branch, task.repo)
        spec = job_spec(app, task, issue, clone_url, base)
        job_sh = render_job(spec, playbooks_dir(s) / "dispatch.yml")
        test_cmd = s.tests.command
        prompt = render_prompt(task.specialty, issue=issue, repo=task.repo, branch=branch,
                               test_command=test_cmd, prompts_dir=prompts_dir(s))
        fix_prompt = render_fix_prompt(issue=issue, repo=task.repo, branch=branch,
                                       test_command=test_cmd, prompts_dir=prompts_dir(s))
        conn = await fleet.connection(task.host or "")
        pgid = await remote.start(conn, task.workspace or "", job_sh, prompt, fix_prompt,
                                  env=remote.job_env(s))
    except OrchError as exc:
        app.store.fail(task.id, f"could not start the job on {task.host}: {exc.message}",
                       claimed_by=None, claimed_at=None)
        raise WorkError(f"task {task.id}: could not start the job on {task.host}: {exc.message}",
                        hint=exc.hint) from None
    return app.store.update(task.id, pid=pgid, log_path=str(app.task_log_path(task.id)),
                            claimed_by=None, claimed_at=None)


async def launch_queued(app: App, fleet: Fleet, forge: Forge, task: Task,
                        facts: dict[str, HostFacts], pinned: str | None = None) -> Launched | None:
    """Place and start a task that is already queued (a retry, or a lost task requeued).

    The issue is read again (its text may have changed, or it may have been closed:
    then the task fails with that reason). Returns None when no host has room now; the
    task stays queued for the next pass.
    """
    from .intake import intake
    try:
        it = await intake(forge, task.repo, task.issue, app.settings, task.specialty)
    except OrchError as exc:
        if exc.exit_code == 2:   # closed, a PR now, author lost permission: final
            app.store.fail(task.id, f"no longer dispatchable: {exc.message}")
            return None
        raise
    with app.store.locked():
        current = app.store.get(task.id)
        if current.status != "queued":
            return None   # another orch process took it meanwhile
        placement = decide(app, it.specialty, it.specialty_reason, facts, pinned, task.forge)
        if placement.host is None:
            return Launched(current, placement)
        task = reserve(app, current, placement, it.issue)
    task = await start_job(app, fleet, forge, task, it.issue)
    return Launched(task, placement)
