"""A whole orch world for end-to-end tests: real sshd hosts, a real git remote, the test
GitHub server, and the real `orch` CLI run as a subprocess.

    def test_e2e(make_world):
        w = make_world(hosts=3, specialties={"h1": ["backend"], "h2": ["frontend"]})
        n = w.issue("Add hello", "orch-standin: write hello.txt hi")
        r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
        assert r.returncode == 0, r.stderr
        assert w.remote.read("orch/1-add-hello", "hello.txt") == "hi\\n"

Every host runs the stand-in agent (orchestrator/demo/standin_agent.py) by absolute path.
As root (CI) the config sets agent.allow_root: true, as a real root user would have to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STANDIN = str(Path(sys.executable).parent / "orch-standin-agent")
REPO = "octo/app"


@dataclass
class World:
    root: Path
    fleet: Any                 # tests.fixtures_ssh.SSHFleet
    github: Any                # tests.ghserver.GitHubServer
    remote: Any                # tests.fixtures_git.GitRemote
    token: str
    config: Path
    inventory: Path
    state_dir: Path
    repo: str = REPO
    env_extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env.update(GITHUB_TOKEN=self.token, ORCH_HOME=str(self.state_dir),
                   ORCH_CONFIG=str(self.config), ORCH_INVENTORY=str(self.inventory),
                   COLUMNS="200", NO_COLOR="1")
        env.update(self.env_extra)
        return env

    def orch(self, *args: str, timeout: float = 180, check: bool = False
             ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.root)
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def orch_json(self, *args: str, **kw: Any) -> Any:
        proc = self.orch(*args, "--json", **kw)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"orch {' '.join(args)} --json printed no JSON "
                                 f"(rc {proc.returncode})\nstdout:\n{proc.stdout}\n"
                                 f"stderr:\n{proc.stderr}") from None

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, cwd=self.root)

    def issue(self, title: str, body: str = "", *, labels: tuple[str, ...] = ("orch",),
              user: str = "alice") -> int:
        return self.github.add_issue(self.repo, title, body=body, labels=list(labels), user=user)

    def tasks(self) -> list[dict[str, Any]]:
        return self.orch_json("tasks")

    def write_config(self, **sections: Any) -> None:
        """Rewrite orch.yml with these sections merged over the world's defaults."""
        base = _config_sections(self.github.url, self.root, self.fleet, self.remote.url)
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key].update(value)
            else:
                base[key] = value
        self.fleet.write_config(self.config, **base)


def _config_sections(github_url: str, root: Path, fleet: Any, clone_url: str) -> dict[str, Any]:
    agent: dict[str, Any] = {"command": STANDIN, "timeout": "2m", "max_turns": 20}
    if os.geteuid() == 0:
        agent["allow_root"] = True
    return {"github": {"url": github_url, "timeout": 5, "retries": 3},
            "repos": [REPO], "repo_urls": {REPO: clone_url}, "agent": agent,
            "git": {"author": "orch-bot <orch-bot@example.com>"},
            "tests": {"max_fix_attempts": 2},
            "poll": {"lost_after": "5s", "max_attempts": 3}}


@pytest.fixture
def make_world(make_ssh_fleet, github_server, github_token, git_remote_factory,
               tmp_path) -> Iterator[Callable[..., World]]:
    """make_world(hosts=3, specialties={name: [...]}, max_tasks=2, **config_sections);
    homes=True gives each host a HOME of its own (tests/fixtures_ssh.py)."""
    def make(hosts: int = 3, specialties: dict[str, list[str]] | None = None,
             max_tasks: int = 2, files: dict[str, str] | None = None, homes: bool = False,
             **sections: Any) -> World:
        fleet = make_ssh_fleet(hosts, homes=homes)
        remote = git_remote_factory(files)
        github_server.add_repo(REPO, clone_url=remote.url, default_branch=remote.default_branch)
        for user, perm in (("alice", "write"), ("mallory", "read")):
            github_server.set_permission(REPO, user, perm)
        root = tmp_path / "world"
        root.mkdir(exist_ok=True)
        spec = specialties or {}
        extra = {name: {"specialties": spec.get(name, ["backend", "frontend", "testing",
                                                        "devops", "general"])}
                 for name in fleet.names}
        inventory = fleet.write_inventory(root / "hosts.yml", agent=STANDIN,
                                          max_tasks=max_tasks, extra=extra)
        world = World(root=root, fleet=fleet, github=github_server, remote=remote,
                      token=github_token, config=root / "orch.yml", inventory=inventory,
                      state_dir=root / "state")
        world.write_config(**sections)
        return world
    yield make
