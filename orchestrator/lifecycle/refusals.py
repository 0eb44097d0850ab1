"""Why an issue (or a queued task) is not made a running task now: a reason code and words.

The lifecycle decides on `Refused.code`, never on the text and never on an exit code; the
text is for people (`orch dispatch` prints it, `orch poll` lists it under `skipped`). The
exit code a command ends with when a refusal reaches the CLI is derived from the code here,
at the edge, for errors.OrchError's contract.
"""

from __future__ import annotations

from enum import StrEnum

from ..core.models import Task
from ..errors import OrchError


class Refusal(StrEnum):
    # The issue itself: final, a queued task refused for these will never run.
    PULL_REQUEST = "pull_request"     # the number is a pull request, not an issue
    CLOSED = "closed"                 # the issue is not open
    UNAUTHORISED = "unauthorised"     # its author lacks trigger.min_permission
    UNTRUSTED = "untrusted"           # its label, title or body is by someone who lacks it
    NOT_FOUND = "not_found"           # the issue or its repository does not exist
    # The state of its tasks: one live task per issue (the store's rule, store/filestore.py).
    DUPLICATE = "duplicate"           # the issue has a live task already
    TAKEN = "taken"                   # the queued task was taken (or cancelled) meanwhile
    # `orch poll`'s label trigger: the label means "do this again" only once orch is done.
    LABEL_REMOVED = "label_removed"   # the trigger label went while orch was looking
    LOST = "lost"                     # its last task is lost: the next pass queues it again
    UNREPORTED = "unreported"         # its last task ended and the issue is not told yet
    JUST_FINISHED = "just_finished"   # its last task ended too recently to trust the label
    # The fleet.
    NO_CAPACITY = "no_capacity"       # no host can take it now

    @property
    def final(self) -> bool:
        """The issue can never be dispatched as it stands (a queued task for it fails)."""
        return self in _FINAL


_FINAL = frozenset({Refusal.PULL_REQUEST, Refusal.CLOSED, Refusal.UNAUTHORISED,
                    Refusal.UNTRUSTED, Refusal.NOT_FOUND})
# What a person's command exits with (SPEC: 2 bad input, nothing changed; 1 the work
# failed): asking for something orch refuses to do is bad input, a full fleet is not.
_EXIT = {Refusal.NO_CAPACITY: 1, Refusal.TAKEN: 1}


class Refused(OrchError):
    """A typed refusal: `code` says why, the message says it in words."""

    def __init__(self, code: Refusal, message: str, *, hint: str | None = None,
                 task: Task | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.task = task                   # the task the refusal is about, when there is one
        self.exit_code = _EXIT.get(code, 2)
