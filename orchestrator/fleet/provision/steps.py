"""The steps of `orch provision`, in order: each checks one thing on a host, changes it
only when it differs from what orch needs, and says ok / changed / failed (with the fix).

STEPS is the table that orders them and says which step needs which; a new step is a
function of step.StepContext to step.Outcome and a row here. Under `--check`
(ctx.check) a step runs only what reads the host and answers "changed" with what it
would do. A step is idempotent by construction: it compares first, so a second run finds
nothing to do. What the steps run on a host is POSIX sh, and every value from the
inventory, the config or a host reaches sh through core/shell.py's quoting.

Step names are those of bootstrap's checks where they prepare the same thing (git,
agent, workspace, git-identity): run.py lines the two reports up by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...core import shell
from ...transport.fabric import PrivilegeError
from .agent import step_agent
from .step import Outcome, StepContext, changed, failed, first_line, key_values, ok, tail

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
        return ok(first_line(have.stdout))
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
        return failed(f"{missing}; {pm.shown} failed (exit {result.exit_status}): {tail(result)}",
                      f"run `{pm.shown}` on {ctx.host.name} and read its error")
    after = ctx.remote.run("git --version")
    if not after.ok:
        return failed(f"{pm.name} installed git, but the login user's PATH still has none",
                      f"put git's directory on the PATH sshd gives {ctx.host.name}'s sessions")
    return changed(f"installed with {pm.name}: {first_line(after.stdout)}")


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
    state = key_values(ctx.remote.run(_DIR_STATE.format(path=q)).stdout)
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
            return failed(f"cannot {plan}: {tail(result)}", fix)
    return changed("; ".join(done for done, _, _, _ in todo))


# --------------------------------------------------------------------------- git identity

_AUTHOR = re.compile(r"^(?P<name>[^<>]+?) <(?P<email>[^<>\s]+)>$")


def step_identity(ctx: StepContext) -> Outcome:
    """A global user.name/user.email for the login user when it has none (git.author).
    An identity the user already has is never replaced: orch commits as git.author
    anyway, this only keeps git commands run by hand on the host from stopping."""
    read = ctx.remote.run("printf 'name=%s\\nemail=%s\\n' \"$(git config --global user.name)\" "
                          "\"$(git config --global user.email)\"")
    have = key_values(read.stdout)
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
        return failed(f"cannot set {what}: {tail(result)}",
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


__all__ = ["ADVICE", "PACKAGE_MANAGERS", "STEPS", "Step", "package_manager"]
