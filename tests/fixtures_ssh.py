"""A fleet of real OpenSSH servers on loopback, for tests that must talk SSH for real.

Why real sshd: the things that break in the field (host-key policy, MaxSessions,
a dead host, a dropped link, ~/.ssh/config aliases) only show against OpenSSH itself.

Each host is one `sshd -D -f <cfg>` process on its own address 127.0.1.N (N from 10
up) and a free port, with its own ed25519 host key. One client key pair is shared by
all hosts (one authorized_keys). The fleet writes:

- `known_hosts`: every host as `[127.0.1.N]:PORT ssh-ed25519 ...` (strict checking works);
- `ssh_config`: one alias per host (`Host <name>` with HostName, Port, User,
  IdentityFile, IdentitiesOnly), so `ssh -F ssh_config host1` and asyncssh aliases work.

sshd runs as the current user and can only log in as that user (`UsePAM no`,
`StrictModes no`, PidFile in the tmp dir); as root it also needs /run/sshd, created
if missing. Processes are stopped by PID (never by name) when the fleet closes.

Fixtures (the root conftest loads this module as a plugin):

- `ssh_fleet`         session-scoped, 5 hosts, SHARED: never stop or break its hosts.
- `ssh_fleet_factory` session-scoped factory: `ssh_fleet_factory(n, prefix="h")` gives a
                      new SSHFleet, closed at the end of the session (or call `.close()`).
                      `homes=True`: each host's sessions get a HOME of their own
                      (`fleet.host(name).home`, by sshd's SetEnv), as separate machines
                      would have: for what lives in ~ (~/.local/bin/claude, ~/.npmrc).
- `make_ssh_fleet`    function-scoped factory: fleets it makes are closed when the test
                      ends; use it for tests that stop/restart hosts.

Example (a dispatch/poll test with 3 hosts)::

    def test_something(make_ssh_fleet, tmp_path):
        fleet = make_ssh_fleet(3)
        settings = fleet.settings(connect_timeout=3)       # orchestrator.config.settings.Settings
        hosts = fleet.inventory(specialties=("backend",))  # list[models.Host]
        async def go():
            async with Fleet(hosts, settings) as f:
                facts = await f.probe()
        asyncio.run(go())
        fleet.stop("h2"); ...; fleet.start("h2")           # same key, same port

    # For `orch` in a subprocess:
    fleet.write_inventory(tmp_path / "hosts.yml")
    fleet.write_config(tmp_path / "orch.yml")

Failure helpers: `stop(name, drop_sessions=True)` / `start(name)` (refused, dropped
links), `freeze(name)` / `thaw(name)` (SIGSTOP: a silent, hung host for timeouts and
keepalives). Other helpers: `fleet.host(name)` (SSHHost: name, address, port, pid, host_key_line),
`fleet.known_hosts_line(name)`, `fleet.write_known_hosts(path, names=..., keys_from=...)`
for hostile key files, `fleet.is_running(name)`, `fleet.user`, `fleet.client_key`.
"""

from __future__ import annotations

import atexit
import dataclasses
import getpass
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

# 127.0.1.N addresses are handed out once per pytest process, N from 10 up.
_next_octet = itertools.count(10)
_octet_lock = threading.Lock()


def _alloc_address() -> str:
    with _octet_lock:
        n = next(_next_octet)
    if n > 254:
        raise RuntimeError("fixtures_ssh: ran out of 127.0.1.N addresses")
    return f"127.0.1.{n}"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> str:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path.with_name(path.name + ".pub").read_text().strip()


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of every process now:
    state, ppid, pgrp, ... (proc(5)); a process gone meanwhile is skipped."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    """Every descendant of `pid`, found through /proc (per-connection sshd processes
    call setsid(), so a process group kill would miss them)."""
    parents: dict[int, list[int]] = {}
    for child, fields in proc_stats():
        parents.setdefault(int(fields[1]), []).append(child)
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop_tree(pid: int) -> list[int]:
    """SIGSTOP `pid` and every descendant until no new one appears (a process may be
    forking while we look: sshd forks the post-auth child after telling the client
    "auth ok"). Stopped processes fork nothing, so this settles. Returns the pids."""
    stopped: list[int] = []
    for _ in range(100):
        new = [p for p in [pid, *_children(pid)] if p not in stopped]
        if not new:
            break
        for p in new:
            _kill(p, signal.SIGSTOP)
            stopped.append(p)
        time.sleep(0.01)
    return stopped


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to sshd if the test process dies (even by
    SIGKILL), so no listener outlives a crashed suite (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: close() and atexit still apply
        pass


def _wait_banner(address: str, port: int, proc: subprocess.Popen, deadline: float) -> bool:
    """True once the server sends its SSH banner; False if it died or time ran out."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


