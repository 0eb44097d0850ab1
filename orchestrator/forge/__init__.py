"""Where issues come from and where pull requests go: the forge registry.

A forge kind is one row of FORGES (the pattern of pyinfra's connector table): its name
(what Task.forge stores, so finalize talks to the forge the issue came from), how it is
built from the settings, which issue references it understands and how it reads them,
and what `orch show` can add about a task of its own. A forge module is imported only
when its row is used: the GitHub one imports PyGithub, which `orch --help`, `orch hosts`
and the local demo never pay for.

Adding a forge (GitLab, say): a module with a class implementing base.Forge, and one
row here. Nothing outside forge/ names a forge kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..errors import UsageError
from ..registry import lookup
from .base import (
    PERMISSIONS,
    RECENT_COMMENTS,
    Forge,
    IssueNotFound,
    head_branch,
    parse_issue_ref,
    permission_at_least,
)

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..core.models import Task
    from .local import LocalForge

__all__ = ["DEFAULT_FORGE", "FORGES", "Forge", "ForgeKind", "IssueNotFound", "PERMISSIONS",
           "RECENT_COMMENTS", "forge_kind", "head_branch", "kind_for_ref", "make_forge",
           "parse_issue_ref", "permission_at_least"]


@dataclass(frozen=True)
class ForgeKind:
    """One forge kind: everything orch needs to know of it without importing it."""

    name: str
    build: Callable[[Settings, Path], Forge]
    # Does this reference (and `--repo PATH`, when given) name an issue of this forge?
    # Cheap: called for every kind, in table order, before any forge is built.
    claims: Callable[[str, str | None], bool]
    # The reference as (repo, number) that this forge's get_issue finds.
    resolve: Callable[[Forge, str, str | None], tuple[str, int]]
    # Extra lines `orch show` prints for a task of this forge ({} when none).
    describe: Callable[[Forge, Task], dict[str, str]] | None = None
    # Its issues are written by people orch does not know (GitHub), unlike the operator's
    # own files: on a host whose jobs run on this machine they need allow_local_github.
    strangers: bool = True


def _github(settings: Settings, state_dir: Path) -> Forge:
    from .github import GithubForge
    return GithubForge(settings.github, repo_urls=settings.repo_urls, pr=settings.pr)


def _local(settings: Settings, state_dir: Path) -> Forge:
    from .local import LocalForge
    return LocalForge(state_dir, pr=settings.pr)


def _local_claims(ref: str, repo: str | None) -> bool:
    return repo is not None or ref.endswith(".md") or Path(ref).is_file()


def _local_resolve(forge: Forge, ref: str, repo: str | None) -> tuple[str, int]:
    return cast("LocalForge", forge).register(ref, repo)   # a file is imported, then found


def _local_describe(forge: Forge, task: Task) -> dict[str, str]:
    return cast("LocalForge", forge).describe(task.repo, task.issue, task.branch)


def _github_resolve(forge: Forge, ref: str, repo: str | None) -> tuple[str, int]:
    return parse_issue_ref(ref)


FORGES: dict[str, ForgeKind] = {k.name: k for k in (
    # Local first: a file (or --repo) is never a GitHub reference.
    ForgeKind("local", build=_local, claims=_local_claims, resolve=_local_resolve,
              describe=_local_describe, strangers=False),
    ForgeKind("github", build=_github, claims=lambda ref, repo: True, resolve=_github_resolve),
)}

# Where the repositories of `repos:` (what `orch poll` watches) live.
DEFAULT_FORGE = "github"


def forge_kind(name: str) -> ForgeKind:
    return lookup(FORGES, name, "forge")


def make_forge(name: str, settings: Settings, state_dir: str | Path) -> Forge:
    """The forge of kind `name` for one run (settings and state dir bound)."""
    return forge_kind(name).build(settings, Path(state_dir))


def kind_for_ref(ref: str, repo: str | None = None) -> ForgeKind:
    """The forge kind whose references `ref` is written in (the first that claims it)."""
    for kind in FORGES.values():
        if kind.claims(ref, repo):
            return kind
    raise UsageError(f"{ref!r} is not an issue reference")  # pragma: no cover - github claims all
