"""Finalize: a finished remote job becomes what its kind delivers (a PR), or a failure
report, exactly once.

Order matters for crash safety: the forge side effects come first (each idempotent: the
PR is found by its head branch, the comment is edited in place, labels are a set), then
the store transition. A crash in between leaves the task running, and the next finalize
repeats the side effects harmlessly. A claim in the store keeps two live orch processes
(a following `orch dispatch` and a cron `orch poll`) from racing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import Any

from ..app import App
from ..atomic import replace_file
from ..core import report
from ..core.events import Init, last_result, parse_line
from ..core.models import ERROR_KINDS, Task
from ..errors import OrchError
from ..fleet.pool import Fleet
from ..forge.base import Forge
from ..forge.clone import clone_url
from ..job import remote
from ..private import FILE_MODE
from ..store import FenceLost
from ..transport import runs_here
from ..transport.base import Connection
from . import claims
from .kinds import kind_of
from .tell import tell


@dataclass(frozen=True)
class Verdict:
    """How a job ended, as orch records it."""

    state: str                  # succeeded | failed | cancelled
    reason: str | None = None   # for people (Task.error)
    error_kind: str | None = None   # for decisions (Task.error_kind)


def verdict_of(status: remote.JobStatus) -> Verdict:
    """The verdict a final job status gives. The job names the kind of a failure
    (`error_kind=` in its status file); a job started by the previous job.sh names none,
    and its message gives the kind (core/migrate.py, the one reader of old messages)."""
    if status.state == "succeeded":
        return Verdict("succeeded")
    if status.state == "cancelled":
        return Verdict("cancelled", status.error or "cancelled on the host", "cancelled")
    reason = status.error or "the job failed"
    said = status.error_kind
    if said:
        return Verdict("failed", reason, said if said in ERROR_KINDS else "other")
    # (a job of the previous job.sh: only then is core/migrate.py loaded)
    from ..core.migrate import error_kind_from_message
    return Verdict("failed", reason, error_kind_from_message(reason))


async def fetch_log(app: App, conn: Connection, task: Task) -> str:
    """Copy the job log into the state dir (the workspace may be removed) and return it."""
    return keep_log(app, task, await remote.read_log(conn, task.workspace or "") or "")


def keep_log(app: App, task: Task, text: str) -> str:
    """Keep `text` (the job log) as orch's copy in the state dir and return it."""
    if text:
        # 0600 like state.json: a log holds the issue text and the agent's output.
        replace_file(app.task_log_path(task.id), text, mode=FILE_MODE)
    return text


# A session id as the CLI writes it (a UUID); the log is the host's, so anything else is
# not kept (it would reach a later job's --resume).
_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _session(lines: list[str]) -> str | None:
    """The agent session of the last run (its system/init event), for a later --resume."""
    found = None
    for line in lines:
        if '"session_id"' in line and '"init"' in line:
            for event in parse_line(line):
                if isinstance(event, Init) and _SESSION.fullmatch(event.session_id or ""):
                    found = event.session_id
    return found


async def finalize(app: App, fleet: Fleet, forge: Forge, task: Task,
                   status: remote.JobStatus | None = None, *,
                   verdict: Verdict | None = None, log: str | None = None) -> Task:
    """Finish `task` if its job has ended; return it as it stands afterwards.

    A job still running is left alone; a job that died without a final status is left
    to reconcile (which decides between lost and failed). `status`: the job status the
    caller has just read (saves a round trip), else it is read here. `verdict`: how orch
    itself ended the job (reconcile's time-limit backstop), over what the status says.
    `log`: the whole job log as a follow that ended on the final `status` delivered it
    (lifecycle/follow.py, Followed.log; saves a round trip), else it is read here.
    """
    conn = await fleet.connection(task.host or "")
    if status is None:
        status = await remote.read_status(conn, task.workspace or "")
    if status is not None:
        status = remote.validate_status(status, branch=task.branch)   # the host is untrusted
    if verdict is None:
        if status is None or status.state == "running":
            return task
        verdict = verdict_of(status)
    log = keep_log(app, task, log) if log is not None \
        else await fetch_log(app, conn, task)
    lines = log.splitlines()
    ran = {} if status is None else dict(cost_usd=status.cost_usd, turns=status.turns,
                                         tests=status.tests, commit=status.commit)
    ran["session_id"] = _session(lines)
    # The claim and what the job reported: one write.
    claimed = claims.take(app, task.id, **{k: v for k, v in ran.items() if v is not None})
    if claimed is None:
        return app.store.get(task.id)
    try:
        return await _finish(app, conn, forge, claimed, verdict, log)
    except FenceLost:
        # Paused or cut off past the lease, and another process took the task over:
        # this one changes nothing more (no PR, no comment, no transition).
        return app.store.get(task.id)
    except BaseException:
        claims.release(app, task.id, claimed.fence)
        raise


