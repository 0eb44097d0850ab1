"""The central mirror of a repository (git.via: orch): orch's own bare copy, the only git
that talks to the forge when the hosts may not.

`<state_dir>/mirrors/<owner>+<name>.git` holds the forge's branches
(`refs/heads/*`, pruned) and HEAD; job/relay.py moves objects between it and a host's
mirror over the host's SSH connection as git bundles. Fetching from and pushing to the
forge use orch's token through a credential helper that reads it from orch's own
environment (the variable github.token_env names): the helper's text, the only thing on
git's command line, holds the variable's name, never the token; nothing is written.

Every git call here runs under a lock of the mirror (orch processes share it: a cron
`orch poll` and an `orch dispatch`), in a thread (git is a subprocess).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from ..core import shell
from ..errors import WorkError
from ..private import FILE_MODE, private_dir

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
GIT_TIMEOUT = 900.0          # seconds for one git call (a first fetch of a big repository)
LOCK_TIMEOUT = 900.0
T = TypeVar("T")


def credential_helper(token_env: str | None) -> list[str]:
    """`-c` options that make git answer the forge's password prompt with $token_env
    (reset first: no helper of the user's config sees the request); none without a
    token. `x-access-token` is the user name GitHub takes with any token."""
    if not token_env or not _ENV_NAME.fullmatch(token_env) or not os.environ.get(token_env):
        return []
    helper = ('!f() { [ "$1" = get ] || exit 0; echo username=x-access-token; '
              f'printf "password=%s\\n" "${token_env}"; }}; f')
    return ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]


class DeliveryRefused(WorkError):
    """The branch cannot be delivered as it is, and trying again would not help (the
    forge refused the leased push, or the host's branch is not what its job said)."""


class CentralMirror:
    """One repository's bare mirror on this machine."""

    def __init__(self, state_dir: Path, repo: str, url: str, token_env: str | None) -> None:
        self.repo = repo
        self.url = url
        self.token_env = token_env
        root = Path(state_dir) / "mirrors"
        digest = hashlib.sha256(repo.encode()).hexdigest()[:12]
        self.path = root / f"{shell.slug(repo, 60)}-{digest}.git"
        self._lock = FileLock(str(root / f"{self.path.name}.lock"), mode=FILE_MODE)
        self._root = root

    # ---------------------------------------------------------------- plumbing

    def _git(self, *args: str, input: bytes | None = None, forge: bool = False) -> bytes:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
        extra = credential_helper(self.token_env) if forge else []
        try:
            proc = subprocess.run(["git", *extra, "-C", str(self.path), *args], input=input,
                                  capture_output=True, env=env, timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise WorkError(f"{self.repo}: git {args[0]} in the central mirror took more "
                            f"than {GIT_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise WorkError(f"{self.repo}: git {args[0]} in the central mirror failed: "
                            f"{' '.join(err) or f'exit {proc.returncode}'}",
                            hint="git.via: orch: this machine must reach the forge itself "
                                 "(check repo_urls, github.token_env)")
        return proc.stdout

    async def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            private_dir(self._root)
            with self._lock.acquire(timeout=LOCK_TIMEOUT):
                return fn(*args)
        return await asyncio.to_thread(run)

    # ---------------------------------------------------------------- the forge side

    def _update(self) -> None:
        if not (self.path / "objects").is_dir():
            subprocess.run(["git", "init", "--quiet", "--bare", str(self.path)], check=True,
                           capture_output=True)
        self._git("fetch", "--quiet", "--prune", "--no-tags", "--", self.url,
                  "+refs/heads/*:refs/heads/*", forge=True)
        head = self._git("ls-remote", "--symref", "--", self.url, "HEAD", forge=True).decode()
        m = re.search(r"^ref: (refs/heads/\S+)\s+HEAD$", head, re.MULTILINE)
        if m:
            self._git("symbolic-ref", "HEAD", m.group(1))

    def _update_for(self, branch: str, task_id: str) -> None:
        self._update()
        lease = self._lease_ref(task_id)
        sha = self._heads().get(f"refs/heads/{branch}")
        if sha:
            self._git("update-ref", lease, sha)
        else:
            self._git("update-ref", "-d", lease)

    async def update(self, branch: str, task_id: str) -> None:
        """Fetch the forge's branches (create the mirror on first use), and remember
        where the forge's `branch` was for the push after task `task_id`'s job (its lease:
        refs/orch/lease/<task_id>, absent when the forge has no such branch)."""
        await self._locked(self._update_for, branch, task_id)

    @staticmethod
    def _lease_ref(task_id: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", task_id):
            raise WorkError(f"task id {task_id!r} cannot name a ref")
        return f"refs/orch/lease/{task_id}"

    def _push(self, branch: str, task_id: str, commit: str) -> None:
        ref = f"refs/heads/{branch}"
        there = self._git("ls-remote", "--", self.url, ref, forge=True).decode().split()
        if there[:1] == [commit]:
            return               # pushed by an earlier finalize (a crash after the push)
        lease_ref = self._lease_ref(task_id)
        try:
            lease = self._git("rev-parse", "-q", "--verify", lease_ref).decode().strip()
        except WorkError:
            lease = ""           # the forge had no such branch when the job started
        # A lease on where the forge's branch was when orch sent the job its base: orch's
        # own branch is replaced (a re-run's work over an earlier one's), but a commit
        # someone pushed to it while the job ran is never overwritten.
        try:
            self._git("push", "--quiet", "--no-verify", f"--force-with-lease={ref}:{lease}",
                      "--", self.url, f"{ref}:{ref}", forge=True)
        except WorkError as exc:
            if "[rejected]" not in exc.message and "stale info" not in exc.message:
                raise            # the forge unreachable, the token refused: try again later
            raise DeliveryRefused(f"{self.repo}: someone pushed to {branch} while orch "
                                  f"worked on it: orch's commit was not pushed over theirs "
                                  f"({exc.message})") from None
        self._git("update-ref", "-d", lease_ref)

    async def push(self, branch: str, task_id: str, commit: str) -> None:
        """Push `branch` (at `commit`) of the mirror to the forge with orch's token,
        leased on where the forge had it when task `task_id` started (update)."""
        await self._locked(self._push, branch, task_id, commit)

    # ---------------------------------------------------------------- the host side

    def _heads(self) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads")
        heads = {}
        for line in out.decode().splitlines():
            sha, _, ref = line.partition(" ")
            if _SHA.fullmatch(sha):
                heads[ref] = sha
        return heads

    def _head(self) -> str | None:
        try:
            return self._git("symbolic-ref", "-q", "HEAD").decode().strip() or None
        except WorkError:
            return None

    def _known(self, shas: list[str]) -> set[str]:
        """Which of these objects (a host's claims: untrusted) the mirror has."""
        wanted = [s for s in shas if _SHA.fullmatch(s)]
        if not wanted:
            return set()
        out = self._git("cat-file", "--batch-check=%(objectname) %(objecttype)",
                        input="".join(f"{s}\n" for s in wanted).encode())
        return {line.split()[0] for line in out.decode().splitlines()
                if line.endswith(" commit")}

    def _bundle(self, host_shas: list[str]) -> tuple[dict[str, str], str | None, bytes]:
        """(branches, HEAD, a bundle of what the host lacks, b"" when nothing)."""
        heads, head = self._heads(), self._head()
        known = sorted(self._known(host_shas))
        missing = self._git("rev-list", "--max-count=1", "--branches", "--not", *known, "--")
        if not missing.strip():
            return heads, head, b""
        data = self._git("bundle", "create", "--quiet", "-", "--branches", "--not", *known)
        return heads, head, data

    async def bundle_for(self, host_shas: list[str]) -> tuple[dict[str, str], str | None, bytes]:
        """The mirror's branches and HEAD, and a bundle of the objects a host whose
        mirror holds `host_shas` lacks (b"" when it lacks none)."""
        return await self._locked(self._bundle, host_shas)

    def _take(self, data: bytes, branch: str, expect: str) -> None:
        with tempfile.NamedTemporaryFile(dir=self._root, suffix=".bundle") as f:
            f.write(data)
            f.flush()
            self._git("bundle", "verify", "--quiet", f.name)
            self._git("fetch", "--quiet", "--no-tags", "--force", f.name,
                      f"refs/heads/{branch}:refs/heads/{branch}")
        got = self._git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}").decode().strip()
        if got != expect:
            raise DeliveryRefused(f"{self.repo}: the host sent {branch} at {got[:12]}, its status "
                            f"says {expect[:12]}: not delivered")

    async def take(self, data: bytes, branch: str, expect: str) -> None:
        """Store `branch` from a host's bundle; its tip must be `expect` (the job's commit)."""
        await self._locked(self._take, data, branch, expect)

    async def branches(self) -> dict[str, str]:
        """refs/heads/NAME -> commit: the mirror's branches (their tips are what a host
        need not send back)."""
        return await self._locked(self._heads)
