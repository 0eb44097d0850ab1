"""The plain records that flow through orch: Host, HostFacts, Issue, Placement, Task.

They carry data only; behaviour lives in the modules that take and return them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SPECIALTIES = ("backend", "frontend", "testing", "devops", "general")


@dataclass(frozen=True)
class Host:
    """One machine of the fleet, as the inventory describes it (defaults already applied)."""

    name: str
    address: str                      # IP, DNS name or an ~/.ssh/config alias
    specialties: tuple[str, ...] = ()
    port: int | None = None           # None: from ssh config, else 22
    user: str | None = None           # None: from ssh config, else the local user
    identity_file: str | None = None
    max_tasks: int = 2
    workspace_root: str = "~/orch-work"
    agent: str | None = None          # None: the config's agent.command
    enabled: bool = True
    connection: str = "ssh"           # a transport kind (transport/__init__.py TRANSPORTS)


@dataclass
class HostFacts:
    """What one probe of a host found. `error` says why when `reachable` is false."""

    name: str
    address: str
    reachable: bool
    specialties: list[str] = field(default_factory=list)
    max_tasks: int = 0
    enabled: bool = True
    error: str | None = None
    error_kind: str | None = None     # HostUnreachable.REASONS, or "probe" for a failed probe script
    load1: float | None = None
    cpus: int | None = None
    mem_total_mb: int | None = None
    mem_available_mb: int | None = None
    disk_free_mb: int | None = None
    running_tasks: int | None = None
    running_task_ids: list[str] = field(default_factory=list)
    agent_version: str | None = None
    agent_path: str | None = None     # what the agent command resolved to (core/agentpath.py)
    agent_key: str | None = None      # path:size:mtime:inode of that file, for the version cache
    agent_version_cached: bool = False  # agent_version is the cache's, the binary unchanged
    bootstrap_ok: bool | None = None  # None: never bootstrapped / unknown
    probe_seconds: float | None = None
    notes: list[str] = field(default_factory=list)  # non-fatal findings (e.g. agent missing)

    @property
    def load_per_cpu(self) -> float | None:
        if self.load1 is None or not self.cpus:
            return None
        return self.load1 / self.cpus

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comment:
    """One comment on an issue: its text and who wrote it. Untrusted like the issue."""

    body: str
    author: str = ""                  # login; "" = unknown (never trusted)
    created_at: str = ""
    editor: str = ""                  # who last edited it; "" = never edited
    association: str = ""             # GitHub's authorAssociation (OWNER, MEMBER, NONE, ...)


@dataclass(frozen=True)
class IssueEvent:
    """Something a person did to an issue after opening it (who decides what trust means:
    core/trust.py)."""

    kind: str                         # EVENT_KINDS
    actor: str                        # login; "" = unknown (a deleted account)
    at: str = ""                      # "YYYY-MM-DDTHH:MM:SSZ"; "" = unknown
    label: str = ""                   # the label, for "labeled"


EVENT_KINDS = ("labeled", "renamed", "edited")   # edited: the body


@dataclass(frozen=True)
class Issue:
    """An issue from any forge (GitHub or a local Markdown file). Its text is untrusted."""

    repo: str                         # "owner/name" for GitHub, a path for the local forge
    number: int
    title: str
    body: str = ""
    labels: tuple[str, ...] = ()
    author: str = ""
    state: str = "open"
    is_pull_request: bool = False
    clone_url: str = ""
    comments: tuple[Comment, ...] = ()  # recent comments, oldest first (bare strings too)
    created_at: str = ""
    url: str = ""
    events: tuple[IssueEvent, ...] = ()  # labels added, title and body edits, oldest first

    def __post_init__(self) -> None:
        # A bare string is a comment by nobody known (callers from before attribution).
        if any(not isinstance(c, Comment) for c in self.comments):
            object.__setattr__(self, "comments", tuple(
                c if isinstance(c, Comment) else Comment(body=str(c)) for c in self.comments))

    @property
    def ref(self) -> str:
        return f"{self.repo}#{self.number}"


REMARK_SOURCES = ("issue_comment", "review_comment", "review")


@dataclass(frozen=True)
class Remark:
    """A comment on an issue or pull request, a line comment in a review, or a review
    itself, as the forge lists it: who wrote it and where. Untrusted like any issue text
    (core/trust.py decides whose text reaches a prompt; core/report.py fences it)."""

    source: str                       # REMARK_SOURCES
    id: int
    number: int                       # the issue's or pull request's number
    body: str
    author: str = ""                  # login; "" = unknown (never trusted)
    association: str = ""             # GitHub's author_association
    created_at: str = ""
    updated_at: str = ""
    path: str = ""                    # a line comment's file
    line: int | None = None           # ... and line (None: the file, or an outdated line)
    diff_hunk: str = ""
    in_reply_to: int | None = None    # a reply in a review thread: the thread's first comment
    review_id: int | None = None      # the review a line comment belongs to
    state: str = ""                   # a review's: APPROVED, CHANGES_REQUESTED, COMMENTED


@dataclass(frozen=True)
class PullRequest:
    """A pull request as orch needs it: which branch, whose, open or not."""

    number: int
    head: str                         # the head branch
    head_sha: str
    base: str
    state: str                        # open | closed
    author: str
    url: str
    body: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class RepoFacts:
    """What a job needs to know of its repository, read from the forge before a slot is
    reserved (so starting a reserved job never waits on the forge)."""

    clone_url: str
    default_branch: str | None        # None: the remote's HEAD


@dataclass(frozen=True)
class HostVerdict:
    """Why a host was or was not chosen."""

    host: str
    eligible: bool
    reason: str
    score: float | None = None


@dataclass(frozen=True)
class Placement:
    """The outcome of scheduling: a host (or None) and a verdict for every host."""

    specialty: str
    specialty_reason: str
    host: str | None
    verdicts: tuple[HostVerdict, ...]

    @property
    def reason(self) -> str:
        if self.host is not None:
            chosen = next(v for v in self.verdicts if v.host == self.host)
            return chosen.reason
        if not self.verdicts:
            return "the inventory has no hosts"
        return "no capable host: " + "; ".join(f"{v.host}: {v.reason}" for v in self.verdicts)


TASK_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "lost")
LIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")

# Task.error_kind: why a task failed or stopped, one fixed word that metrics, poll and the
# reports decide on (never the text of `error`, which is for people). The job writes its
# own kinds to its status file (`error_kind=`, docs/CONTRACTS.md); orch adds the kinds only
# it can see. "other": a failure no kind describes (or a word this version does not know).
JOB_ERROR_KINDS = ("timeout", "max_turns", "budget", "agent_error", "no_result",
                   "agent_missing", "tests_failed", "tests_timeout", "tests_error",
                   "clone_failed", "branch_failed", "no_changes", "commit_failed",
                   "push_failed", "cancelled", "git_missing", "root_refused", "step_failed",
                   "job_error",
                   "merge_conflict", "merge_failed")   # a split's integration (docs/split.md)
ORCH_ERROR_KINDS = ("start_failed",       # the job could not be started on its host
                    "lost",               # the host vanished or the job died without a result
                    "not_dispatchable",   # a queued task's issue was closed, gone, or its author lost permission
                    "plan_refused")       # a planning run's plan was refused (core/split.py)
ERROR_KINDS = JOB_ERROR_KINDS + ORCH_ERROR_KINDS + ("other",)

# Task.kind: what a task is (lifecycle/kinds.py owns how each kind runs and ends). A split
# issue's (core/split.py, docs/split.md): its parent, which holds no slot and runs no job,
# and the tasks that belong to it. Named here, beside the record, so that the store and
# the lifecycle tell them apart without loading the split's planning code.
PARENT_KIND = "split"
PART_KIND = "part"
INTEGRATE_KIND = "integrate"
PLANNER_KIND = "planner"
CHILD_KINDS = (PART_KIND, INTEGRATE_KIND, PLANNER_KIND)   # tasks that belong to a parent split
TASK_KINDS = ("issue", "followup", "plan", PART_KIND)
SPLIT_TASK_KINDS = (PARENT_KIND, INTEGRATE_KIND, PLANNER_KIND)   # a split issue's parent and its integrations

# The Task fields core/migrate.py derives for a record written before they existed; a
# record that has them all is current.
DERIVED_FIELDS = ("error_kind", "avoid_hosts")


@dataclass
class Task:
    """The state record of one dispatch of one issue (docs/SPEC.md "The task").

    Status changes only through the store's named transitions (store/filestore.py).
    """

    id: str
    repo: str
    issue: int
    title: str
    specialty: str
    status: str = "queued"
    host: str | None = None
    branch: str | None = None
    workspace: str | None = None
    pr_url: str | None = None
    attempts: int = 0
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    turns: int | None = None
    # Beyond docs/SPEC.md's fields: what finalize and reconcile need.
    forge: str = "github"             # "github" or "local"
    pid: int | None = None            # the remote job's process group id
    tests: str | None = None          # "passed", "failed", "none"
    commit: str | None = None
    comment_id: int | None = None
    unreachable_since: str | None = None
    finalized: bool = False
    claimed_by: str | None = None     # "host:pid" of the orch process finalizing it
    claimed_at: str | None = None
    log_path: str | None = None       # local copy of the job log, when fetched
    history: list[dict[str, Any]] = field(default_factory=list)
    # What the task is and belongs to (docs: "the task kinds"); records written before
    # these fields existed are issue tasks of their own (core/migrate.py fills the rest).
    kind: str = "issue"               # one of TASK_KINDS
    parent: str | None = None         # the task it belongs to (a follow-up's first run, a part's whole)
    pr_number: int | None = None      # the pull request it works on (a follow-up)
    session_id: str | None = None     # the agent session of its last run (the init event)
    # What a command asked for (lifecycle/conversation.py): the command (id, where, author,
    # text), and the vetted context its prompt carries (review comments, reviews, the
    # previous run's summary, a plan); None for a task no command started.
    request: dict[str, Any] | None = None
    error_kind: str | None = None     # one of ERROR_KINDS when it failed, was lost or stopped
    avoid_hosts: list[str] = field(default_factory=list)  # hosts an attempt was lost on or could not start on
    # A split issue's tasks (core/split.py): the parent's progress, a part's plan entry,
    # an integration's branches; None for every other task (and records from before).
    split: dict[str, Any] | None = None
    # The claim's fence (raised by every claim: a write made with an older one is refused)
    # and when its lease runs out (the store's clock: the database's for PostgreSQL).
    fence: int = 0
    lease_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = _finite(data["cost_usd"])   # never NaN/Infinity in state.json
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        """A stored task; a NaN or infinite cost an older orch wrote is read as unknown."""
        known = set(cls.__dataclass_fields__)
        if not all(k in data for k in DERIVED_FIELDS):
            # written by an older orch: only then is core/migrate.py loaded
            from .migrate import upgrade_task
            data = upgrade_task(data)
        task = cls(**{k: v for k, v in data.items() if k in known})
        task.cost_usd = _finite(task.cost_usd)
        return task


def _finite(value: Any) -> float | None:
    """A number that JSON can hold and a sum can use, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
