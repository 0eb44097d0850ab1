"""Hosts for `orch provision` tests: loopback sshd hosts that look like separate machines.

Every host of tests/fixtures_ssh.py logs in as the user running the tests, so the hosts
would share one home, and a test that installs an agent or sets a git identity would
write into that user's real home. Here each sshd gets `SetEnv HOME=<its own dir>` (and a
PATH, when asked), so a host's `~` is a directory of the test's own, wiped between tests:
provision and bootstrap on one host see only what was done to that host.

Also: a PATH without git whose `apt-get` is a stand-in that records how it was called
(and as which uid) and "installs" git by linking the real one in, so the package-manager
step is observable without reinstalling this machine's git; a test user with a password
and a sudoers rule that asks for it; and snapshots of directory trees, to prove that a run
changed nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from tests.fixtures_ssh import SSHFleet

AGENT_TEMPLATE = "#!/bin/sh\necho '{version} (Claude Code)'\n"


def own_homes(fleet: SSHFleet, *, paths: dict[str, str] | None = None) -> dict[str, Path]:
    """Give each host of `fleet` its own HOME (and PATH from `paths`), restarting its sshd."""
    homes: dict[str, Path] = {}
    for h in fleet.hosts:
        home = fleet.root / f"home-{h.name}"
        home.mkdir(exist_ok=True)
        env = f"HOME={home}"
        if paths and h.name in paths:
            env += f" PATH={paths[h.name]}"
        with open(h.config_path, "a") as f:
            f.write(f"SetEnv {env}\n")
        fleet.stop(h.name)
        fleet.start(h.name)
        homes[h.name] = home
    return homes


def wipe(path: Path) -> None:
    """Empty a directory (keep the directory itself: sshd points HOME at it)."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def agent_file(path: Path, version: str) -> Path:
    """A stand-in agent binary: a script that answers --version like Claude Code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(AGENT_TEMPLATE.format(version=version))
    path.chmod(0o755)
    return path


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under `roots`: (kind, mode, owner, size, sha256 of a file / target of
    a link). Directory mtimes are left out: bootstrap's write probe touches them."""
    out: dict[str, tuple] = {}
    for root in roots:
        if not root.exists():
            out[str(root)] = ("absent",)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                st = p.lstat()
                if p.is_symlink():
                    out[str(p)] = ("link", os.readlink(p))
                elif p.is_dir():
                    out[str(p)] = ("dir", st.st_mode, st.st_uid)
                else:
                    out[str(p)] = ("file", st.st_mode, st.st_uid, st.st_size,
                                   hashlib.sha256(p.read_bytes()).hexdigest())
            st = Path(dirpath).lstat()
            out[dirpath] = ("dir", st.st_mode, st.st_uid)
    return out


def fakebin(directory: Path, log: Path) -> Path:
    """A PATH directory with everything of /usr/bin and /bin except git, and an apt-get
    that appends "<uid> <args>" to `log` (and every process's command line, sampled while
    it runs as root, to `<log>.ps`) and links the real git in for `install ... git`."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in (Path("/usr/bin"), Path("/bin"), Path("/usr/sbin")):
        for entry in source.iterdir():
            name = entry.name
            if name.startswith("git") or (directory / name).exists() or (directory / name).is_symlink():
                continue
            (directory / name).symlink_to(entry)
    apt = directory / "apt-get"
    if apt.is_symlink() or apt.exists():
        apt.unlink()
    apt.write_text(f"""#!/bin/sh
printf '%s %s\\n' "$(id -u)" "$*" >> {log}
ps -eo args >> {log}.ps
case " $* " in
  *" install "*" git "*|*" install "*" git") ln -sf /usr/bin/git {directory}/git ;;
esac
""")
    apt.chmod(0o755)
    log.touch()
    log.chmod(0o666)
    return directory


def remove_git(directory: Path) -> None:
    (directory / "git").unlink(missing_ok=True)


class SudoUser:
    """A login user with a password whose sudo asks for it every time (root only).

    `sudoers` also points sudo's secure_path at `path`, so that `sudo apt-get` finds the
    stand-in there. Removed (user, home, sudoers rule) by close().
    """

    def __init__(self, path: Path) -> None:
        self.name = "orchp" + secrets.token_hex(3)
        self.password = "pw " + secrets.token_hex(8)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", self.name], check=True)
        self.sudoers = Path("/etc/sudoers.d") / self.name
        try:
            subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True,
                           check=True)
            self.sudoers.write_text(f"{self.name} ALL=(ALL) ALL\n"
                                    f"Defaults:{self.name} timestamp_timeout=0\n"
                                    f'Defaults:{self.name} secure_path="{path}"\n')
            self.sudoers.chmod(0o440)
            subprocess.run(["visudo", "-c", "-f", str(self.sudoers)], check=True,
                           capture_output=True)
        except BaseException:
            self.close()
            raise
        self.home = Path(f"/home/{self.name}")

    def close(self) -> None:
        self.sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