@dataclasses.dataclass
class SSHHost:
    """One sshd of the fleet."""

    name: str
    address: str
    port: int
    dir: Path
    host_key_line: str                 # "ssh-ed25519 AAAA... comment" (the .pub file)
    proc: subprocess.Popen | None = None
    home: Path | None = None           # HOME of its sessions (homes=True), else the user's own

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def config_path(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def known_host_pattern(self) -> str:
        return f"[{self.address}]:{self.port}"


class SSHFleet:
    """N running sshd processes plus the client-side files that reach them."""

    def __init__(self, root: Path, n: int, prefix: str = "h", user: str | None = None,
                 homes: bool = False) -> None:
        self.root = root
        # user: the account sshd lets in (default: the current one; another needs root).
        self.user = user or getpass.getuser()
        self.hosts: list[SSHHost] = []
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.client_key = root / "client_ed25519"
        self.client_pub = _keygen(self.client_key, "orch-tests-client")
        self.authorized_keys = root / "authorized_keys"
        self.authorized_keys.write_text(self.client_pub + "\n")
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.workspace_base = root / "ws"
        atexit.register(self.close)  # a fleet made outside pytest's fixtures still stops
        try:
            for i in range(1, n + 1):
                name = f"{prefix}{i}"
                address = _alloc_address()
                d = root / name
                d.mkdir()
                key_line = _keygen(d / "ssh_host_ed25519_key", name)
                home = None
                if homes:
                    home = d / "home"
                    home.mkdir(mode=0o700)
                self.hosts.append(SSHHost(name, address, 0, d, key_line, home=home))
            for h in self.hosts:
                self._launch(h, new_port=True)
            deadline = time.monotonic() + 15
            for h in self.hosts:
                for _attempt in range(3):
                    assert h.proc is not None
                    if _wait_banner(h.address, h.port, h.proc, deadline):
                        break
                    # Lost the race for the port (or sshd died): try another port.
                    self._terminate(h)
                    self._launch(h, new_port=True)
                else:
                    raise RuntimeError(f"sshd {h.name} did not start; see {h.log_path}:\n"
                                       + h.log_path.read_text(errors="replace")[-2000:])
            self.write_known_hosts(self.known_hosts)
            self._write_ssh_config()
        except BaseException:
            self.close()
            raise

    # -- processes ---------------------------------------------------------------------

    def _write_sshd_config(self, h: SSHHost) -> None:
        h.config_path.write_text(f"""\
ListenAddress {h.address}:{h.port}
HostKey {h.dir / 'ssh_host_ed25519_key'}
PidFile {h.dir / 'sshd.pid'}
AuthorizedKeysFile {self.authorized_keys}
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {self.user}
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
""" + (f"SetEnv HOME={h.home}\n" if h.home is not None else ""))

    def _launch(self, h: SSHHost, *, new_port: bool) -> None:
        if new_port:
            h.port = _free_port(h.address)
            self._write_sshd_config(h)
        log = open(h.log_path, "ab")
        try:
            h.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(h.config_path)],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def _terminate(self, h: SSHHost, *, drop_sessions: bool = True) -> None:
        proc = h.proc
        if proc is None:
            return
        # Freeze the whole tree first, so that a session forked meanwhile is not missed.
        pids = _stop_tree(proc.pid) if drop_sessions else [proc.pid]
        for pid in pids:
            _kill(pid)
            _kill(pid, signal.SIGCONT)  # a stopped process acts on SIGTERM once resumed
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        h.proc = None

    def host(self, name: str) -> SSHHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def is_running(self, name: str) -> bool:
        return self.host(name).pid is not None

    def stop(self, name: str, *, drop_sessions: bool = True) -> None:
        """Kill one sshd by PID. With drop_sessions, its open connections die too (their
        per-connection sshd processes are killed), so clients see a dropped link."""
        self._terminate(self.host(name), drop_sessions=drop_sessions)

    def freeze(self, name: str) -> None:
        """SIGSTOP the sshd and all its sessions: the host hangs silently, as if its
        network were cut. New connections complete TCP (the kernel's backlog) but never
        get a banner, open links see no answer: timeouts and keepalives get tested."""
        h = self.host(name)
        if h.pid is not None:
            _stop_tree(h.pid)

    def thaw(self, name: str) -> None:
        h = self.host(name)
        if h.pid is not None:
            for pid in [h.pid, *_children(h.pid)]:
                _kill(pid, signal.SIGCONT)

    def start(self, name: str) -> None:
        """Restart a stopped sshd: same host key, same address and port."""
        h = self.host(name)
        if h.pid is not None:
            return
        deadline = time.monotonic() + 10
        while True:
            self._launch(h, new_port=False)
            assert h.proc is not None
            if _wait_banner(h.address, h.port, h.proc, min(deadline, time.monotonic() + 3)):
                return
            self._terminate(h)
            if time.monotonic() > deadline:  # e.g. the port is still in TIME_WAIT use
                raise RuntimeError(f"sshd {name} did not restart; see {h.log_path}")
            time.sleep(0.2)

    def close(self) -> None:
        for h in self.hosts:
            self._terminate(h)

    # -- client-side files -------------------------------------------------------------

    def known_hosts_line(self, name: str, *, key_of: str | None = None) -> str:
        """`[addr]:port <key>` for `name`, with the key of host `key_of` if given."""
        h = self.host(name)
        key = self.host(key_of or name).host_key_line
        return f"{h.known_host_pattern} {key}"

    def write_known_hosts(self, path: Path, *, names: Iterable[str] | None = None,
                          keys_from: dict[str, str] | None = None) -> Path:
        """Write a known_hosts with `names` only (default all); keys_from maps a host to
        another host whose key it should (wrongly) list, to simulate a changed key."""
        keys_from = keys_from or {}
        chosen = list(names) if names is not None else self.names
        Path(path).write_text("".join(self.known_hosts_line(n, key_of=keys_from.get(n)) + "\n"
                                      for n in chosen))
        return Path(path)

    def _write_ssh_config(self) -> None:
        blocks = [f"""\
Host {h.name}
    HostName {h.address}
    Port {h.port}
    User {self.user}
    IdentityFile {self.client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {self.known_hosts}
""" for h in self.hosts]
        self.ssh_config.write_text("\n".join(blocks))

    # -- orch-side records -------------------------------------------------------------

    def settings(self, **ssh_overrides):
        """orchestrator.config.settings.Settings whose ssh section points at this fleet."""
        from orchestrator.config.settings import Settings, SSHSettings
        ssh = dict(known_hosts=str(self.known_hosts), config=str(self.ssh_config),
                   client_keys=[str(self.client_key)], connect_timeout=5.0,
                   keepalive_interval=2.0, keepalive_count_max=3)
        ssh.update(ssh_overrides)
        return Settings(ssh=SSHSettings(**ssh))

    def workspace_root(self, name: str) -> str:
        return str(self.workspace_base / name)

    def inventory(self, names: Iterable[str] | None = None, *, via_alias: bool = False,
                  **overrides):
        """list[models.Host] for these sshd's: by address and port, or (via_alias) by the
        ssh_config alias only. Each host gets its own workspace_root under the fleet dir;
        `overrides` (specialties, max_tasks, agent, enabled, ...) apply to every host."""
        from orchestrator.core.models import Host
        chosen = list(names) if names is not None else self.names
        out = []
        for n in chosen:
            h = self.host(n)
            fields = dict(name=n, address=n, port=None, user=None) if via_alias else \
                dict(name=n, address=h.address, port=h.port, user=self.user)
            fields["workspace_root"] = self.workspace_root(n)
            fields.update(overrides)
            if "specialties" in fields:
                fields["specialties"] = tuple(fields["specialties"])
            out.append(Host(**fields))
        return out

    def write_inventory(self, path: Path, names: Iterable[str] | None = None, *,
                        via_alias: bool = False, extra: dict[str, dict] | None = None,
                        **overrides) -> Path:
        """hosts.yml (docs/SPEC.md format) for `orch --inventory`; extra: per-host keys."""
        import yaml
        hosts = {}
        for h in self.inventory(names, via_alias=via_alias, **overrides):
            entry = {"address": h.address, "specialties": list(h.specialties) or ["backend"],
                     "workspace_root": h.workspace_root, "max_tasks": h.max_tasks}
            if not via_alias:
                entry.update(port=h.port, user=h.user, identity_file=str(self.client_key))
            if h.agent:
                entry["agent"] = h.agent
            if not h.enabled:
                entry["enabled"] = False
            entry.update((extra or {}).get(h.name, {}))
            hosts[h.name] = entry
        Path(path).write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
        return Path(path)

    def write_config(self, path: Path, **sections) -> Path:
        """orch.yml whose ssh section points at this fleet; `sections` merge on top
        (e.g. agent={"command": "/bin/true"}, state_dir="...")."""
        import yaml
        data: dict = {"ssh": {"known_hosts": str(self.known_hosts),
                              "config": str(self.ssh_config), "connect_timeout": 5}}
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
        return Path(path)


def _make_root(tag: str) -> Path:
    # Short paths: sshd and ssh have limits on socket/config path lengths.
    return Path(tempfile.mkdtemp(prefix=f"orch-{tag}-"))


@pytest.fixture(scope="session")
def ssh_fleet_factory() -> Iterator[Callable[..., SSHFleet]]:
    made: list[SSHFleet] = []
    roots: list[Path] = []

    def make(n: int = 3, prefix: str = "h", homes: bool = False) -> SSHFleet:
        root = _make_root("sshd")
        roots.append(root)
        fleet = SSHFleet(root, n, prefix, homes=homes)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_fleet(ssh_fleet_factory) -> SSHFleet:
    """Five shared hosts h1..h5. Read-only: do not stop them or change their files."""
    return ssh_fleet_factory(5)


@pytest.fixture
def make_ssh_fleet(ssh_fleet_factory) -> Iterator[Callable[..., SSHFleet]]:
    mine: list[SSHFleet] = []

    def make(n: int = 3, prefix: str = "h", homes: bool = False) -> SSHFleet:
        fleet = ssh_fleet_factory(n, prefix, homes)
        mine.append(fleet)
        return fleet

    yield make
    for fleet in mine:
        fleet.close()
