"""Typed settings with docs/SPEC.md's defaults: `Settings()` alone is a working configuration.

config.py fills these from orch.yml; nothing else reads the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SPECIALTIES: dict[str, dict[str, list[str]]] = {
    "backend": {"labels": ["backend", "api", "database"],
                "keywords": ["api", "endpoint", "database", "sql", "server", "fastapi", "django"]},
    "frontend": {"labels": ["frontend", "ui"],
                 "keywords": ["react", "css", "component", "ui", "page", "typescript"]},
    "testing": {"labels": ["testing", "qa"],
                "keywords": ["test", "pytest", "jest", "e2e", "coverage"]},
    "devops": {"labels": ["devops", "ci", "infra"],
               "keywords": ["docker", "ci", "deploy", "terraform", "kubernetes"]},
}


@dataclass
class GithubSettings:
    url: str = "https://api.github.com"
    token_env: str = "GITHUB_TOKEN"
    timeout: float = 15.0             # seconds per API request
    retries: int = 5                  # 5xx, 403 secondary rate limits, timeouts


@dataclass
class TriggerSettings:
    label: str = "orch"
    min_permission: str = "write"     # none < read < triage < write < maintain < admin
    comments: str = "trusted"         # trusted | none: which comments reach the prompt
    mention: str = "@orch"            # a comment whose first line starts with it is a command
    review: bool = True               # "Request changes" on orch's PR starts a follow-up


@dataclass
class SSHSettings:
    known_hosts: str = "~/.ssh/known_hosts"
    config: str | None = "~/.ssh/config"
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3
    max_sessions: int = 8             # per connection; sshd's MaxSessions is 10
    client_keys: list[str] = field(default_factory=list)  # extra identity files for every host


@dataclass
class AgentSettings:
    command: str = "claude"
    max_turns: int = 40
    timeout: float = 45 * 60          # seconds of wall clock per agent run
    max_cost_usd: float | None = 5.0
    daily_budget_usd: float | None = None
    model: str | None = None
    permission_mode: str = "bypassPermissions"
    allow_root: bool = False
    env: dict[str, str] = field(default_factory=dict)   # extra env for the agent (not secrets)
    env_pass: list[str] = field(default_factory=list)  # host variables a job inherits
    # agent variable -> the variable of orch's own environment holding its value, handed
    # to each agent run through the SSH channel (job/credentials.py, docs/security.md)
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass
class GitSettings:
    author: str = "orch <orch@localhost>"
    # host: each host clones from and pushes to the forge with its own credentials; orch:
    # hosts never talk to the forge, orch relays over SSH (job/relay.py, forge/mirror.py)
    via: str = "host"


GIT_VIA = ("host", "orch")


@dataclass
class PollSettings:
    lost_after: float = 10 * 60       # seconds
    max_attempts: int = 3
    # A task reserved by a process orch cannot see (another machine) whose job has not
    # written its status yet: how long before that process is taken for dead.
    start_grace: float = 120.0        # seconds


@dataclass
class TestsSettings:
    command: str | None = None
    max_fix_attempts: int = 2
    timeout: float = 20 * 60


@dataclass
class WorkspaceSettings:
    keep_on_success: bool = False
    keep_on_failure: bool = True


@dataclass
class MetricsSettings:
    textfile: str | None = None


@dataclass
class ReportSettings:
    log_tail: str = "summary"         # none | summary | full: what a failure comment shows


@dataclass
class PullRequestSettings:
    draft: bool = False               # open orch's pull requests as drafts
    reviewers: list[str] = field(default_factory=list)   # logins asked to review
    labels: list[str] = field(default_factory=list)      # labels put on the pull request


@dataclass
class ProvisionSettings:
    # `orch provision`'s agent: "npm:<package spec>" or a local file (absolute or ~/ path,
    # made absolute by the loader); None: provision checks the agent, installs nothing.
    agent_source: str | None = None


@dataclass
class SplitSettings:
    # docs/split.md: an issue labelled with two or more specialties is split into parts
    by_labels: bool = True
    max_parts: int = 4                # the most parts a planning run may return


@dataclass
class Settings:
    github: GithubSettings = field(default_factory=GithubSettings)
    repos: list[str] = field(default_factory=list)
    repo_urls: dict[str, str] = field(default_factory=dict)   # owner/name -> clone URL override
    trigger: TriggerSettings = field(default_factory=TriggerSettings)
    ssh: SSHSettings = field(default_factory=SSHSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    git: GitSettings = field(default_factory=GitSettings)
    poll: PollSettings = field(default_factory=PollSettings)
    tests: TestsSettings = field(default_factory=TestsSettings)
    workspace: WorkspaceSettings = field(default_factory=WorkspaceSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    provision: ProvisionSettings = field(default_factory=ProvisionSettings)
    pr: PullRequestSettings = field(default_factory=PullRequestSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    specialties: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: {k: {kk: list(vv) for kk, vv in v.items()}
                                 for k, v in DEFAULT_SPECIALTIES.items()})
    inventory: str | None = None
    state_dir: str | None = None
    state: str | None = None          # where tasks are kept: tinydb:PATH or postgresql://...
    allow_local_github: bool = False  # a GitHub issue may run on a `connection: local` host
    playbooks_dir: str | None = None  # override the shipped playbooks/
    prompts_dir: str | None = None    # override the shipped prompts/
    source: Path | None = None        # the orch.yml these came from, None for defaults
