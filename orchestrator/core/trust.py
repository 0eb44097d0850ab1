"""Who may make orch do what (pure): the rules that keep a stranger's text out of the agent
and a stranger's issue off this machine.

GitHub issues are written by people orch does not know; an agent runs with
bypassPermissions, the host's push rights and its Claude credentials. So:

- on a `connection: local` host the agent runs as the user who holds orch's state, its
  GitHub token's environment and its SSH keys: a GitHub issue runs there only when the
  operator opted in (`allow_local_github: true`). The local forge (the operator's own
  Markdown issues, `orch demo`) needs no opt-in.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable

from ..errors import UsageError
from .models import Host

LOCAL_OPT_IN = "allow_local_github"


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "this user"


def local_meaning(state_dir: object = None) -> str:
    """What `connection: local` means, for `orch hosts` and `orch dispatch` to say."""
    where = f" (state in {state_dir})" if state_dir else ""
    return (f"jobs run on this machine as {_local_user()}, the user who holds orch's "
            f"state{where}, its environment and its SSH keys")


def local_refusals(hosts: Iterable[Host], forge_kind: str, allowed: bool) -> dict[str, str]:
    """Host name -> why it may not take a task from `forge_kind` (schedule's `unhealthy`)."""
    if forge_kind == "local" or allowed:
        return {}
    return {h.name: (f"local host: a GitHub issue runs here only with {LOCAL_OPT_IN}: true "
                     f"in orch.yml ({local_meaning()})")
            for h in hosts if h.is_local}


def check_local_github(hosts: Iterable[Host], forge_kind: str, allowed: bool) -> None:
    """Refuse (exit 2, nothing changed) a GitHub issue when only local hosts could take it."""
    enabled = [h for h in hosts if h.enabled]
    if forge_kind == "local" or allowed or not enabled or not all(h.is_local for h in enabled):
        return
    raise UsageError(
        f"a GitHub issue would run on this machine ({', '.join(h.name for h in enabled)}: "
        f"connection: local), where {local_meaning()}",
        hint=f"run it on a host over SSH (an inventory: `orch inventory add`), or set "
             f"{LOCAL_OPT_IN}: true in orch.yml if you accept that")
