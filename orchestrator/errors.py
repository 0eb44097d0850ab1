"""Errors are values with a user-facing message and an exit code.

They are raised at the edge and printed once by the CLI; no traceback reaches a user
for a mistake of theirs. Exit codes follow docs/SPEC.md: 1 the work failed, 2 bad input.
"""

from __future__ import annotations


class OrchError(Exception):
    """Base of every error orch reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(OrchError):
    """Bad input or configuration: nothing was changed (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A mistake in a file the user wrote; the message names file, line and key."""

    def __init__(self, path: str, message: str, *, line: int | None = None,
                 key: str | None = None, hint: str | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        what = f"{key}: {message}" if key else message
        super().__init__(f"{where}: {what}", hint=hint)
        self.path = str(path)
        self.line = line
        self.key = key


class WorkError(OrchError):
    """The work failed (a task failed, a host is unreachable): exit 1."""

    exit_code = 1


class HostUnreachable(WorkError):
    """A host could not be reached; `reason` is one of the REASONS kinds."""

    REASONS = ("timeout", "refused", "auth", "hostkey-unknown", "hostkey-changed",
               "dns", "disconnected", "other")

    def __init__(self, host: str, reason: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {detail}", hint=hint)
        self.host = host
        self.reason = reason
        self.detail = detail


class ForgeUnavailable(WorkError):
    """The forge (GitHub) could not be reached after retries: the whole pass stops (exit 1)."""
