"""Where the shipped `playbooks/` and `prompts/` directories are.

They are data, not code, so users can edit them; orch finds them in this order:
the config's `playbooks_dir` / `prompts_dir`, the repository checkout next to the
package (a development install), then `<prefix>/share/orch/...` where setup.cfg's
data_files put them (a regular or `--user` install).
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

from ..errors import UsageError
from .settings import Settings

_CHECKOUT = Path(__file__).resolve().parents[2]


def _candidates(kind: str) -> list[Path]:
    found = [_CHECKOUT / kind, Path(sys.prefix) / "share" / "orch" / kind]
    user_base = getattr(site, "USER_BASE", None)
    if user_base:
        found.append(Path(user_base) / "share" / "orch" / kind)
    return found


def _find(kind: str, override: str | None, marker: str) -> Path:
    if override:
        p = Path(override).expanduser()
        if not p.is_dir():
            raise UsageError(f"{p}: {kind} directory not found",
                             hint=f"fix `{kind}_dir` in orch.yml, or remove it to use the shipped one")
        return p
    for p in _candidates(kind):
        if (p / marker).is_file():
            return p
    tried = ", ".join(str(p) for p in _candidates(kind))
    raise UsageError(f"cannot find orch's {kind}/ directory (tried {tried})",
                     hint=f"reinstall orch, or set `{kind}_dir` in orch.yml")


def playbooks_dir(settings: Settings | None = None) -> Path:
    """The directory holding dispatch.yml and bootstrap.yml."""
    return _find("playbooks", settings.playbooks_dir if settings else None, "dispatch.yml")


def prompts_dir(settings: Settings | None = None) -> Path:
    """The directory holding <specialty>.md.j2 and fix.md.j2."""
    return _find("prompts", settings.prompts_dir if settings else None, "general.md.j2")
