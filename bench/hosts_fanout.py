"""Fan-out benchmark: `orch hosts` against Ansible, parallel `ssh` and a bare asyncssh floor.

    python bench/hosts_fanout.py [--hosts 10,50] [--runs 5] [--tools ...] [--login-user bench|self]

Starts N loopback OpenSSH sshd hosts (tests/fixtures_ssh.py, the test suite's own fleet:
127.0.1.N, own host keys, one known_hosts, one client key, one ssh_config), then times
each tool as a whole process, cold (new connections every run), several runs each, in a
rotating order so that slow drift on the machine spreads over every tool:

  orch          `orch hosts --json` (the real CLI, a subprocess; import time included)
  orch-probe    `Fleet.probe()` in this process (no import, no config load): the SSH part
  ansible       `ansible all -m command -a 'cat /proc/loadavg' -f N`, host key checking on
  ssh           N parallel OpenSSH `ssh` processes, `cat /proc/loadavg`, StrictHostKeyChecking=yes
  floor         bench/asyncssh_floor.py: connect to every host, `cat /proc/loadavg`, exit
diagnostics (also run by default; they explain the gaps, they are not targets):
  floor-probe   the floor script running orch's probe script (`sh -s`) instead of `cat`:
                the same remote work as `orch hosts`, which on loopback shares this CPU
  ssh-c25519    `ssh` x N with KexAlgorithms=curve25519-sha256 (asyncssh's choice here)

Every tool verifies host keys against the same known_hosts, logs in with the same key, as
the same user, and must report every host, or the run counts as failed. Prints a table
(median, min, max, ratio to orch, client and server CPU) and writes bench/results/<ts>.json.
See bench/README.md for the conditions and why they were chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import pwd
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.fixtures_ssh import SSHFleet, _make_root  # noqa: E402  (the test suite's fleet)

ANSIBLE_VENV = BENCH / ".venv-ansible"
PYINFRA_VENV = BENCH / ".venv-pyinfra"
PSSH_VENV = BENCH / ".venv-pssh"
RESULTS = BENCH / "results"
BENCH_USER = "orchbench"
TICK = os.sysconf("SC_CLK_TCK")
LOADAVG = re.compile(r"\d+\.\d+ \d+\.\d+ \d+\.\d+ \d+/\d+ \d+")
ALL_TOOLS = ("orch", "orch-probe", "ansible", "ansible-raw", "pyinfra", "pssh", "ssh", "floor",
             "floor-probe", "ssh-c25519")
DEFAULT_TOOLS = ALL_TOOLS
LABELS = {
    "orch": "orch hosts --json",
    "orch-probe": "  Fleet.probe() in-process",
    "ansible": "ansible -m command -f N",
    "ansible-raw": "ansible -m raw, CP warm",
    "pyinfra": "pyinfra exec",
    "pssh": "parallel-ssh (no hostkey check)",
    "ssh": "ssh x N (parallel)",
    "ssh-c25519": "  ssh x N, curve25519 kex",
    "floor": "bare asyncssh (floor)",
    "floor-probe": "  floor + orch's probe script",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- setup ---------------------------------------------------------------------------------

PEERS = {"ansible": ("ansible-core", "ansible"), "pyinfra": ("pyinfra", "pyinfra"),
         "pssh": ("parallel-ssh", "python")}


def ensure_peer(name: str) -> Path:
    """A peer tool in bench/.venv-NAME (created on first run; never a project dependency):
    the path of its command."""
    package, command = PEERS[name]
    venv = BENCH / f".venv-{name}"
    exe = venv / "bin" / command
    if not (venv / "bin" / "pip").exists() or not _installed(venv, package):
        log(f"installing {package} into {venv} (first run only)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", package], check=True)
    return exe


def _installed(venv: Path, package: str) -> bool:
    return subprocess.run([str(venv / "bin" / "pip"), "show", "-q", package],
                          capture_output=True).returncode == 0


def ensure_ansible() -> Path:
    return ensure_peer("ansible")


def ensure_bench_user() -> str:
    """A dedicated account whose login shell is /bin/sh (dash) with no rc files, so that a
    session costs what sshd + the command cost, not what a developer's ~/.bashrc costs.
    Created once (root only); remove with `userdel -r orchbench`."""
    try:
        pw = pwd.getpwnam(BENCH_USER)
    except KeyError:
        log(f"creating user {BENCH_USER} (login shell /bin/sh) for the benchmark sshd hosts")
        # -p '*': no password, but not "locked" ('!'), which sshd refuses without PAM.
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir",
                        f"/var/lib/{BENCH_USER}", "--shell", "/bin/sh", "-p", "*", BENCH_USER],
                       check=True)
        pw = pwd.getpwnam(BENCH_USER)
    if pw.pw_shell != "/bin/sh":
        raise SystemExit(f"user {BENCH_USER} exists with shell {pw.pw_shell}, expected /bin/sh")
    return BENCH_USER


def orch_command() -> list[str]:
    script = Path(sys.executable).parent / "orch"  # the console script, not a pyenv shim
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]


def tool_env(root: Path) -> dict[str, str]:
    """One environment for every tool: no ssh-agent (keys come from files only), no
    ORCH_* leaking in, and Python bytecode cached (this sandbox sets
    PYTHONDONTWRITEBYTECODE=1, which a normal install does not: every run would then
    recompile every module, orch's and Ansible's alike)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCH_", "SSH_AUTH_SOCK", "SSH_AGENT", "ANSIBLE_"))
           and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