async def _finish(app: App, conn: Connection, forge: Forge, task: Task, verdict: Verdict,
                  log: str) -> Task:
    s = app.settings
    lines = log.splitlines()
    fence = task.fence   # every write below is refused once another process took over
    done_fields: dict[str, Any] = dict(finalized=True, claimed_by=None, claimed_at=None,
                                       fence=fence)

    if verdict.state == "succeeded" and s.git.via == "orch" and task.commit:
        # (no commit: a job that pushes nothing, a split's planning run)
        # The job pushed into the host's mirror: orch takes the branch on to the forge. A
        # refusal that trying again cannot mend fails the task; anything else (the forge
        # or the host unreachable) leaves it running for the next finalize.
        app.store.renew(task.id, fence)   # still ours, right before the branch is pushed
        verdict = await _bring_back(app, conn, forge, task, verdict)
    if verdict.state == "succeeded":
        result = last_result(lines)
        app.store.renew(task.id, fence)   # still ours, right before the PR is pushed
        delivered = await kind_of(task).deliver(forge, task, result.result if result and
                                                result.result else "")
        # pr_url is recorded with the outcome, not before it: a finalize that dies in
        # between leaves the task running, and the next one finds that PR by its branch
        # (Forge.open_pull_request) and tells the same.
        if delivered.pr_url:
            task = replace(task, pr_url=delivered.pr_url)
        cid = await tell(app, forge, task, "succeeded", delivered.comment)
        done = app.store.succeed(task.id, f"PR {delivered.pr_url}" if delivered.pr_url
                                 else "delivered", comment_id=cid, pr_url=task.pr_url,
                                 **done_fields)
        # After the transition: a crash between removing the workspace and recording the
        # outcome would leave a running task without a job, which reconcile requeues (and
        # the issue would be worked on again). A workspace left behind costs only disk.
        if not s.workspace.keep_on_success:
            await _remove_quietly(conn, task)
        return done

    reason = verdict.reason or verdict.state
    if verdict.state == "cancelled":
        # Stopped on the host (a signal to the job): said on the issue, the trigger label
        # off as for any outcome, so `orch poll` takes the issue again only if relabelled.
        app.store.renew(task.id, fence)
        cid = await tell(app, forge, task, "cancelled", report.comment_cancelled(task, reason))
        return app.store.cancel(task.id, reason, error=reason, error_kind=verdict.error_kind,
                                comment_id=cid, **done_fields)

    excerpt = report.log_excerpt(log, s.report.log_tail)
    app.store.renew(task.id, fence)   # still ours, right before the issue is told
    cid = await tell(app, forge, task, "failed", report.comment_failed(task, reason, excerpt)
                     + report.next_step(verdict.error_kind))
    done = app.store.fail(task.id, reason, error_kind=verdict.error_kind, comment_id=cid,
                          **done_fields)
    if not s.workspace.keep_on_failure:
        await _remove_quietly(conn, task)   # after the transition, as above
    return done


async def _bring_back(app: App, conn: Connection, forge: Forge, task: Task,
                     verdict: Verdict) -> Verdict:
    """git.via: orch: the job's branch from the host's mirror to the forge, before the
    kind delivers; `verdict`, or a failure when the forge refuses the branch for good
    (any other failure raises and leaves the task running: the next finalize tries again)."""
    # git.via: orch only: otherwise the relay and orch's mirror are never loaded
    from ..job import relay
    url = await asyncio.to_thread(clone_url, app.settings, task.repo, lambda: forge)
    central, host_mirror = relay.mirrors(app.state_dir, app.settings, task.repo,
                                         task.workspace or "", url)
    try:
        await relay.bring_back(conn, central, host_mirror, task.branch or "", task.commit or "",
                               task_id=task.id)
    except relay.DeliveryRefused as exc:
        return Verdict("failed", exc.message, "push_failed")
    return verdict


async def _remove_quietly(conn: Connection, task: Task) -> None:
    try:
        # On a remote host in the background (a large checkout takes seconds to delete,
        # and nothing waits on it); on this machine waited for: `orch demo` deletes the
        # state dir the workspace is in right after.
        await remote.remove(conn, task.workspace or "", wait=runs_here(conn.host))
    except OrchError:
        pass   # a workspace left behind costs disk, not correctness
