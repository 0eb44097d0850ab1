"""Answering a command: the reactions on the comment that asked and the reply under it,
each said once, whatever ends the task and however often finalize runs.

A task a command started carries the command in Task.request (lifecycle/conversation.py
put it there). Reactions mark how it stands (docs/conversation.md): eyes when taken,
rocket when done, confused when it failed or stopped (the reason is in the reply).
GitHub answers a repeated reaction 200, so reacting again is harmless; a reply is
recorded in the command's record in the store (by outcome), so it is never posted twice.
A follow-up started by hand (`orch dispatch --followup`) has no command: its outcome is
one comment of orch's on the pull request, edited in place.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..app import App
from ..core.models import Remark, Task
from ..forge.base import Forge

REACTIONS = {"running": "eyes", "succeeded": "rocket", "failed": "confused",
             "cancelled": "confused", "lost": "confused"}


def command_of(task: Task) -> dict[str, Any] | None:
    command = (task.request or {}).get("command")
    return command if isinstance(command, dict) and command.get("key") else None


def remark_of(command: dict[str, Any]) -> Remark:
    """The command comment as the forge knows it (enough to react and reply)."""
    reply_to = command.get("in_reply_to")
    return Remark(source=str(command.get("source") or "issue_comment"), id=int(command["id"]),
                  number=int(command["number"]), body="", author=str(command.get("author") or ""),
                  in_reply_to=reply_to if isinstance(reply_to, int) else None)


async def react(forge: Forge, task: Task, status: str) -> None:
    command, content = command_of(task), REACTIONS.get(status)
    if command is None or content is None:
        return
    await asyncio.to_thread(forge.react, task.repo, remark_of(command), content)


async def reply(app: App, forge: Forge, task: Task, status: str, body: str) -> int:
    """Reply `body` to the task's command, once per outcome; the reply's id."""
    command = command_of(task)
    if command is None:
        number = task.pr_number if task.pr_number is not None else task.issue
        return await asyncio.to_thread(forge.upsert_comment, task.repo, number, body,
                                       task.comment_id)
    key = str(command["key"])
    said = dict((app.store.command(key) or {}).get("replies") or {})
    if status in said:
        return int(said[status])
    cid = await asyncio.to_thread(forge.reply, task.repo, remark_of(command), body)
    app.store.update_command(key, replies={**said, status: cid})
    return cid
