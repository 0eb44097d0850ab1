"""Issue 12 item 2: agent.credentials reach each agent run through the SSH channel, and
nowhere else.

orch holds the values in its own environment; the job starter reads them from its stdin
and pipes them to job.sh, which exports them into each agent run only. The stand-in agent
reports a SHA-256 of each variable it got (its init event), never the value. While the job
runs, a sampler reads every process's argv on the host (this machine: the sshd hosts are on
loopback), with /proc and with `ps`, and the environment of the job's own shell; after it,
every file of the fleet (workspaces, mirrors) and of orch (state dir, log copies,
state.json) and everything orch printed is searched for the values.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchestrator.config.load import load_settings
from orchestrator.config.settings import Settings
from orchestrator.core.models import Host
from orchestrator.errors import UsageError
from orchestrator.job import credentials
from orchestrator.job.playbook import render_job
from orchestrator.transport.local import LocalConnection
from tests.helpers_job import init_event, make_issue, make_spec, wait_final

KEY = "sk-ant-api03-orchtest-" + secrets.token_hex(20)
OAUTH = "sk-ant-oat01-orchtest-" + secrets.token_hex(20)
CREDS = {"ANTHROPIC_API_KEY": "ORCH_TEST_AGENT_KEY", "CLAUDE_CODE_OAUTH_TOKEN": "ORCH_TEST_OAUTH"}


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Sampler(threading.Thread):
    """Reads every process's argv (/proc/PID/cmdline, and `ps -eww -o args=` now and then)
    until stopped, noting any that holds a secret; also the environment of the job's own
    shell (`sh ./job.sh`), which must not hold them either (only the agent's may)."""

    def __init__(self, *needles: str) -> None:
        super().__init__(daemon=True)
        self.needles = [n.encode() for n in needles]
        self.hits: list[str] = []
        self.samples = 0
        self.saw_agent = 0
        self.saw_job_shell = 0
        self.agent_env_had_key = 0
        self._done = threading.Event()

    def _check(self, what: str, data: bytes) -> None:
        if any(n in data for n in self.needles):
            self.hits.append(f"{what}: {data[:300]!r}")

    def sample(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            self._check(f"argv of {pid}", argv)
            words = argv.split(b"\0")
            if words[:2] == [b"sh", b"./job.sh"]:
                self.saw_job_shell += 1
                try:
                    self._check(f"environ of job shell {pid}", Path(f"/proc/{pid}/environ").read_bytes())
                except OSError:
                    pass
            elif any(w.endswith(b"orch-standin-agent") for w in words[:3]):
                self.saw_agent += 1
                try:
                    env = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                self.agent_env_had_key += self.needles[0] in env
        self.samples += 1

    def run(self) -> None:
        n = 0
        while not self._done.is_set():
            self.sample()
            if n % 10 == 0:
                ps = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True)
                self._check("ps -eww", ps.stdout)
            n += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self.join(30)


def _files_holding(roots: list[Path], needles: list[str]) -> list[str]:
    found = []
    raw = [n.encode() for n in needles]
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    data = path.read_bytes()
                except OSError:
                    continue      # a socket, a vanished file
                if any(n in data for n in raw):
                    found.append(str(path))
    return found


def test_every_agent_run_gets_the_credentials_and_nothing_else_sees_them(make_world, tmp_path):
    dump = tmp_path / "tests-env.txt"
    w = make_world(hosts=1, agent={"credentials": CREDS},
                   tests={"command": f"env > {dump}; python3 -m pytest -q", "max_fix_attempts": 1},
                   workspace={"keep_on_success": True})
    w.env_extra.update(ORCH_TEST_AGENT_KEY=KEY, ORCH_TEST_OAUTH=OAUTH)
    n = w.issue("Add greeting", "orch-standin: slow 0.4\norch-standin: turns 3\n"
                "orch-standin: write greet.txt hi\norch-standin: fail-first\n")
    sampler = Sampler(KEY, OAUTH)
    sampler.start()
    try:
        r = w.orch("dispatch", f"{w.repo}#{n}", "--json")
    finally:
        sampler.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "succeeded" and data["tests"] == "passed"
    assert len(w.github.pulls(w.repo)) == 1

    # The sampler really watched the run: the agent and the job's shell were seen.
    assert sampler.samples > 20 and sampler.saw_agent > 0 and sampler.saw_job_shell > 0
    assert sampler.hits == []
    assert sampler.agent_env_had_key > 0, "the agent's own environment holds the key"

    # Both agent runs (the first and the fix run) had both variables.
    log = (w.state_dir / "logs" / f"{data['task_id']}.log").read_text()
    inits = [json.loads(line) for line in log.splitlines()
             if line.startswith('{"type":"system","subtype":"init"')]
    assert len(inits) == 2
    for init in inits:
        assert init["credential_sha256"] == {"ANTHROPIC_API_KEY": _sha(KEY),
                                             "CLAUDE_CODE_OAUTH_TOKEN": _sha(OAUTH)}
        assert init["apiKeySource"] == "ANTHROPIC_API_KEY"
    # The test command did not get them.
    env = dump.read_text()
    assert "ANTHROPIC_API_KEY" not in env and "CLAUDE_CODE_OAUTH_TOKEN" not in env
    assert KEY not in env and OAUTH not in env

    # No file on the host or here, no output.
    assert Path(data["workspace"]).is_dir()
    assert _files_holding([w.fleet.root, w.root], [KEY, OAUTH]) == []
    assert KEY not in r.stdout + r.stderr and OAUTH not in r.stdout + r.stderr
    shown = w.orch("logs", data["task_id"])
    assert shown.returncode == 0 and KEY not in shown.stdout + shown.stderr


def test_a_missing_variable_is_refused_before_anything_naming_it(make_world):
    w = make_world(hosts=1, agent={"credentials": CREDS})
    w.env_extra.update(ORCH_TEST_AGENT_KEY=KEY)        # ORCH_TEST_OAUTH is not set
    n = w.issue("Add greeting", "orch-standin: write greet.txt hi\n")
    for args in (("dispatch", f"{w.repo}#{n}"), ("poll",)):
        r = w.orch(*args)
        assert r.returncode == 2, (args, r.stdout + r.stderr)
        assert "$ORCH_TEST_OAUTH is not set" in r.stderr and "CLAUDE_CODE_OAUTH_TOKEN" in r.stderr
        assert "hint:" in r.stderr
    assert w.tasks() == []
    assert w.github.comments(w.repo, n) == [] and w.github.count("POST") == 0


@pytest.mark.parametrize("old_setsid", [False, True], ids=["setsid-f", "old-setsid"])
def test_the_local_transport_hands_them_over_the_same_way(git_remote, tmp_path, monkeypatch,
                                                           old_setsid):
    """On a local host the starter is /bin/sh (dash here). With a util-linux older than
    2.31 (a `setsid` without -f, faked on PATH) the start falls back to a background
    job, whose stdin sh would make /dev/null: the credentials must still arrive."""
    import asyncio
    import shutil

    from orchestrator.job import remote

    if old_setsid:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "setsid").write_text(
            f'#!/bin/sh\n[ "$1" = -f ] && exit 1\nexec {shutil.which("setsid")} "$@"\n')
        (bin_dir / "setsid").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    conn = LocalConnection(Host(name="local", address="localhost", connection="local"))
    issue = make_issue("orch-standin: write hi.txt hi\n")
    spec = make_spec(tmp_path, git_remote.url, issue, credential_names=("ANTHROPIC_API_KEY",),
                     max_fix_attempts=0)
    creds = credentials.Credentials(("ANTHROPIC_API_KEY",), (KEY,))

    async def go() -> remote.JobStatus:
        await remote.start(conn, spec.workspace, render_job(spec), "orch-standin: write hi.txt hi\n",
                           "fix\n", credentials=creds)
        return await wait_final(conn, spec.workspace)
    st = asyncio.run(go())
    log = (Path(spec.workspace) / "job.log").read_text()
    assert st.state == "succeeded", log
    assert init_event(log)["credential_sha256"] == {"ANTHROPIC_API_KEY": _sha(KEY)}
    assert _files_holding([tmp_path], [KEY]) == []


