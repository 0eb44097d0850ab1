"""A real PostgreSQL server on loopback, started by the suite itself (initdb + pg_ctl).

The server runs as an unprivileged user: the current one, or, when the suite runs as
root (CI), the `postgres` system user (the package creates it) or else `nobody`, in a
temporary directory that user owns. Each test gets a database of its own
(`pg_server.database()`). Without PostgreSQL installed the tests that need it are
skipped, except under CI=true, where they FAIL: CI must test both backends.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
PASSWORD = "s3cret-pw"   # the test role's password: tests check it is never printed


def _bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).is_file():
            return str(d / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL cannot be started, and CI must test it: {why}")
    pytest.skip(f"PostgreSQL cannot be started: {why}")


@dataclass
class PgServer:
    root: Path
    port: int
    user: str               # the OS user the server runs as
    role: str = "orch"
    made: list[str] = field(default_factory=list)
    fsync: bool = False     # off for the tests (speed); on for the benchmark

    def _as_user(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0 and self.user != "root":
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        r = self._as_user([_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-l",
                           str(self.root / "server.log"), "-w", "-t", "60", "-o",
                           f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                           f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200", "start"])
        if r.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] \
                if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr}{r.stdout}{log}")

    def stop(self, mode: str = "fast") -> None:
        self._as_user([_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                       "stop"])

    def destroy(self) -> None:
        """Stop the server and remove its files."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres", *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{self.role}{secret}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        r = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-d", self.url(db), "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return r.stdout.strip()

    def database(self) -> str:
        """A new, empty database; its URL (with the password)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        self.made.append(name)
        return self.url(name)


def _server_user() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return "nobody"


def start_server(*, fsync: bool = False) -> PgServer:
    """initdb + pg_ctl start on a free loopback port, as an unprivileged user (RuntimeError
    saying why when it cannot). bench/backends.py uses it too."""
    initdb = _bin("initdb")
    if initdb is None or _bin("pg_ctl") is None or shutil.which("psql") is None:
        raise RuntimeError("initdb/pg_ctl/psql not found (apt-get install postgresql)")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    info = pwd.getpwnam(user)
    os.chown(root, info.pw_uid, info.pw_gid)
    root.chmod(0o700)
    server = PgServer(root, _free_port(), user, fsync=fsync)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    os.chown(pwfile, info.pw_uid, info.pw_gid)
    r = server._as_user([initdb, "-D", str(server.data), "-U", server.role,
                         "--pwfile", str(pwfile), "-A", "scram-sha-256", "--no-sync",
                         "-E", "UTF8", "--locale", "C"])
    if r.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stderr.strip()[-500:]}")
    try:
        server.start()
    except RuntimeError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except RuntimeError as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database of the suite's server (with the password in the URL)."""
    return pg_server.database()
