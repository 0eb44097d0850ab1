"""The URL a host clones a repository from: one answer, for the job and for bootstrap.

`repo_urls` in orch.yml wins (a mirror, an SSH URL, a local path); otherwise the forge
says (GitHub's `clone_url` from the repository's own JSON, GitHub Enterprise included).
Dispatch hands this URL to job.sh and `orch bootstrap` checks `git ls-remote` on the same
URL, so a host that bootstrap passes is one the job can clone from (and the other way
round). Nothing here derives a URL from `github.url`: the forge knows its own URLs.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config.settings import Settings
from ..errors import WorkError
from .base import Forge


def clone_url(settings: Settings, repo: str, forge: Callable[[], Forge]) -> str:
    """`repo`'s clone URL; `forge` is called only when repo_urls does not name the repo
    (building a GitHub forge reads the token), and its errors propagate."""
    url = settings.repo_urls.get(repo)
    if url:
        return url
    url = forge().clone_url(repo)
    if not url:
        raise WorkError(f"the forge gave no clone URL for {repo}",
                        hint=f"set repo_urls: {{{repo}: URL}} in orch.yml")
    return url
