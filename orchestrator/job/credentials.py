"""The agent's credentials (agent.credentials): read from orch's own environment, handed
to each job through the SSH channel, never written anywhere.

`agent.credentials: {ANTHROPIC_API_KEY: MY_KEY_VAR}` means: the agent runs with
ANTHROPIC_API_KEY set to the value of $MY_KEY_VAR here. The values travel as the first
lines of the job starter's standard input (job/remote.py start): the starter reads them
into shell variables and pipes them to job.sh, which keeps them in its own (unexported)
variables and exports them into each agent run only (playbooks/dispatch.yml `guarded`).
So a value is never in an argv, a file, job.log, the status file or state.json.
docs/security.md says what a process listing can still see.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config.settings import Settings
from ..errors import UsageError


@dataclass(frozen=True)
class Credentials:
    """Agent variable names and their values, in the order of agent.credentials.

    The values never show in a repr (a traceback, a debug print): only the names do.
    """

    names: tuple[str, ...] = ()
    values: tuple[str, ...] = field(default=(), repr=False)

    def __bool__(self) -> bool:
        return bool(self.names)


def names(settings: Settings) -> tuple[str, ...]:
    """The agent variables a job of these settings receives (what job.sh reads)."""
    return tuple(settings.agent.credentials)


def read(settings: Settings, environ: Mapping[str, str] | None = None) -> Credentials:
    """Every agent.credentials value from orch's environment; a variable that is unset or
    empty, or a value a line cannot carry, is bad input (UsageError, exit 2) naming it.
    Called before anything is dispatched, so a missing key changes nothing."""
    env = os.environ if environ is None else environ
    values = []
    for name, source in settings.agent.credentials.items():
        value = env.get(source, "")
        if not value:
            raise UsageError(
                f"agent.credentials: ${source} is not set (it holds {name} for the agent)",
                hint=f"export {source}=<the key> in the shell that runs orch (a key from "
                     f"the Anthropic console, or the token `claude setup-token` prints), or "
                     f"remove {name} from agent.credentials in orch.yml")
        if any(c in value for c in "\n\r\0"):
            raise UsageError(f"agent.credentials: ${source} (for {name}) holds a line break "
                             f"or a NUL byte", hint=f"set {source} to the key alone, on one line")
        values.append(value)
    return Credentials(names(settings), tuple(values))