class Setup:
    """The fleet plus every file each tool needs, for the largest N (smaller N use the
    first hosts)."""

    def __init__(self, n_max: int, user: str | None, agent: str | None) -> None:
        self.root = _make_root("bench")
        self.fleet = SSHFleet(self.root, n_max, user=user)
        os.chmod(self.root, 0o711)  # the login user reads authorized_keys, runs the agent stub
        os.chmod(self.fleet.authorized_keys, 0o644)
        pw = pwd.getpwnam(self.fleet.user)
        self.fleet.workspace_base.mkdir(mode=0o755, exist_ok=True)
        for name in self.fleet.names:  # the probe then sees a real, empty workspace
            ws = Path(self.fleet.workspace_root(name))
            ws.mkdir(exist_ok=True)
            os.chown(ws, pw.pw_uid, pw.pw_gid)
        if agent is None:
            # `claude --version` stand-in: on a real fleet each host spends its own CPU on
            # it; here 50 node startups would share these 2 cores and measure node.
            bindir = self.root / "bin"
            bindir.mkdir(mode=0o755)
            agent = str(bindir / "claude")
            Path(agent).write_text("#!/bin/sh\necho '2.1.197 (Claude Code)'\n")
            os.chmod(agent, 0o755)
        self.agent = agent
        self.env = tool_env(self.root)
        (self.root / "state").mkdir()
        (self.root / "ansible-home").mkdir()
        (self.root / "ansible.cfg").write_text("")

    def names(self, n: int) -> list[str]:
        return self.fleet.names[:n]

    def files(self, n: int) -> dict[str, Path]:
        d = self.root / f"n{n}"
        if d.exists():
            return {k: d / v for k, v in FILES.items()}
        d.mkdir()
        names = self.names(n)
        f = self.fleet
        f.write_inventory(d / "hosts.yml", names, agent=self.agent)
        f.write_config(d / "orch.yml", state_dir=str(self.root / "state"))
        (d / "ansible.ini").write_text(
            "[all:vars]\n"
            f"ansible_ssh_common_args=-F {f.ssh_config} -o StrictHostKeyChecking=yes\n"
            "[fleet]\n" + "".join(f"{name}\n" for name in names))
        (d / "pyinfra_inventory.py").write_text("hosts = " + repr([
            (h.name, {"ssh_hostname": h.address, "ssh_port": h.port, "ssh_user": f.user,
                      "ssh_key": str(f.client_key), "ssh_known_hosts_file": str(f.known_hosts),
                      "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
                      "ssh_look_for_keys": False})
            for h in f.hosts[:n]]) + "\n")
        (d / "targets.json").write_text(json.dumps({
            "known_hosts": str(f.known_hosts), "client_key": str(f.client_key), "user": f.user,
            "hosts": [[h.name, h.address, h.port] for h in f.hosts[:n]]}))
        # The same probe script `orch hosts` sends each host, rendered by orch itself.
        from orchestrator.app import App
        from orchestrator.fleet.facts import PROBE_COMMAND, probe_script
        app = App(config_path=str(d / "orch.yml"), inventory_path=str(d / "hosts.yml"),
                  state_dir=str(self.root / "state"))
        targets = json.loads((d / "targets.json").read_text())
        targets.update(command=PROBE_COMMAND,
                       inputs={h.name: probe_script(h, app.settings) for h in app.hosts})
        (d / "targets-probe.json").write_text(json.dumps(targets))
        return {k: d / v for k, v in FILES.items()}

    def close(self, keep: bool) -> None:
        self.fleet.close()
        if keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


