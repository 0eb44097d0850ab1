"""Dispatch overhead: one `orch dispatch` on one sshd host against the same work by hand.

    python bench/dispatch.py [--runs 5] [--before DIR]

One loopback sshd host, a bare git remote, the test GitHub server (tests/ghserver.py, the
real PyGithub against it). The agent is a 4-line sh script (reads its prompt on stdin,
writes a file, prints a result event); the tests command is `--tests` (default `true`,
the same in both). Timed, whole processes, alternating:

  orch dispatch        `orch dispatch octo/app#N --json` (follows the job to its end: PR,
                       comment, labels)
  hand-written         bench/dispatch_baseline.py: one SSH round trip running clone,
                       branch, agent, tests, commit, push; then PyGithub create_pull and
                       one comment

and once, counted (bench/dispatch_count.py, the CLI in-process): SSH connections and round
trips by phase, state writes by the lifecycle call that made them, GitHub API requests.
Target (issue 10): orch within 1.15x of the hand-written baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.table import Row, log, print_rows, ratio_to, summarize, tool_env  # noqa: E402

GH_REPO = "octo/app"
AGENT = """#!/bin/sh
cat > /dev/null
echo "changed by the bench agent" > BENCH.txt
echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"total_cost_usd":0.01,"result":"done"}'
"""


class DispatchWorld:
    """The fleet's first host (its login user: see bench/README.md), a git remote that
    user can push to, the GitHub server, orch's config."""

    def __init__(self, root: Path, fleet, tests: str = "true") -> None:
        from tests.fixtures_git import make_git_remote
        from tests.ghserver import GitHubServer
        self.root = root
        self.tests = tests
        self.fleet = fleet
        self.host = fleet.hosts[0]
        self.remote = make_git_remote(root / "git")
        # The login user clones and pushes; the GitHub server (this user) reads it.
        subprocess.run(["git", "-C", str(self.remote.path), "config", "core.sharedRepository",
                        "world"], check=True)
        subprocess.run(["chmod", "-R", "a+rwX", str(root / "git")], check=True)
        os.chmod(root, 0o711)
        trust_repositories(fleet.user)
        self.gh = GitHubServer().start()
        self.gh.add_repo(GH_REPO, clone_url=self.remote.url, default_branch="main")
        self.gh.set_permission(GH_REPO, "alice", "write")
        self.agent = root / "agent.sh"
        self.agent.write_text(AGENT)
        self.agent.chmod(0o755)
        self.inventory = fleet.write_inventory(root / "hosts.yml", [self.host.name],
                                               agent=str(self.agent))
        agent = {"command": str(self.agent), "timeout": "2m"}
        if fleet.user == "root":
            agent["allow_root"] = True
        self.config = fleet.write_config(
            root / "orch.yml", github={"url": self.gh.url, "timeout": 10, "retries": 2},
            repos=[GH_REPO], repo_urls={GH_REPO: self.remote.url}, agent=agent,
            tests={"command": tests, "max_fix_attempts": 0, "timeout": "60s"},
            git={"author": "orch-bot <orch-bot@example.com>"}, state_dir=str(root / "state"))

    def env(self) -> dict[str, str]:
        env = tool_env(self.root)
        env["GITHUB_TOKEN"] = self.gh.token
        return env

    def issue(self, title: str) -> int:
        return self.gh.add_issue(GH_REPO, title, body="Write BENCH.txt.", labels=["orch"],
                                 user="alice")

    def orch_args(self, number: int) -> list[str]:
        return ["--config", str(self.config), "--inventory", str(self.inventory),
                "--state-dir", str(self.root / "state"), "dispatch", f"{GH_REPO}#{number}",
                "--json"]

    def sshd_counts(self) -> Counter[str]:
        text = self.host.log_path.read_text(errors="replace")
        return Counter(connections=len(re.findall(r"Accepted publickey for", text)),
                       sessions=len(re.findall(r"Starting session: ", text)))

    def close(self) -> None:
        self.gh.stop()


def t_orch(w: DispatchWorld, run: int, tree: Path | None) -> dict:
    n = w.issue(f"Bench dispatch {run} {time.time_ns()}")
    orch = [str(tree / ".venv" / "bin" / "orch")] if tree else [str(Path(sys.executable).parent / "orch")]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(orch + w.orch_args(n), env=w.env(), cwd=w.root, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=180)
    except subprocess.TimeoutExpired:
        return {"wall": 180.0, "ok": False, "detail": "timed out"}
    wall = time.perf_counter() - t0
    ok = p.returncode == 0 and json.loads(p.stdout or "{}").get("status") == "succeeded"
    return {"wall": wall, "ok": ok, "detail": "" if ok else p.stderr[-400:]}


def t_baseline(w: DispatchWorld, run: int) -> dict:
    n = w.issue(f"Bench baseline {run} {time.time_ns()}")
    spec = {"host": w.host.address, "port": w.host.port, "user": w.fleet.user,
            "client_key": str(w.fleet.client_key), "known_hosts": str(w.fleet.known_hosts),
            "clone_url": w.remote.url, "branch": f"hand/{n}-bench", "agent": str(w.agent),
            "tests": w.tests, "github_url": w.gh.url, "token": w.gh.token, "repo": GH_REPO,
            "issue": n, "title": f"Bench baseline {n}"}
    path = w.root / f"baseline-{n}.json"
    path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(BENCH / "dispatch_baseline.py"), str(path)],
                       env=w.env(), cwd=w.root, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=300)
    wall = time.perf_counter() - t0
    ok = p.returncode == 0 and w.remote.has_branch(spec["branch"])
    return {"wall": wall, "ok": ok, "detail": "" if ok else p.stderr[-400:]}


