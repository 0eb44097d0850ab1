"""Command comments (pure): what a comment that mentions orch asks for.

A comment is a command when its first line starts with the handle (`trigger.mention`,
default `@orch`), followed by a space, the end of the line, or punctuation that cannot be
part of a login (`@orchestra` is someone else). The first word after the handle picks the
verb when it is one of VERBS; anything else is the text of a plain request (on an issue:
dispatch it with that text as an extra instruction; on orch's pull request: a follow-up
run). Whether the author may give commands, whether the comment was taken before, and
what the verb does are decided elsewhere (lifecycle/conversation.py): here is only the
reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The words a command may start with. "run" is the plain request (no verb written).
VERBS = ("cancel", "retry", "plan", "approve", "split")
RUN = "run"
TEXT_LIMIT = 8000      # characters of a command's text that reach a prompt

_LOGIN_CHAR = re.compile(r"[A-Za-z0-9_-]")


@dataclass(frozen=True)
class Command:
    verb: str            # RUN or one of VERBS
    text: str            # what follows the verb (the whole rest of the comment for RUN)


def parse_command(body: str, handle: str) -> Command | None:
    """The command in a comment's `body`, or None when it is not addressed to `handle`.

    Leading blank lines and spaces are ignored; the handle is matched without regard to
    case (GitHub logins are case-insensitive)."""
    text = (body or "").replace("\r\n", "\n").lstrip()
    if not handle or not text.lower().startswith(handle.lower()):
        return None
    rest = text[len(handle):]
    if rest and _LOGIN_CHAR.match(rest[0]):
        return None      # @orchestra: another login
    rest = rest.lstrip(" \t,:")
    first_line, _, more = rest.partition("\n")
    word, _, after = first_line.strip().partition(" ")
    if word.lower() in VERBS:
        tail = "\n".join(x for x in (after.strip(), more.strip()) if x)
        return Command(word.lower(), tail[:TEXT_LIMIT])
    return Command(RUN, rest.strip()[:TEXT_LIMIT])


def command_key(repo: str, source: str, ident: int | str) -> str:
    """The durable name of one command (the store records it once taken): the repository,
    where it was written (issue_comment, review_comment, review) and the forge's id of it.
    An edit keeps the id, so an edited comment is the same command, never a new one."""
    return f"{repo}|{source}|{ident}"
