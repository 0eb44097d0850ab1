"""Launch: starting a reserved task's job, and what follows an attempt that ended
without a result (lost, or the job could not start).

The slow part (starting the job over SSH) runs outside the store lock: the task was
marked running when its slot was reserved (admit.py), before the job exists; if orch dies
in between, reconcile sees a running task without a job and requeues it.
"""

from __future__ import annotations

from enum import StrEnum

from ..app import App
from ..config.resources import playbooks_dir
from ..core.models import Task
from ..errors import OrchError, WorkError
from ..fleet.pool import Fleet
from ..job import credentials, remote
from ..job.playbook import render_job
from ..store import DuplicateTask, FenceLost, InvalidTransition
from . import claims
from .admit import Reservation
from .kinds import kind_of


async def start(app: App, fleet: Fleet, r: Reservation) -> Task:
    """Render the job and the prompts of a reserved task (its kind says what they are),
    start the job detached, record its process group and give the claim back.

    A failure leaves the task failed (error_kind start_failed, its host to be avoided next
    time) and raises WorkError; nothing is left half-started that reconcile would not
    also clean up.
    """
    task, s = r.task, app.settings
    kind = kind_of(task)
    try:
        host = app.host(task.host or "")
        spec = kind.job(s, host, task, r.issue, r.repo)
        job_sh = render_job(spec, playbooks_dir(s) / "dispatch.yml")
        prompt, fix_prompt = kind.prompts(s, task, r.issue)
        conn = await fleet.connection(host.name)
        if spec.git_via == "orch":       # the host never talks to the forge: orch sends the base
            from ..job import relay  # loaded for git.via: orch only
            await relay.send_base(conn, *relay.mirrors(app.state_dir, s, task.repo,
                                                       spec.workspace, spec.clone_url),
                                  branch=spec.branch, task_id=task.id)
        pgid = await remote.start(conn, task.workspace or "", job_sh, prompt, fix_prompt,
                                  env=remote.job_env(s), credentials=credentials.read(s))
    except OrchError as exc:
        why = f"could not start the job on {task.host}: {exc.message}"
        app.store.fail(task.id, why, error_kind="start_failed",
                       avoid_hosts=_with(task.avoid_hosts, task.host),
                       claimed_by=None, claimed_at=None, fence=task.fence)
        raise WorkError(f"task {task.id}: {why}", hint=exc.hint) from None
    try:
        return app.store.update(task.id, pid=pgid, log_path=str(app.task_log_path(task.id)),
                                claimed_by=None, claimed_at=None, fence=task.fence)
    except FenceLost as exc:
        # Started after our lease ran out: another process took the task over (and will
        # not run it twice: the job refuses a workspace that has one).
        raise WorkError(exc.message) from None


def _with(hosts: list[str], host: str | None) -> list[str]:
    return hosts if not host or host in hosts else [*hosts, host]


def lose(app: App, task: Task, reason: str) -> Task | None:
    """running -> lost: its host vanished or its job died without a result. None when the
    task finished or was cancelled meanwhile (by another orch process)."""
    dead = task.claimed_by if claims.claimant_alive(task.claimed_by) is False else None
    try:
        # Refused while another live process holds the task's claim (it is starting or
        # finalizing it right now): that process decides, not this one.
        return app.store.mark_lost(task.id, reason, error_kind="lost",
                                   avoid_hosts=_with(task.avoid_hosts, task.host),
                                   claimed_by=None, claimed_at=None,
                                   owner=claims.me(), take_from=dead)
    except InvalidTransition:
        return None


class Next(StrEnum):
    """What became of a task after an attempt that ended without a result."""

    QUEUED = "queued"             # queued again, to be placed on another host if one can
    GIVEN_UP = "given_up"         # out of attempts: failed for good, the issue to be told
    SUPERSEDED = "superseded"     # failed: its issue has another live task, which speaks for it
    MOVED_ON = "moved_on"         # another orch process moved it on meanwhile: left alone


def again_or_give_up(app: App, task: Task, why: str) -> tuple[Task, Next]:
    """An attempt ended without a result (`task` is lost, or failed to start): queue it
    again while it has attempts left (poll.max_attempts), else fail it for good."""
    limit = app.settings.poll.max_attempts
    if task.attempts < limit:
        try:
            return app.store.requeue(task.id, why, max_attempts=limit), Next.QUEUED
        except InvalidTransition:
            return app.store.get(task.id), Next.MOVED_ON
        except DuplicateTask as exc:
            return app.store.fail(task.id, f"lost; the issue has another live task {exc.task_id}",
                                  error_kind=task.error_kind or "lost",
                                  finalized=True), Next.SUPERSEDED
    if task.status == "lost":
        try:
            failed = app.store.fail(task.id, f"lost and out of attempts: {task.attempts} of "
                                             f"{limit} attempts; it will not be queued again "
                                             f"automatically", error_kind="lost")
        except InvalidTransition:
            return app.store.get(task.id), Next.MOVED_ON
        return failed, Next.GIVEN_UP
    return app.store.get(task.id), Next.GIVEN_UP
