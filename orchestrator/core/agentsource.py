"""Where `orch provision` gets the agent CLI from, and where on a host it puts it. Pure.

`provision.agent_source` is one of:
- `npm:<name>[@<version|tag|range>]`, a package of the npm registry (the one the host's
  npm is configured with, e.g. a mirror in ~/.npmrc), installed with the host's npm into
  the login user's own prefix: no root, no system directories;
- a file on the central machine (a native build of the agent, or a wrapper script),
  uploaded as is, for fleets without internet.

The agent lands where the inventory says it runs (the host's `agent:`, else
agent.command): a path (`~/…` or absolute) is the file itself; a bare name `claude`
goes to `~/.local/bin/claude`, one of the places the agent lookup searches (issue 15's
rule). For npm, the path must read `<prefix>/bin/<name>`: npm links a package's
binaries into `<prefix>/bin/`, so that is where `npm install --prefix <prefix>` puts it.

Only an exact version (`@2.1.197`) pins: a host with another version is upgraded or
downgraded to it. A bare name, a tag or a range is installed when the agent is missing
and left alone otherwise, so a second run changes nothing; pin a version to move hosts.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

NPM_PREFIX = "npm:"
DEFAULT_BIN_DIR = "~/.local/bin"     # where a bare agent name is installed
DEFAULT_NPM_PREFIX = "~/.local"      # ...and the npm prefix that puts it there

# npm's rules for names (lowercase, URL-safe, 214 characters at most, an optional
# @scope/), and a version part of the characters versions, tags and ranges use: no
# spaces, no shell syntax, nothing that npm would read as another kind of spec.
_NPM_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
_NPM_VERSION = re.compile(r"^[A-Za-z0-9.^~<>=*+_|-]+$")
_EXACT = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class AgentSource:
    """A parsed `provision.agent_source`."""

    kind: str                     # "npm" | "file"
    text: str                     # as configured: shown in reports
    package: str = ""             # npm: the package name
    version: str = ""             # npm: what follows the name's @, "" for none
    path: str = ""                # file: the local path

    @property
    def spec(self) -> str:
        """The npm package spec handed to `npm install`."""
        return f"{self.package}@{self.version}" if self.version else self.package

    @property
    def pinned(self) -> str | None:
        """The exact version hosts must have, or None when any installed one will do."""
        return self.version if self.kind == "npm" and _EXACT.match(self.version) else None


def parse_agent_source(text: str) -> AgentSource:
    """`npm:<spec>` or a local path -> AgentSource; ValueError says what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("empty: give npm:<package spec> or the path of a local file")
    if not text.startswith(NPM_PREFIX):
        return AgentSource("file", text, path=text)
    spec = text[len(NPM_PREFIX):].strip()
    at = spec.find("@", 1)                   # a leading @ starts a scope, not a version
    package, version = (spec, "") if at < 0 else (spec[:at], spec[at + 1:])
    if len(package) > 214 or not _NPM_NAME.match(package):
        raise ValueError(f"{package!r} is not an npm package name "
                         "(e.g. npm:@anthropic-ai/claude-code@2.1.197)")
    if at >= 0 and not _NPM_VERSION.match(version):
        raise ValueError(f"{version!r} is not a version, tag or range (no spaces); "
                         "pin an exact version, e.g. npm:@anthropic-ai/claude-code@2.1.197")
    return AgentSource("npm", text, package=package, version=version)


@dataclass(frozen=True)
class InstallTarget:
    """Where the agent goes on a host: `path` may start with ~/ (the login user's home)."""

    path: str
    npm_prefix: str | None = None   # npm only: the --prefix that links the binary at `path`


def install_target(agent: str, source: AgentSource) -> InstallTarget:
    """The file the host's agent command names, for installing into. ValueError when it
    cannot be one: a command with arguments, or a relative path (the job runs the agent
    from the repository's directory, where a relative path means something else)."""
    words = shlex.split(agent) if agent.strip() else []
    if len(words) != 1:
        raise ValueError(f"{agent!r} is a command with arguments, not a file to install; "
                         "set the host's `agent:` to a path (e.g. ~/.local/bin/claude)")
    word = words[0]
    if "/" not in word:
        path = f"{DEFAULT_BIN_DIR}/{word}"
        return InstallTarget(path, DEFAULT_NPM_PREFIX if source.kind == "npm" else None)
    if not (word.startswith("/") or word.startswith("~/")):
        raise ValueError(f"{agent!r} is a relative path; give an absolute or ~/ path")
    if source.kind != "npm":
        return InstallTarget(word)
    parent, _, _name = word.rpartition("/")
    prefix, _, bin_dir = parent.rpartition("/")
    if bin_dir != "bin" or not prefix:
        raise ValueError(f"{agent!r}: npm installs binaries into PREFIX/bin/, so with an npm "
                         "source the agent path must end in /bin/NAME (e.g. ~/.local/bin/claude)")
    return InstallTarget(word, prefix)


__all__ = ["AgentSource", "InstallTarget", "install_target", "parse_agent_source"]
