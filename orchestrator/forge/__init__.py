"""Where issues come from and where pull requests go.

`make_forge("github" | "local", ...)` builds the Forge a task names (Task.forge). The GitHub
implementation imports PyGithub, so it is imported only when asked for: `orch --help`,
`orch hosts` and the local demo never pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .base import PERMISSIONS, RECENT_COMMENTS, Forge, head_branch, parse_issue_ref, permission_at_least

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["Forge", "PERMISSIONS", "RECENT_COMMENTS", "head_branch", "make_forge",
           "parse_issue_ref", "permission_at_least"]


def make_forge(kind: str, settings: Settings, state_dir: str | Path) -> Forge:
    """The forge for `kind`: "github" (settings.github, settings.repo_urls) or "local"
    (Markdown issues and JSON pull-request records under `state_dir`)."""
    if kind == "github":
        from .github import GithubForge
        return GithubForge(settings.github, repo_urls=settings.repo_urls)
    if kind == "local":
        from .local import LocalForge
        return LocalForge(state_dir)
    raise UsageError(f"unknown forge {kind!r}", hint="use github or local")
