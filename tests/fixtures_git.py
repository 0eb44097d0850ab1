"""Real git remotes for tests: a local bare repository plays GitHub's part.

`git_remote` is a bare repository seeded with a small, passing Python project (a
function and its pytest test) on `main`; `git_remote_factory(files=...)` seeds any
other tree. Helpers read what a job pushed without a checkout (`git show branch:path`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SEED_FILES: dict[str, str] = {
    "README.md": "# calc\n\nA tiny project orch's tests work on.\n",
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}

_GIT_ENV = {"GIT_AUTHOR_NAME": "Seed", "GIT_AUTHOR_EMAIL": "seed@example.com",
            "GIT_COMMITTER_NAME": "Seed", "GIT_COMMITTER_EMAIL": "seed@example.com",
            "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: str | os.PathLike[str] | None = None, check: bool = True) -> str:
    """Run git; stdout decoded as is (no newline translation: a CR in a message stays)."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True,
                          env={**os.environ, **_GIT_ENV})
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8", "surrogateescape")


@dataclass
class GitRemote:
    """A bare repository and ways to look inside it."""

    path: Path
    default_branch: str = "main"

    @property
    def url(self) -> str:
        return str(self.path)

    def _git(self, *args: str, check: bool = True) -> str:
        return git("--git-dir", str(self.path), *args, check=check)

    def branches(self) -> list[str]:
        out = self._git("for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return [b for b in out.splitlines() if b]

    def has_branch(self, branch: str) -> bool:
        return branch in self.branches()

    def read(self, branch: str, path: str) -> str:
        return self._git("show", f"{branch}:{path}")

    def files(self, branch: str) -> list[str]:
        return self._git("ls-tree", "-r", "--name-only", branch).splitlines()

    def commit(self, branch: str) -> dict[str, str]:
        fmt = "%H%n%an%n%ae%n%cn%n%ce%n%B"
        sha, an, ae, cn, ce, *body = self._git("log", "-1", f"--format={fmt}", branch).split("\n")
        return {"sha": sha, "author_name": an, "author_email": ae, "committer_name": cn,
                "committer_email": ce, "message": "\n".join(body).rstrip("\n")}

    def count(self, branch: str) -> int:
        return int(self._git("rev-list", "--count", branch).strip())

    def set_hook(self, name: str, script: str) -> None:
        """Install a server-side hook (e.g. pre-receive that refuses pushes)."""
        hook = self.path / "hooks" / name
        hook.write_text(script)
        hook.chmod(0o755)


def make_git_remote(root: Path, files: dict[str, str] | None = None, name: str = "remote.git",
                    branch: str = "main") -> GitRemote:
    bare = root / name
    work = root / (name + ".seed")
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
    git("init", "--quiet", f"--initial-branch={branch}", str(work))
    for rel, content in (SEED_FILES if files is None else files).items():
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", str(bare), f"HEAD:refs/heads/{branch}", cwd=work)
    return GitRemote(bare, branch)


@pytest.fixture
def git_remote_factory(tmp_path_factory):
    """Call with files={path: content} (default: the passing calc project)."""
    def make(files: dict[str, str] | None = None, branch: str = "main") -> GitRemote:
        return make_git_remote(tmp_path_factory.mktemp("git"), files, branch=branch)
    return make


@pytest.fixture
def git_remote(git_remote_factory) -> GitRemote:
    return git_remote_factory()
