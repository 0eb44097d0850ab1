"""job/relay.py and forge/mirror.py on their own (git.via: orch), over a local connection:
what a host sends back is checked, a delivery repeated changes nothing, and a forge
branch name a shell would read is only ever data.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from orchestrator.core.models import Host
from orchestrator.forge.mirror import CentralMirror, DeliveryRefused
from orchestrator.job import relay
from orchestrator.transport.local import LocalConnection
from tests.fixtures_git import git

CONN = LocalConnection(Host(name="local", address="localhost", connection="local"))


def _job_commit(host_mirror: Path, tmp: Path, branch: str, text: str) -> str:
    """What a job does in git.via: orch: clone the host's mirror, commit, push into it."""
    wt = tmp / f"wt-{text}"
    git("clone", "-q", str(host_mirror), str(wt))
    (wt / "job.txt").write_text(text)
    git("add", "-A", cwd=wt)
    git("-c", "user.name=j", "-c", "user.email=j@x", "commit", "-q", "-m", text, cwd=wt)
    git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=wt)
    return git("rev-parse", "HEAD", cwd=wt).strip()


def _send(central: CentralMirror, host_mirror: Path, branch: str, task_id: str) -> None:
    asyncio.run(relay.send_base(CONN, central, str(host_mirror), branch=branch, task_id=task_id))


def _back(central: CentralMirror, host_mirror: Path, branch: str, commit: str, task_id: str) -> None:
    asyncio.run(relay.bring_back(CONN, central, str(host_mirror), branch, commit, task_id=task_id))


@pytest.fixture
def ends(git_remote, tmp_path):
    central = CentralMirror(tmp_path / "state", "acme/calc", git_remote.url, None)
    host_mirror = tmp_path / "ws" / ".mirrors" / "calc.git"
    _send(central, host_mirror, "orch/1-x", "task1")
    return central, host_mirror


def test_the_base_arrives_with_head_and_the_branch_comes_back(ends, git_remote, tmp_path):
    central, host_mirror = ends
    assert git("-C", str(host_mirror), "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git("-C", str(host_mirror), "rev-parse", "main").strip() == git_remote.commit("main")["sha"]
    sha = _job_commit(host_mirror, tmp_path, "orch/1-x", "one")
    _back(central, host_mirror, "orch/1-x", sha, "task1")
    assert git_remote.commit("orch/1-x")["sha"] == sha
    # Again (a finalize repeated after a crash): nothing new to fetch, nor to push.
    _back(central, host_mirror, "orch/1-x", sha, "task1")
    assert git_remote.commit("orch/1-x")["sha"] == sha
    # A re-run (another task) rebuilds the branch from the base: it replaces orch's own.
    _send(central, host_mirror, "orch/1-x", "task2")
    again = _job_commit(host_mirror, tmp_path, "orch/1-x", "two")
    _back(central, host_mirror, "orch/1-x", again, "task2")
    assert git_remote.commit("orch/1-x")["sha"] == again
    # Central mirror and lock are private to orch.
    assert (central.path.parent.stat().st_mode & 0o777) == 0o700


def test_a_branch_whose_tip_is_not_the_status_commit_is_not_delivered(ends, git_remote, tmp_path):
    central, host_mirror = ends
    _send(central, host_mirror, "orch/2-x", "t2a")
    first = _job_commit(host_mirror, tmp_path, "orch/2-x", "first")
    _back(central, host_mirror, "orch/2-x", first, "t2a")
    # A later run pushes another commit, and its status names one orch already has (the
    # base) or one nobody has: the branch's tip is neither, so nothing is delivered, and
    # the forge keeps the first run's commit.
    _send(central, host_mirror, "orch/2-x", "t2b")
    _job_commit(host_mirror, tmp_path, "orch/2-x", "second")
    for claimed in (git_remote.commit("main")["sha"], "0" * 40):
        with pytest.raises(DeliveryRefused, match="not"):
            _back(central, host_mirror, "orch/2-x", claimed, "t2b")
        assert git_remote.commit("orch/2-x")["sha"] == first
    with pytest.raises(DeliveryRefused, match="no commit to bring back"):
        _back(central, host_mirror, "orch/2-x; rm -rf /", first, "t2b")


def test_a_commit_someone_pushed_to_the_branch_meanwhile_is_never_overwritten(
        ends, git_remote, tmp_path):
    central, host_mirror = ends
    _back(central, host_mirror, "orch/1-x", _job_commit(host_mirror, tmp_path, "orch/1-x", "a"),
          "task1")
    _send(central, host_mirror, "orch/1-x", "follow")      # a run on top of the branch
    ours = _job_commit(host_mirror, tmp_path, "orch/1-x", "ours")
    # While the job ran, a person pushed to the branch on the forge.
    person = tmp_path / "person"
    git("clone", "-q", "-b", "orch/1-x", git_remote.url, str(person))
    (person / "theirs.txt").write_text("theirs")
    git("add", "-A", cwd=person)
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", "theirs", cwd=person)
    git("push", "-q", "origin", "orch/1-x", cwd=person)
    theirs = git("rev-parse", "HEAD", cwd=person).strip()
    with pytest.raises(DeliveryRefused, match="someone pushed to orch/1-x"):
        _back(central, host_mirror, "orch/1-x", ours, "follow")
    assert git_remote.commit("orch/1-x")["sha"] == theirs


def test_a_forge_branch_named_like_shell_is_data(git_remote, tmp_path):
    hostile = "x$(touch${IFS}pwned)`touch${IFS}pwned2`'\""
    src = tmp_path / "src"
    git("clone", "-q", git_remote.url, str(src))
    git("push", "-q", "origin", f"main:refs/heads/{hostile}", cwd=src)
    central = CentralMirror(tmp_path / "state", "acme/calc", git_remote.url, None)
    host_mirror = tmp_path / "ws" / ".mirrors" / "calc.git"
    _send(central, host_mirror, "orch/3-x", "task3")
    refs = git("-C", str(host_mirror), "for-each-ref", "--format=%(refname)")
    assert f"refs/heads/{hostile}" in refs.splitlines()
    assert not list(Path.home().glob("pwned*")) and not list(tmp_path.rglob("pwned*"))
    out = subprocess.run(["git", "-C", str(host_mirror), "fsck", "--no-progress"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
