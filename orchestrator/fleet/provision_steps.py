"""The steps of `orch provision`, in order: each checks one thing on a host, changes it
only when it differs from what orch needs, and says ok / changed / failed (with the fix).

A step is a function of a StepContext (the host's connection, its home, the plan) to an
Outcome; STEPS is the table that orders them and says which step needs which. Under
`--check` (ctx.check) a step runs only what reads the host and answers "changed" with
what it would do. A step is idempotent by construction: it compares first, so a second
run finds nothing to do. What the steps run on a host is POSIX sh, and every value from
the inventory, the config or a host reaches sh through core/shell.py's quoting.

Step names are those of bootstrap's checks where they prepare the same thing (git,
agent, workspace, git-identity): fleet/provision.py lines the two reports up by name.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config.settings import Settings
from ..core import shell
from ..core.agentsource import AgentSource, InstallTarget
from ..core.models import Host
from ..transport.base import CommandResult
from ..transport.fabric import PrivilegeError
from .facts import agent_of

INSTALL_TIMEOUT = 900.0      # seconds for a package manager or npm install
VERSION_TIMEOUT = 20.0       # seconds for `<agent> --version`
TAIL = 300                   # characters of a failed command's output kept in a report


class Remote(Protocol):
    """What a step may do on a host (transport/fabric.py's FabricRemote)."""

    host: Host

    def run(self, command: str, *, timeout: float = 60) -> CommandResult: ...

    def run_as_root(self, command: str, *, timeout: float = 600) -> CommandResult: ...

    def check_root(self, password_available: bool) -> None: ...

    def put(self, local: Path, remote: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    status: str                     # ok | changed | failed | skipped
    detail: str
    fix: str | None = None


def ok(detail: str) -> Outcome:
    return Outcome("ok", detail)


def changed(detail: str) -> Outcome:
    return Outcome("changed", detail)


def failed(detail: str, fix: str) -> Outcome:
    return Outcome("failed", detail, fix)


@dataclass
class StepContext:
    remote: Remote
    host: Host
    settings: Settings
    home: str                                   # the login user's $HOME on the host
    check: bool = False
    password_available: bool = False            # --ask-sudo-pass was given
    source: AgentSource | None = None
    local_file: Path | None = None              # the agent file to upload, when a file
    local_sha256: str | None = None
    target: InstallTarget | None = None

    def abs(self, path: str) -> str:
        """A ~/ path as the absolute path on the host (uploads need one: SFTP has no ~)."""
        if path == "~":
            return self.home
        return self.home.rstrip("/") + path[1:] if path.startswith("~/") else path

    def as_root(self, script: str, *, timeout: float = INSTALL_TIMEOUT) -> CommandResult:
        return self.remote.run_as_root(script, timeout=timeout)


def _tail(result: CommandResult) -> str:
    text = " ".join((result.stdout + " " + result.stderr).split())
    return text if len(text) <= TAIL else "..." + text[-(TAIL - 3):]


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


# --------------------------------------------------------------------------- git

@dataclass(frozen=True)
class PackageManager:
    name: str
    script: str        # run as root
    shown: str         # what a person would type


# The package managers provision drives itself (the issue names apt-get and dnf); for the
# others it says what to run. An apt host whose package lists are stale or empty (a fresh
# image) gets one `apt-get update` and a second try.
PACKAGE_MANAGERS: dict[str, PackageManager] = {
    "apt-get": PackageManager(
        "apt-get",
        "DEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND\n"
        "apt-get install -y -q git || { apt-get update -q && apt-get install -y -q git; }",
        "sudo apt-get install git"),
    "dnf": PackageManager("dnf", "dnf install -y -q git", "sudo dnf install git"),
}
ADVICE: dict[str, str] = {
    "yum": "sudo yum install git", "zypper": "sudo zypper install git",
    "apk": "sudo apk add git", "pacman": "sudo pacman -S git", "brew": "brew install git",
    "pkg": "sudo pkg install git",
}
_DETECT = " ".join(["for pm in", *PACKAGE_MANAGERS, *ADVICE,
                    "; do command -v $pm >/dev/null 2>&1 && { echo $pm; exit 0; }; done; exit 1"])


def package_manager(found: str) -> PackageManager | str:
    """The manager provision drives, or the advice for one it does not (pure)."""
    if found in PACKAGE_MANAGERS:
        return PACKAGE_MANAGERS[found]
    return ADVICE.get(found, "install git with the host's package manager")


def step_git(ctx: StepContext) -> Outcome:
    have = ctx.remote.run("git --version")
    if have.ok:
        return ok(_first_line(have.stdout))
    found = ctx.remote.run(_DETECT).stdout.strip()
    pm = package_manager(found)
    missing = "git not found on the login user's PATH"
    if isinstance(pm, str):
        return failed(f"{missing}, and orch installs git only with apt-get or dnf "
                      f"(found: {found or 'no package manager'})", f"on {ctx.host.name}, run: {pm}")
    try:
        if ctx.check:
            ctx.remote.check_root(ctx.password_available)
            return changed(f"would install git: {pm.shown}")
        result = ctx.as_root(pm.script)
    except PrivilegeError as exc:
        return failed(f"{missing}; {exc.message}", f"{exc.fix}: {pm.shown}")
    if not result.ok:
        return failed(f"{missing}; {pm.shown} failed (exit {result.exit_status}): {_tail(result)}",
                      f"run `{pm.shown}` on {ctx.host.name} and read its error")
    after = ctx.remote.run("git --version")
    if not after.ok:
        return failed(f"{pm.name} installed git, but the login user's PATH still has none",
                      f"put git's directory on the PATH sshd gives {ctx.host.name}'s sessions")
    return changed(f"installed with {pm.name}: {_first_line(after.stdout)}")


# --------------------------------------------------------------------------- agent

def agent_lookup_script(agent: str) -> str:
    """sh that prints the path the host's agent command runs, or exits 1.

    This is issue 15's ONE rule (a leading ~ is the login user's home; a bare name not
    on the PATH is looked for in ~/.local/bin, ~/.claude/local and npm's global prefix;
    only the first word of a multi-word command is a file). The remote-job work is
    making it a named shell piece shared by the probe, bootstrap and the job; until it
    lands here, this function is the only place provision encodes the rule, so joining
    the two is one edit.
    """
    words = agent.split()
    word = words[0] if words else agent
    return f"""a={shell.path(word)}
case $a in
  */*) if [ -f "$a" ] && [ -x "$a" ]; then printf '%s\\n' "$a"; exit 0; fi; exit 1 ;;
esac
if p=$(command -v "$a" 2>/dev/null); then
  case $p in /*) printf '%s\\n' "$p"; exit 0 ;; esac
fi
for d in "$HOME/.local/bin" "$HOME/.claude/local"; do
  if [ -f "$d/$a" ] && [ -x "$d/$a" ]; then printf '%s\\n' "$d/$a"; exit 0; fi
done
if command -v npm >/dev/null 2>&1 && g=$(npm prefix -g 2>/dev/null) && [ -x "$g/bin/$a" ]; then
  printf '%s\\n' "$g/bin/$a"; exit 0
fi
exit 1"""


def _version(ctx: StepContext, path: str) -> tuple[bool, str]:
    """(answered, first line) of `<path> --version`."""
    result = ctx.remote.run(f"{shell.quote(path)} --version </dev/null 2>&1", timeout=VERSION_TIMEOUT)
    return result.ok and bool(result.stdout.strip()), _first_line(result.stdout) or _tail(result)


def _verify_agent(ctx: StepContext, path: str, what: str) -> Outcome:
    """After an install (or to confirm one): it runs, and the agent command finds it."""
    agent = agent_of(ctx.host, ctx.settings)
    answered, version = _version(ctx, path)
    if not answered:
        return failed(f"{path} --version failed: {version}",
                      f"the agent must run on {ctx.host.name} (a build for its OS and CPU; a "
                      "script needs its interpreter on the PATH of SSH sessions)")
    found = ctx.remote.run(agent_lookup_script(agent))
    resolved = found.stdout.strip()
    if not found.ok or posixpath.normpath(resolved) != posixpath.normpath(path):
        where = f"`{agent}` runs {resolved} instead" if found.ok else f"`{agent}` is not found"
        return failed(f"{path} is installed, but {where}",
                      f"set {ctx.host.name}'s `agent:` in the inventory to {path}"
                      + (f", or remove {resolved}" if found.ok else ""))
    return Outcome("changed" if what else "ok", f"{what}{version} ({path})")


_FILE_STATE = """p={path}
if [ -f "$p" ]; then
  l=$(ls -ln -- "$p") && echo "mode=${{l%% *}}"
  s=$( (sha256sum -- "$p" || shasum -a 256 -- "$p") 2>/dev/null) && echo "sha256=${{s%% *}}"
  echo state=file
elif [ -e "$p" ]; then echo state=other
else echo state=missing
fi"""


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def executable_mode(ls_mode: str) -> bool:
    """Whether an `ls -l` mode string reads -rwxr-xr-x (0755; ACL markers ignored). Pure."""
    return ls_mode[:10] == "-rwxr-xr-x"


def _agent_file(ctx: StepContext, path: str) -> Outcome:
    assert ctx.local_file is not None and ctx.local_sha256 is not None
    state = _key_values(ctx.remote.run(_FILE_STATE.format(path=shell.quote(path))).stdout)
    if state.get("state") == "other":
        return failed(f"{path} exists and is not a regular file",
                      f"remove it, or set {ctx.host.name}'s `agent:` to another path")
    same = state.get("state") == "file" and state.get("sha256") == ctx.local_sha256
    if same and executable_mode(state.get("mode", "")):
        return _verify_agent(ctx, path, "")
    if same:
        action, what = f"chmod 0755 -- {shell.quote(path)}", "made executable: "
    else:
        action, what = "", ("replaced with " if state.get("state") == "file" else "uploaded ")
    if ctx.check:
        verb = "would chmod 0755" if same else f"would upload {ctx.local_file} to"
        return changed(f"{verb} {path}")
    if not action:
        error = _upload(ctx, ctx.local_file, path)
        if error:
            return failed(f"cannot upload {ctx.local_file} to {path}: {error}",
                          f"make {path.rpartition('/')[0] or '/'} writable by the login user, or "
                          f"set {ctx.host.name}'s `agent:` to a path it can write (e.g. ~/.local/bin/claude)")
        what += f"{ctx.local_file.name}: "
    else:
        result = ctx.remote.run(action)
        if not result.ok:
            return failed(f"cannot chmod {path}: {_tail(result)}", f"chmod 0755 {path} on {ctx.host.name}")
    return _verify_agent(ctx, path, what)


def _upload(ctx: StepContext, local: Path, path: str) -> str | None:
    """Upload to a temporary name beside `path`, 0755, then rename over it (a running
    agent keeps its old file; a cut upload leaves no half file at `path`)."""
    directory, _, name = path.rpartition("/")
    directory = directory or "/"
    made = ctx.remote.run(f"mkdir -p -- {shell.quote(directory)} && mktemp "
                          f"{shell.quote(directory + '/.' + name + '.orch-XXXXXX')}")
    if not made.ok:
        return _tail(made)
    tmp = made.stdout.strip().splitlines()[-1]
    try:
        ctx.remote.put(local, tmp)
    except OSError as exc:
        ctx.remote.run(f"rm -f -- {shell.quote(tmp)}")
        return str(exc) or type(exc).__name__
    moved = ctx.remote.run(f"chmod 0755 -- {shell.quote(tmp)} && mv -f -- {shell.quote(tmp)} "
                           f"{shell.quote(path)} || {{ rm -f -- {shell.quote(tmp)}; exit 1; }}")
    return None if moved.ok else _tail(moved)


def installed_version(package_json: str) -> str | None:
    """The `version` of an installed package's package.json text, if readable. Pure."""
    try:
        data = json.loads(package_json)
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) and version else None


def _agent_npm(ctx: StepContext, path: str) -> Outcome:
    source, target = ctx.source, ctx.target
    assert source is not None and target is not None and target.npm_prefix is not None
    host = ctx.host.name
    if not ctx.remote.run("command -v npm").ok:
        return failed(f"npm not found on {host}'s PATH, needed for {source.text}",
                      f"install Node.js 18+ with npm on {host} (Debian/Ubuntu: apt-get install "
                      "nodejs npm), or set provision.agent_source to a local file")
    prefix = ctx.abs(target.npm_prefix)
    manifest = f"{prefix}/lib/node_modules/{source.package}/package.json"
    current = installed_version(ctx.remote.run(f"cat -- {shell.quote(manifest)}").stdout)
    present = ctx.remote.run(f"[ -x {shell.quote(path)} ]").ok
    if current and present and (source.pinned is None or source.pinned == current):
        return _verify_agent(ctx, path, "")
    moving = f"{current} -> {source.pinned}" if current and present else None
    if ctx.check:
        return changed(f"would {'change ' + moving if moving else 'install ' + source.spec} "
                       f"with npm into {prefix}")
    result = ctx.remote.run(f"npm install -g --prefix {shell.quote(prefix)} --no-fund --no-audit "
                            f"--no-update-notifier {shell.quote(source.spec)} 2>&1",
                            timeout=INSTALL_TIMEOUT)
    if not result.ok:
        return failed(f"npm install {source.spec} failed (exit {result.exit_status}): {_tail(result)}",
                      f"check that {host}'s npm reaches its registry (`npm config get registry`; a "
                      "mirror or proxy goes in ~/.npmrc), or set provision.agent_source to a local file")
    if not ctx.remote.run(f"[ -x {shell.quote(path)} ]").ok:
        return failed(f"npm installed {source.spec}, but {path} is not there: its binary has "
                      "another name", f"set {host}'s `agent:` to {prefix}/bin/<the package's binary>")
    after = installed_version(ctx.remote.run(f"cat -- {shell.quote(manifest)}").stdout) or "?"
    what = f"{current} -> {after}: " if moving else f"installed {source.package}@{after}: "
    return _verify_agent(ctx, path, what)


def step_agent(ctx: StepContext) -> Outcome:
    agent = agent_of(ctx.host, ctx.settings)
    if ctx.source is None:
        found = ctx.remote.run(agent_lookup_script(agent))
        if found.ok:
            answered, version = _version(ctx, found.stdout.strip())
            if answered:
                return ok(f"{version} ({found.stdout.strip()}); provision.agent_source is not set")
        return failed(f"the agent `{agent}` is not installed (or does not run)",
                      "set provision.agent_source in orch.yml (npm:@anthropic-ai/claude-code, or "
                      "a local file to upload) and run provision again, or install it by hand")
    assert ctx.target is not None
    path = ctx.abs(ctx.target.path)
    if ctx.source.kind == "npm":
        return _agent_npm(ctx, path)
    return _agent_file(ctx, path)


# --------------------------------------------------------------------------- workspace

_DIR_STATE = """w={path}
echo "uid=$(id -u)"; echo "gid=$(id -g)"
if [ -d "$w" ]; then l=$(ls -ldn -- "$w") && set -f && set -- $l && echo "mode=$1" && echo "owner=$3"
elif [ -e "$w" ]; then echo state=other
else echo state=missing
fi"""


def step_workspace(ctx: StepContext) -> Outcome:
    root = ctx.host.workspace_root
    path = ctx.abs(root)
    q = shell.quote(path)
    state = _key_values(ctx.remote.run(_DIR_STATE.format(path=q)).stdout)
    fix = (f"make workspace_root ({root}) a directory the login user can create, or set "
           f"{ctx.host.name}'s workspace_root in the inventory")
    if state.get("state") == "other":
        return failed(f"{path} exists and is not a directory", fix)
    todo: list[tuple[str, str, str, bool]] = []      # (done, would do, sh, as root)
    if state.get("state") == "missing":
        todo.append((f"created {path} (0700)", f"create {path} (0700)",
                     f"mkdir -p -- {q} && chmod 0700 -- {q}", False))
    else:
        owner, uid = state.get("owner"), state.get("uid")
        if owner != uid:
            todo.append((f"owner uid {owner} -> {uid}", f"chown {path} to uid {uid} (now {owner})",
                         f"chown {uid}:{state.get('gid')} -- {q}", True))
        mode = state.get("mode", "")[:10]
        if mode != "drwx------":
            todo.append((f"mode {mode} -> drwx------", f"chmod 0700 {path} (now {mode})",
                         f"chmod 0700 -- {q}", False))
    if not todo:
        return ok(f"{path} (0700, the login user's)")
    if ctx.check:
        return changed("would " + "; ".join(plan for _, plan, _, _ in todo))
    for _done, plan, script, root_needed in todo:
        try:
            result = ctx.as_root(script) if root_needed else ctx.remote.run(script)
        except PrivilegeError as exc:
            return failed(f"{path} belongs to uid {state.get('owner')}; {exc.message}",
                          f"{exc.fix}: sudo chown {state.get('uid')} {path}")
        if not result.ok:
            return failed(f"cannot {plan}: {_tail(result)}", fix)
    return changed("; ".join(done for done, _, _, _ in todo))


# --------------------------------------------------------------------------- git identity

_AUTHOR = re.compile(r"^(?P<name>[^<>]+?) <(?P<email>[^<>\s]+)>$")


def step_identity(ctx: StepContext) -> Outcome:
    """A global user.name/user.email for the login user when it has none (git.author).
    An identity the user already has is never replaced: orch commits as git.author
    anyway, this only keeps git commands run by hand on the host from stopping."""
    read = ctx.remote.run("printf 'name=%s\\nemail=%s\\n' \"$(git config --global user.name)\" "
                          "\"$(git config --global user.email)\"")
    have = _key_values(read.stdout)
    match = _AUTHOR.match(ctx.settings.git.author)
    wanted = {"name": match.group("name"), "email": match.group("email")} if match else {}
    missing = {k: v for k, v in wanted.items() if not have.get(k)}
    if not missing:
        return ok(f"{have.get('name')} <{have.get('email')}>")
    what = ", ".join(f"user.{k} {v}" for k, v in missing.items())
    if ctx.check:
        return changed(f"would set {what} (git config --global)")
    script = " && ".join(f"git config --global user.{k} {shell.quote(v)}" for k, v in missing.items())
    result = ctx.remote.run(script)
    if not result.ok:
        return failed(f"cannot set {what}: {_tail(result)}",
                      f"run git config --global user.name/user.email on {ctx.host.name}")
    return changed(f"set {what}")


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[StepContext], Outcome]
    needs: tuple[str, ...] = ()      # steps that must not have failed


STEPS: tuple[Step, ...] = (
    Step("git", step_git),
    Step("agent", step_agent),
    Step("workspace", step_workspace),
    Step("git-identity", step_identity, needs=("git",)),
)


__all__ = ["ADVICE", "Outcome", "PACKAGE_MANAGERS", "STEPS", "Step", "StepContext",
           "agent_lookup_script", "executable_mode", "installed_version", "package_manager"]