def count(w: DispatchWorld, python: str, label: str) -> dict:
    """One dispatch, counted: the CLI in-process under bench/dispatch_count.py."""
    n = w.issue(f"Bench counted {label} {time.time_ns()}")
    before_gh = len(w.gh.requests_matching())
    before_sshd = w.sshd_counts()
    try:
        p = subprocess.run([python, str(BENCH / "dispatch_count.py"), *w.orch_args(n)],
                           env=w.env(), cwd=w.root, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=180)
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        log(f"  counting {label} failed: {exc}")
        return {"label": label, "failed": True}
    time.sleep(0.5)   # sshd logs the last session as it closes
    out["sshd"] = dict(w.sshd_counts() - before_sshd)
    gh = w.gh.requests_matching()[before_gh:]
    out["github"] = dict(Counter(f"{r.method} {re.sub(r'/[0-9]+', '/N', r.path)}" for r in gh))
    out["label"] = label
    return out


def run(runs: int, before: Path | None = None, tests: str = "true", fleet=None
        ) -> tuple[list[dict], list[dict]]:
    """Samples and counts; on `fleet`'s first host (else a fleet of one host of its own)."""
    from bench.hosts_fanout import Setup
    samples: list[dict] = []
    counts: list[dict] = []
    own = None
    if fleet is None:
        own = Setup(1, bench_user(), None)
        fleet = own.fleet
    with tempfile.TemporaryDirectory(prefix="orch-bench-dispatch-") as tmp:
        w = DispatchWorld(Path(tmp), fleet, tests)
        try:
            counts.append(count(w, sys.executable, "orch"))
            if before is not None:
                counts.append(count(w, str(before / ".venv" / "bin" / "python"), "before"))
            tools = [("orch", lambda i: t_orch(w, i, None)), ("baseline", lambda i: t_baseline(w, i))]
            if before is not None:
                tools.append(("before", lambda i: t_orch(w, i, before)))
            for _name, fn in tools:        # warm-up: page cache, bytecode, git's mirror
                fn(-1)
            for i in range(runs):
                line = []
                for name, fn in tools[i % len(tools):] + tools[:i % len(tools)]:
                    r = fn(i)
                    samples.append({"group": "dispatch", "tool": name, "n": 1, "run": i, **r})
                    line.append(f"{name} {r['wall']:.2f}" + ("" if r["ok"] else " FAILED"))
                    if not r["ok"]:
                        log(f"  {name} failed: {r['detail']}")
                log(f"dispatch run {i + 1}/{runs}: " + ", ".join(line))
        finally:
            w.close()
            if own is not None:
                own.close(keep=False)
    return samples, counts


def trust_repositories(user: str) -> None:
    """git refuses a repository owned by another user ("dubious ownership"): the benchmark
    login user (made for the benchmark alone) trusts the ones this benchmark makes."""
    import pwd
    home = Path(pwd.getpwnam(user).pw_dir)
    if user == "root" or not home.is_dir():
        return
    cfg = home / ".gitconfig"
    if "directory = *" not in (cfg.read_text() if cfg.exists() else ""):
        with cfg.open("a") as fh:
            fh.write("[safe]\n\tdirectory = *\n")
        os.chown(cfg, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)


def bench_user() -> str | None:
    """The benchmark's login user (/bin/sh, no rc files) when root, else this user."""
    from bench.hosts_fanout import ensure_bench_user
    return ensure_bench_user() if os.geteuid() == 0 else None


LABELS = {"orch": "orch dispatch (1 host, trivial job)", "baseline": "  hand-written: 1 ssh + PyGithub",
          "before": "orch dispatch, before/"}


def rows(samples: list[dict]) -> list[Row]:
    out = summarize(samples, label=lambda t: LABELS[t])
    ratio_to(out, "orch")
    return out


def print_counts(counts: list[dict], file=None) -> None:
    for c in counts:
        if c.get("failed"):
            print(f"one dispatch, {c['label']}: counting failed", file=file)
            continue
        print(f"one dispatch, {c['label']}: {c['connections']} SSH connection(s), "
              f"{c['round_trips']} round trips ({', '.join(f'{k} {v}' for k, v in sorted(c['ssh'].items()))}); "
              f"sshd saw {c['sshd'].get('connections', 0)} connection(s), "
              f"{c['sshd'].get('sessions', 0)} sessions", file=file)
        print(f"  {len(c['writes'])} state writes:", file=file)
        for what, n in Counter(c["writes"]).items():
            print(f"    {n} x {what}", file=file)
        print(f"  {sum(c['github'].values())} GitHub requests: "
              + ", ".join(f"{v} {k}" for k, v in sorted(c["github"].items())), file=file)
    print("  hand-written: 1 SSH connection, 1 round trip, 0 state writes, "
          "GitHub: GET repo, POST pulls, GET issue, POST comment", file=file)


def targets(table: list[Row]) -> list[str]:
    mine = [r for r in table if r.group == "dispatch" and r.runs]
    base = next((r for r in mine if r.tool == "baseline"), None)
    orch = next((r for r in mine if r.tool == "orch"), None)
    if not base or not orch:
        return []
    v = orch.median / base.median
    return [f"{'MET ' if v <= 1.15 else 'MISS'}  dispatch {v:.2f}x the hand-written baseline "
            f"(<= 1.15x)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, metavar="DIR")
    ap.add_argument("--tests", default="true", help="the tests command of both (default true)")
    a = ap.parse_args(argv)
    samples, counts = run(a.runs, a.before, a.tests)
    table = rows(samples)
    print_rows(table)
    print()
    print_counts(counts)
    print()
    for line in targets(table):
        print(line)
    return 0 if all(r.runs for r in table) else 1


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