FILES = {"inventory": "hosts.yml", "config": "orch.yml", "ansible": "ansible.ini",
         "targets": "targets.json", "targets_probe": "targets-probe.json",
         "pyinfra": "pyinfra_inventory.py"}


# -- measuring -----------------------------------------------------------------------------

def _proc_table() -> dict[int, int]:
    """pid -> ppid, one pass over /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    out[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def server_cpu(setup: Setup) -> float:
    """CPU seconds used by every finished SSH session so far: the listeners' reaped
    children (cutime + cstime cover the whole per-connection sshd tree and the shell)."""
    total = 0
    for h in setup.fleet.hosts:
        if h.pid is not None:
            with open(f"/proc/{h.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def wait_idle(setup: Setup, timeout: float = 15.0) -> bool:
    """Until no sshd has a session left (so one tool's stragglers neither load the next
    tool's run nor land in its server CPU)."""
    listeners = {h.pid for h in setup.fleet.hosts if h.pid is not None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not listeners & set(_proc_table().values()):
            return True
        time.sleep(0.05)
    return False


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Result:
    def __init__(self, wall: float, client_cpu: float | None, ok: bool, detail: str = "") -> None:
        self.wall, self.client_cpu, self.ok, self.detail = wall, client_cpu, ok, detail
        self.server_cpu: float | None = None


def run_process(cmd: list[str], env: dict[str, str], cwd: Path, check) -> Result:
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    ok, detail = check(p)
    if not ok:
        detail = f"{detail}; exit {p.returncode}; stderr: {p.stderr.strip()[-600:]}"
    return Result(wall, cpu, ok, detail)


def count_loadavg(text: str) -> int:
    return sum(1 for line in text.splitlines() if LOADAVG.search(line))


def t_orch(setup: Setup, n: int, tree: str | None = None) -> Result:
    fs = setup.files(n)
    cmd = orch_command() + ["--config", str(fs["config"]), "--inventory", str(fs["inventory"]),
                            "--state-dir", str(setup.root / "state"), "hosts", "--json"]

    def check(p):
        try:
            rows = json.loads(p.stdout)
        except ValueError:
            return False, f"not JSON: {p.stdout[:200]!r}"
        good = [r for r in rows if r["reachable"] and not r["error"] and r["load1"] is not None
                and r["cpus"] and r["agent_version"] and r.get("disk_free_mb") is not None
                and r.get("mem_total_mb")]
        bad = [r for r in rows if r not in good]
        return (len(good) == n and p.returncode == 0,
                f"{len(good)}/{n} complete" + (f"; first bad: {bad[0]}" if bad else ""))

    env = setup.env
    if tree:  # another checkout's orchestrator/ wins over the installed one
        env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")])))
    return run_process(cmd, env, setup.root, check)


ALT_TREE: str | None = None


def t_orch_alt(setup: Setup, n: int) -> Result:
    return t_orch(setup, n, ALT_TREE)


_app_cache: dict[int, tuple] = {}


def t_orch_probe(setup: Setup, n: int) -> Result:
    """Fleet.probe() alone, in this process: the same config and inventory files, loaded
    once through orch's own loaders (outside the timing), a fresh event loop and fresh
    connections every run."""
    from orchestrator.app import App
    from orchestrator.fleet.pool import Fleet
    if n not in _app_cache:
        fs = setup.files(n)
        app = App(config_path=str(fs["config"]), inventory_path=str(fs["inventory"]),
                  state_dir=str(setup.root / "state"))
        _app_cache[n] = (app.hosts, app.settings)
    hosts, settings = _app_cache[n]

    async def go():
        async with Fleet(hosts, settings) as fleet:
            return await fleet.probe()

    cpu0 = self_cpu()
    t0 = time.perf_counter()
    facts = asyncio.run(go())
    wall = time.perf_counter() - t0
    cpu = self_cpu() - cpu0
    good = [f for f in facts if f.reachable and not f.error and f.agent_version]
    return Result(wall, cpu, len(good) == n, f"{len(good)}/{n} complete")


def t_ansible(setup: Setup, n: int) -> Result:
    fs = setup.files(n)
    cp_dir = Path(setup.root / "ansible-cp")
    shutil.rmtree(cp_dir, ignore_errors=True)
    cp_dir.mkdir()
    env = dict(setup.env)
    env.update({
        "ANSIBLE_HOME": str(setup.root / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(setup.root / "ansible-home" / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),  # fresh: no master left from a prior run
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(setup.root / "ansible.cfg"),  # empty: Ansible's defaults
    })
    cmd = [str(ANSIBLE_VENV / "bin" / "ansible"), "all", "-i", str(fs["ansible"]),
           "-m", "command", "-a", "cat /proc/loadavg", "-f", str(n), "-o"]

    def check(p):
        done = sum(1 for line in p.stdout.splitlines()
                   if "| CHANGED |" in line and LOADAVG.search(line))
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    try:
        return run_process(cmd, env, setup.root, check)
    finally:
        # Ansible leaves ControlPersist masters behind (60 s): end them so that the next
        # run is cold too and their sessions don't load the next tool's run.
        for sock in cp_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)


def _ansible_env(setup: Setup, cp_dir: Path) -> dict[str, str]:
    env = dict(setup.env)
    env.update({
        "ANSIBLE_HOME": str(setup.root / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(setup.root / "ansible-home" / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(setup.root / "ansible.cfg"),  # empty: Ansible's defaults
    })
    return env


def t_ansible_raw(setup: Setup, n: int) -> Result:
    """`-m raw` (no Python module shipped, no interpreter discovery) over ControlPersist
    masters opened by an untimed run just before: the best case of Ansible's SSH, the
    timed run reuses the N open connections. The masters are ended afterwards, so that
    their open sessions neither load nor delay the next tool's run."""
    fs = setup.files(n)
    cp_dir = setup.root / "ansible-cp-warm"
    shutil.rmtree(cp_dir, ignore_errors=True)
    cp_dir.mkdir()
    cmd = [str(ANSIBLE_VENV / "bin" / "ansible"), "all", "-i", str(fs["ansible"]),
           "-m", "raw", "-a", "cat /proc/loadavg", "-f", str(n), "-o"]

    def check(p):
        done = sum(1 for line in p.stdout.splitlines() if LOADAVG.search(line))
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    env = _ansible_env(setup, cp_dir)
    try:
        subprocess.run(cmd, env=env, cwd=setup.root, capture_output=True,
                       stdin=subprocess.DEVNULL)       # opens the masters, untimed
        return run_process(cmd, env, setup.root, check)
    finally:
        end_ansible_masters(setup)


def end_ansible_masters(setup: Setup) -> None:
    for cp_dir in setup.root.glob("ansible-cp*"):
        for sock in cp_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)


def t_pyinfra(setup: Setup, n: int) -> Result:
    fs = setup.files(n)
    cmd = [str(PYINFRA_VENV / "bin" / "pyinfra"), str(fs["pyinfra"]), "exec", "--parallel",
           str(n), "-y", "--", "cat", "/proc/loadavg"]

    def check(p):
        done = count_loadavg(p.stdout + p.stderr)
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    return run_process(cmd, setup.env, setup.root, check)


def t_pssh(setup: Setup, n: int) -> Result:
    fs = setup.files(n)
    cmd = [str(PSSH_VENV / "bin" / "python"), str(BENCH / "pssh_floor.py"), str(fs["targets"])]

    def check(p):
        done = count_loadavg(p.stdout)
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    return run_process(cmd, setup.env, setup.root, check)


def _t_ssh(setup: Setup, n: int, extra: list[str]) -> Result:
    opts = " ".join(["-o BatchMode=yes -o StrictHostKeyChecking=yes", *extra])
    script = f'cfg=$1; shift; for h do ssh -F "$cfg" {opts} "$h" cat /proc/loadavg & done; wait'
    cmd = ["sh", "-c", script, "sh", str(setup.fleet.ssh_config), *setup.names(n)]

    def check(p):
        done = count_loadavg(p.stdout)
        return done == n, f"{done}/{n} hosts"

    return run_process(cmd, setup.env, setup.root, check)


def t_ssh(setup: Setup, n: int) -> Result:
    return _t_ssh(setup, n, [])


def t_ssh_c25519(setup: Setup, n: int) -> Result:
    return _t_ssh(setup, n, ["-o KexAlgorithms=curve25519-sha256"])


def t_floor(setup: Setup, n: int) -> Result:
    fs = setup.files(n)
    cmd = [sys.executable, str(BENCH / "asyncssh_floor.py"), str(fs["targets"])]

    def check(p):
        done = count_loadavg(p.stdout)
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    return run_process(cmd, setup.env, setup.root, check)


def t_floor_probe(setup: Setup, n: int) -> Result:
    fs = setup.files(n)
    cmd = [sys.executable, str(BENCH / "asyncssh_floor.py"), str(fs["targets_probe"])]

    def check(p):
        from orchestrator.fleet.facts import END
        done = p.stdout.count(END)
        return done == n and p.returncode == 0, f"{done}/{n} hosts"

    return run_process(cmd, setup.env, setup.root, check)


TOOLS = {"orch": t_orch, "orch-alt": t_orch_alt, "orch-probe": t_orch_probe, "ansible": t_ansible,
         "ansible-raw": t_ansible_raw, "pyinfra": t_pyinfra, "pssh": t_pssh, "ssh": t_ssh,
         "ssh-c25519": t_ssh_c25519, "floor": t_floor, "floor-probe": t_floor_probe}


def measure(setup: Setup, tool: str, n: int) -> Result:
    if not wait_idle(setup):
        log("  warning: sessions from the previous tool still open after 15 s")
    s0 = server_cpu(setup)
    result = TOOLS[tool](setup, n)
    wait_idle(setup)
    result.server_cpu = server_cpu(setup) - s0
    return result


# -- facts about the conditions ------------------------------------------------------------

def negotiated_kex(setup: Setup) -> dict[str, str]:
    """Which key exchange each client ends up with against this sshd (one extra connect)."""
    out: dict[str, str] = {}
    h = setup.fleet.hosts[0]
    p = subprocess.run(["ssh", "-v", "-F", str(setup.fleet.ssh_config), "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=yes", h.name, "true"],
                       env=setup.env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    m = re.search(r"kex: algorithm: (\S+)", p.stderr)
    out["openssh"] = m.group(1) if m else "?"
    p = subprocess.run([sys.executable, str(BENCH / "asyncssh_floor.py"),
                        str(setup.files(1)["targets"]), "--kex"],
                       env=setup.env, capture_output=True, text=True)
    m = re.search(r"Key exchange alg: (\S+)", p.stderr)
    out["asyncssh"] = m.group(1) if m else "?"
    return out


def versions() -> dict[str, str]:
    import asyncssh

    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "--", "orchestrator"]
                           ).returncode != 0
    return {"python": platform.python_version(), "asyncssh": asyncssh.__version__,
            "openssh": first_line(["ssh", "-V"]),
            "ansible": first_line([str(ANSIBLE_VENV / "bin" / "ansible"), "--version"]),
            "orch_commit": commit + ("+dirty orchestrator/" if dirty else ""),
            "kernel": platform.release(), "cpus": str(os.cpu_count())}


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


# -- report --------------------------------------------------------------------------------

def summarize(samples: list[dict], tools: list[str], ns: list[int]) -> list[dict]:
    rows = []
    for n in ns:
        base = None
        for tool in tools:
            ok = [s for s in samples if s["tool"] == tool and s["n"] == n and s["ok"]]
            failed = sum(1 for s in samples if s["tool"] == tool and s["n"] == n and not s["ok"])
            if not ok:
                rows.append({"tool": tool, "n": n, "runs": 0, "failed": failed})
                continue
            walls = [s["wall"] for s in ok]
            row = {"tool": tool, "n": n, "runs": len(ok), "failed": failed,
                   "median": statistics.median(walls), "min": min(walls), "max": max(walls),
                   "client_cpu": statistics.median(s["client_cpu"] for s in ok),
                   "server_cpu": statistics.median(s["server_cpu"] for s in ok)}
            if tool == "orch":
                base = row["median"]
            row["ratio_to_orch"] = row["median"] / base if base else None
            rows.append(row)
        # orch may come later than others in `tools`: fill ratios after the fact.
        base = next((r.get("median") for r in rows if r["n"] == n and r["tool"] == "orch"), None)
        for r in rows:
            if r["n"] == n and "median" in r:
                r["ratio_to_orch"] = r["median"] / base if base else None
    return rows


def targets(rows: list[dict], n: int) -> list[dict]:
    get = {r["tool"]: r.get("median") for r in rows if r["n"] == n}
    orch = get.get("orch")
    out = []

    def add(name, value, ok, text):
        out.append({"target": name, "value": value, "met": ok, "text": text})

    if orch is None:
        return out
    if get.get("ansible"):
        v = get["ansible"] / orch
        add("ansible/orch >= 10", v, v >= 10, f"orch is {v:.1f}x faster than Ansible forks={n}")
    if get.get("ssh"):
        v = get["ssh"] / orch
        add("ssh/orch > 1", v, v > 1, f"orch is {v:.2f}x faster than {n} parallel ssh" if v >= 1
            else f"orch is {1 / v:.2f}x slower than {n} parallel ssh")
    if get.get("floor"):
        v = orch / get["floor"]
        # issue 10 item 2: within 1.15x of the floor (an earlier round asked 1.2x)
        add("orch/floor <= 1.15", v, v <= 1.15, f"orch takes {v:.2f}x the bare asyncssh floor")
    return out


def print_table(rows: list[dict]) -> None:
    head = f"{'tool':<30} {'N':>3} {'median s':>9} {'min':>7} {'max':>7} {'x orch':>7} " \
           f"{'cli CPU':>8} {'srv CPU':>8}  runs"
    print(head)
    print("-" * len(head))
    last_n = None
    for r in rows:
        if last_n is not None and r["n"] != last_n:
            print()
        last_n = r["n"]
        label = LABELS.get(r["tool"], r["tool"])
        if not r["runs"]:
            print(f"{label:<30} {r['n']:>3} {'failed':>9}{'':>49}  0/{r['failed']}")
            continue
        ratio = f"{r['ratio_to_orch']:.2f}" if r.get("ratio_to_orch") else "-"
        runs = f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        print(f"{label:<30} {r['n']:>3} {r['median']:>9.3f} {r['min']:>7.3f} {r['max']:>7.3f} "
              f"{ratio:>7} {r['client_cpu']:>8.2f} {r['server_cpu']:>8.2f}  {runs}")


# -- main ----------------------------------------------------------------------------------

def prepare_tools(tools: list[str]) -> None:
    """Install the peers these tools need (each in its own venv, first run only)."""
    if "ansible" in tools or "ansible-raw" in tools:
        ensure_peer("ansible")
    for peer in ("pyinfra", "pssh"):
        if peer in tools:
            ensure_peer(peer)


def run_fanout(setup: Setup, ns: list[int], tools: list[str], runs: int,
               warmup: int) -> list[dict]:
    """Every sample: each N, `warmup` untimed rounds, then `runs` rounds in a rotating
    tool order (slow drift of the machine spreads over every tool)."""
    samples: list[dict] = []
    try:
        for n in ns:
            for _w in range(warmup):
                for tool in tools:
                    r = measure(setup, tool, n)
                    log(f"N={n} warm-up {tool}: {r.wall:.3f}s {'ok' if r.ok else 'FAILED'}"
                        + ("" if r.ok else f" ({r.detail})"))
            for i in range(runs):
                order = tools[i % len(tools):] + tools[:i % len(tools)]
                line = []
                for tool in order:
                    r = measure(setup, tool, n)
                    samples.append({"group": f"hosts N={n}", "tool": tool, "n": n, "run": i,
                                    "wall": r.wall, "client_cpu": r.client_cpu,
                                    "server_cpu": r.server_cpu, "ok": r.ok, "detail": r.detail,
                                    "load": loadavg()})
                    line.append(f"{tool} {r.wall:.2f}" + ("" if r.ok else " FAILED"))
                    if not r.ok:
                        log(f"  {tool} failed: {r.detail}")
                log(f"N={n} run {i + 1}/{runs}: " + ", ".join(line))
    finally:
        end_ansible_masters(setup)
    return samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="10,50", help="comma-separated N values (default 10,50)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and N (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                    help=f"comma-separated, from {','.join(ALL_TOOLS)}")
    ap.add_argument("--login-user", choices=("bench", "self"), default="bench",
                    help="bench: a dedicated user with /bin/sh as login shell (root only, "
                         "created once); self: the current user, with its shell's rc files")
    ap.add_argument("--agent", default=None,
                    help="agent command for orch's probe (default: a /bin/sh stand-in that "
                         "prints a version)")
    ap.add_argument("--alt-tree", metavar="DIR",
                    help="also time `orch hosts` with DIR/orchestrator (another checkout, e.g. "
                         "a patched copy) first on PYTHONPATH: a before/after row, interleaved")
    ap.add_argument("--keep", action="store_true", help="keep the fleet's temp dir")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = ap.parse_args(argv)

    ns = [int(x) for x in args.hosts.split(",") if x.strip()]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        ap.error(f"unknown tools: {', '.join(unknown)}")
    if "orch" not in tools:
        tools.insert(0, "orch")
    if args.alt_tree:
        global ALT_TREE
        ALT_TREE = str(Path(args.alt_tree).resolve())
        if not (Path(ALT_TREE) / "orchestrator" / "__init__.py").is_file():
            ap.error(f"--alt-tree {args.alt_tree}: no orchestrator/ package there")
        LABELS["orch-alt"] = f"orch hosts, {Path(ALT_TREE).name}/"
        tools.insert(tools.index("orch") + 1, "orch-alt")
    if max(ns) > 200:
        ap.error("at most 200 hosts (127.0.1.10-254)")

    prepare_tools(tools)
    user = None
    if args.login_user == "bench":
        if os.geteuid() != 0:
            log("not root: cannot use a dedicated login user; using the current user")
        else:
            user = ensure_bench_user()

    started = dt.datetime.now()
    load_start = loadavg()
    log(f"starting {max(ns)} sshd hosts (login user {user or 'self'}), load {load_start}")
    setup = Setup(max(ns), user, args.agent)
    try:
        kex = negotiated_kex(setup)
        log(f"key exchange: OpenSSH {kex['openssh']}, asyncssh {kex['asyncssh']}")
        samples = run_fanout(setup, ns, tools, args.runs, args.warmup)
    finally:
        setup.close(args.keep)

    rows = summarize(samples, tools, ns)
    print()
    print(f"orch hosts fan-out, {os.cpu_count()} CPUs, login user {user or 'self'}, "
          f"{args.runs} runs (+{args.warmup} warm-up), load {load_start} -> {loadavg()}")
    print(f"key exchange: OpenSSH ssh/ansible {kex['openssh']}; asyncssh (orch, floor) "
          f"{kex['asyncssh']}")
    print()
    print_table(rows)
    checks = []
    for n in ns:
        for t in targets(rows, n):
            t["n"] = n
            checks.append(t)
    if checks:
        print()
        for t in checks:
            print(f"N={t['n']:<3} {'MET ' if t['met'] else 'MISS'}  {t['target']:<18} {t['text']}")

    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{started:%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({
            "started": started.isoformat(timespec="seconds"),
            "seconds": round((dt.datetime.now() - started).total_seconds(), 1),
            "argv": sys.argv[1:], "alt_tree": ALT_TREE, "login_user": user or pwd.getpwuid(os.getuid()).pw_name,
            "agent": args.agent or "stand-in /bin/sh script", "kex": kex,
            "versions": versions(), "load_start": load_start, "load_end": loadavg(),
            "summary": rows, "targets": checks, "samples": samples}, indent=1))
        print(f"\nwrote {path.relative_to(REPO)}")
    return 0 if all(r["runs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
