"""What a provision step is: a function of a StepContext (the host's connection, its
home, the plan) to an Outcome (ok, changed, failed with the fix), and the helpers the
steps share. The steps themselves are in steps.py and agent.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...config.settings import Settings
from ...core.agentsource import AgentSource, InstallTarget
from ...core.models import Host
from ...transport.base import CommandResult

INSTALL_TIMEOUT = 900.0      # seconds for a package manager or npm install
TAIL = 300                   # characters of a failed command's output kept in a report


class Remote(Protocol):
    """What a step may do on a host (transport/fabric.py's FabricRemote)."""

    host: Host

    def run(self, command: str, *, timeout: float = 60) -> CommandResult: ...

    def run_as_root(self, command: str, *, timeout: float = 600) -> CommandResult: ...

    def check_root(self, password_available: bool) -> None: ...

    def put(self, local: Path, remote: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    status: str                     # ok | changed | failed | skipped
    detail: str
    fix: str | None = None


def ok(detail: str) -> Outcome:
    return Outcome("ok", detail)


def changed(detail: str) -> Outcome:
    return Outcome("changed", detail)


def failed(detail: str, fix: str) -> Outcome:
    return Outcome("failed", detail, fix)


@dataclass
class StepContext:
    remote: Remote
    host: Host
    settings: Settings
    home: str                                   # the login user's $HOME on the host
    check: bool = False
    password_available: bool = False            # --ask-sudo-pass was given
    source: AgentSource | None = None
    local_file: Path | None = None              # the agent file to upload, when a file
    local_sha256: str | None = None
    target: InstallTarget | None = None

    def abs(self, path: str) -> str:
        """A ~/ path as the absolute path on the host (uploads need one: SFTP has no ~)."""
        if path == "~":
            return self.home
        return self.home.rstrip("/") + path[1:] if path.startswith("~/") else path

    def as_root(self, script: str, *, timeout: float = INSTALL_TIMEOUT) -> CommandResult:
        return self.remote.run_as_root(script, timeout=timeout)


def tail(result: CommandResult) -> str:
    text = " ".join((result.stdout + " " + result.stderr).split())
    return text if len(text) <= TAIL else "..." + text[-(TAIL - 3):]


def first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


__all__ = ["INSTALL_TIMEOUT", "Outcome", "Remote", "StepContext", "changed", "failed",
           "first_line", "key_values", "ok", "tail"]