# --------------------------------------------------------------------------- pure parts


def test_read_names_the_variable_and_never_shows_a_value():
    s = Settings()
    s.agent.credentials = {"ANTHROPIC_API_KEY": "MY_KEY"}
    with pytest.raises(UsageError) as exc:
        credentials.read(s, {})
    assert "$MY_KEY is not set" in exc.value.message and exc.value.exit_code == 2
    with pytest.raises(UsageError, match="line break"):
        credentials.read(s, {"MY_KEY": "a\nb"})
    got = credentials.read(s, {"MY_KEY": KEY})
    assert got.names == ("ANTHROPIC_API_KEY",) and got.values == (KEY,)
    assert KEY not in repr(got) and KEY not in str(got)
    assert not credentials.read(Settings(), {})


def test_job_sh_holds_the_names_only():
    s = Settings()
    s.agent.credentials = {"ANTHROPIC_API_KEY": "MY_KEY"}
    from orchestrator.job.playbook import JobSpec
    spec = JobSpec.from_settings(s, task_id="abcd1234", workspace="~/orch/abcd1234",
                                 clone_url="https://example.com/a/b.git", branch="orch/1-x",
                                 commit_message="x")
    assert spec.credential_names == ("ANTHROPIC_API_KEY",)
    job = render_job(spec)
    assert 'IFS= read -r ORCH_CRED_0 || ORCH_CRED_0=' in job
    assert 'ANTHROPIC_API_KEY="$ORCH_CRED_0" sh -c "$g_run"' in job


def test_config_reads_credentials(tmp_path):
    path = tmp_path / "orch.yml"
    path.write_text("agent:\n  credentials:\n    ANTHROPIC_API_KEY: MY_KEY\n")
    assert load_settings(path).agent.credentials == {"ANTHROPIC_API_KEY": "MY_KEY"}
