"""The `agent` step: the agent CLI from provision.agent_source, at the host's agent path.

A local file is compared by SHA-256 and uploaded when it differs (temporary name, 0755,
rename); an npm package is installed with the host's npm into the login user's prefix
when it is missing or not the pinned version. Either way the step ends by checking that
the file answers `--version` and that the host's agent command resolves to it.
core/agentsource.py decides where the agent goes; this module only does it.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from ...core import agentpath, shell
from ..facts import agent_of
from .step import INSTALL_TIMEOUT, Outcome, StepContext, changed, failed, first_line, key_values, ok, tail

VERSION_TIMEOUT = 20.0       # seconds for `<agent> --version`


def agent_lookup_script(agent: str) -> str:
    """sh that prints the path the host's agent command runs, or exits 1: issue 15's one
    rule, core/agentpath.py's orch_find_agent, the same shell code the probe, bootstrap
    and the job run (so provision can never disagree with them about a host)."""
    return (agentpath.FIND_AGENT_SH + agentpath.set_words_sh(agent) + "\n"
            'orch_find_agent "$1" || exit 1\nprintf \'%s\\n\' "$AGENT_PATH"\n')


def _version(ctx: StepContext, path: str) -> tuple[bool, str]:
    """(answered, first line) of `<path> --version`."""
    result = ctx.remote.run(f"{shell.quote(path)} --version </dev/null 2>&1", timeout=VERSION_TIMEOUT)
    return result.ok and bool(result.stdout.strip()), first_line(result.stdout) or tail(result)


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


def executable_mode(ls_mode: str) -> bool:
    """Whether an `ls -l` mode string reads -rwxr-xr-x (0755; ACL markers ignored). Pure."""
    return ls_mode[:10] == "-rwxr-xr-x"


def _agent_file(ctx: StepContext, path: str) -> Outcome:
    assert ctx.local_file is not None and ctx.local_sha256 is not None
    state = key_values(ctx.remote.run(_FILE_STATE.format(path=shell.quote(path))).stdout)
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
            return failed(f"cannot chmod {path}: {tail(result)}", f"chmod 0755 {path} on {ctx.host.name}")
    return _verify_agent(ctx, path, what)


def _upload(ctx: StepContext, local: Path, path: str) -> str | None:
    """Upload to a temporary name beside `path`, 0755, then rename over it (a running
    agent keeps its old file; a cut upload leaves no half file at `path`)."""
    directory, _, name = path.rpartition("/")
    directory = directory or "/"
    made = ctx.remote.run(f"mkdir -p -- {shell.quote(directory)} && mktemp "
                          f"{shell.quote(directory + '/.' + name + '.orch-XXXXXX')}")
    if not made.ok:
        return tail(made)
    tmp = made.stdout.strip().splitlines()[-1]
    try:
        ctx.remote.put(local, tmp)
    except OSError as exc:
        ctx.remote.run(f"rm -f -- {shell.quote(tmp)}")
        return str(exc) or type(exc).__name__
    moved = ctx.remote.run(f"chmod 0755 -- {shell.quote(tmp)} && mv -f -- {shell.quote(tmp)} "
                           f"{shell.quote(path)} || {{ rm -f -- {shell.quote(tmp)}; exit 1; }}")
    return None if moved.ok else tail(moved)


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
        return failed(f"npm install {source.spec} failed (exit {result.exit_status}): {tail(result)}",
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


__all__ = ["agent_lookup_script", "executable_mode", "installed_version", "step_agent"]
