"""The ssh config, read once per run and cut down per host, for asyncssh to parse.

Why: asyncssh parses the whole ssh config for every connection, shlex-splitting every
line of every Host block (~5 ms for a 400-line file): with 50 hosts, ~0.25 s of CPU per
`orch hosts`, all of it before the first packet. Most of those lines are in `Host`
blocks that cannot apply to the host being connected to.

How, with asyncssh's public interface only: each file is tokenized once per run (per
version on disk). For each host, the `Host` blocks whose patterns do not match the
host's name are left out, and the rest (in file order) is written to a private temporary
file, which asyncssh then reads itself, through the same `config=[path]` argument it would
get for the user's file: asyncssh still decides everything a line means. Whether a `Host`
line matches is what OpenSSH (and asyncssh) decide from the name as given, before any
HostName: a list of plain names matches exactly those names (what fnmatch does without
wildcards), and any other list is asked of asyncssh's own matcher
(asyncssh.pattern.WildcardPatternList).

A file is handed over whole (the user's path, as before this existed) when cutting it
could change what asyncssh sees:
- a line shlex cannot split (asyncssh rejects the file even when the line is in a block
  that does not apply: it must say so in its own words);
- a host whose config uses ProxyJump (asyncssh resolves the hop with the same config),
  CanonicalizeHostname or `Match final` (both re-read the config for another name);
- any error while reading the cut copy (the user's file is read instead, so the error
  names the user's file and line).
`Match` blocks and `Include` lines are always kept as they are.
"""

from __future__ import annotations

import atexit
import functools
import getpass
import hashlib
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.settings import SSHSettings
from ..core.models import Host

# OpenSSH's grammar (ssh_config(5)): the conditional keywords, whose arguments may hold
# "=" and which are read even outside a matching block; the keywords whose value is the
# rest of the line, unsplit.
_CONDITIONALS = frozenset({"host", "match"})
_NO_SPLIT = frozenset({"proxycommand", "remotecommand"})
# No quote, no backslash, and no whitespace that str.split() knows but shlex does not.
_PLAIN_LINE = re.compile(r"[^'\"\\\x0b\x0c\x1c-\x1f]*\Z")
# What makes a Host pattern more than a plain name (asyncssh.pattern: fnmatch, "!").
_WILD = re.compile(r"[*?\[\]!]")
CONFIG_KEYS = ("Hostname", "Port", "User", "IdentityFile", "HostKeyAlias")


@dataclass(frozen=True)
class _Block:
    """Consecutive lines of one config file: before the first Host/Match (`host=None`,
    `always` True), a `Match` block (always kept), or a `Host` block with its patterns."""

    first: int                  # index of its first line in the file
    end: int                    # one past its last line
    patterns: str | None        # a Host line's patterns joined by "," (as asyncssh joins them)
    always: bool = False


@dataclass(frozen=True)
class _Parsed:
    lines: tuple[str, ...]
    blocks: tuple[_Block, ...]
    splittable: bool            # False: some line shlex cannot split
    # Host blocks whose patterns are plain names (no wildcard, no negation), by name:
    # such a block applies to exactly the names it lists (fnmatch without wildcards is
    # string equality on POSIX), so a host finds its own blocks without a match per block.
    named: dict[str, tuple[int, ...]]
    wild: tuple[int, ...]       # the other Host blocks (asyncssh's matcher decides)


_PARSED: dict[tuple, _Parsed] = {}


def config_paths(ssh: SSHSettings) -> list[str]:
    """The ssh config to honour: [] when disabled (None) or when the file is missing."""
    if not ssh.config:
        return []
    path = os.path.expanduser(os.path.expandvars(ssh.config))
    return [path] if os.path.isfile(path) else []


def _split(line: str) -> tuple[str, list[str]] | None:
    """(lowercased keyword, arguments) of one non-blank, non-comment line, split as
    asyncssh's parser splits it; None when shlex cannot split it."""
    if line.isascii() and _PLAIN_LINE.match(line):
        words = line.split()   # what shlex.split gives for such a line, 20x faster
    else:
        try:
            words = shlex.split(line)
        except ValueError:
            return None
    args: list[str] = []
    keyword = ""
    allow_equal = True
    for i, word in enumerate(words, 1):
        if word.startswith("="):
            if len(word) > 1:
                args.append(word[1:])
        elif not allow_equal:
            args.extend(words[i - 1:])
            break
        elif word.endswith("="):
            args.append(word[:-1])
        elif "=" in word:
            key, value = word.split("=", 1)
            args += [key, value]
        else:
            args.append(word)
        if i == 1:
            keyword = args.pop(0).lower()
            allow_equal = keyword in _CONDITIONALS
    if keyword in _NO_SPLIT:
        args = [line[len(keyword):].strip()]
    return keyword, args


def _parse(path: str) -> _Parsed:
    """The file's lines and blocks, once per version of the file on disk."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    parsed = _PARSED.get(key)
    if parsed is not None:
        return parsed
    with open(path) as fh:
        lines = tuple(fh.read().splitlines(keepends=True))
    blocks: list[_Block] = []
    start, patterns, always, splittable = 0, None, True, True
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        split = _split(line)
        if split is None:
            splittable = False
            continue
        keyword, args = split
        if keyword in _CONDITIONALS:
            blocks.append(_Block(start, i, patterns, always))
            start = i
            # A Host line without patterns is asyncssh's error to raise: keep it.
            patterns = ",".join(args) if keyword == "host" and args else None
            always = patterns is None
    blocks.append(_Block(start, len(lines), patterns, always))
    kept = tuple(b for b in blocks if b.end > b.first)
    named: dict[str, list[int]] = {}
    wild: list[int] = []
    for i, b in enumerate(kept):
        if b.always or b.patterns is None:
            continue
        if _WILD.search(b.patterns):
            wild.append(i)
        else:
            for name in b.patterns.split(","):
                named.setdefault(name, []).append(i)
    parsed = _Parsed(lines, kept, splittable, {k: tuple(v) for k, v in named.items()},
                     tuple(wild))
    if len(_PARSED) > 32:
        _PARSED.clear()
    _PARSED[key] = parsed
    return parsed


@functools.lru_cache(maxsize=4096)
def _host_patterns(patterns: str) -> Any:
    # Compiled once per run per Host line (asyncssh compiles it for each host and line).
    from asyncssh.pattern import WildcardPatternList
    return WildcardPatternList(patterns)


@functools.cache
def _scratch() -> Path:
    """A private directory for the cut copies, removed when the process ends."""
    path = Path(tempfile.mkdtemp(prefix="orch-ssh-config-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def cut_for(path: str, name: str) -> str:
    """A copy of the config file at `path` holding only what can apply to a host given
    as `name` (the other Host blocks left out); `path` itself when it cannot be cut."""
    parsed = _parse(path)
    if not parsed.splittable:
        return path
    applies = set(parsed.named.get(name, ()))
    applies.update(i for i in parsed.wild if _host_patterns(parsed.blocks[i].patterns).matches(name))
    chosen = [b for i, b in enumerate(parsed.blocks)
              if b.always or b.patterns is None or i in applies]
    if len(chosen) == len(parsed.blocks):
        return path
    text = "".join(line for b in chosen for line in parsed.lines[b.first:b.end])
    digest = hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()[:24]
    target = _scratch() / f"{digest}.conf"
    if not target.exists():
        # Named by its content, in this process's own directory: written once, never
        # replaced, so no reader can see it half written.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return str(target)


def _load(host: Host, paths: list[str]) -> Any:
    from asyncssh.config import SSHClientConfig
    return SSHClientConfig.load(None, paths, False, False, False, getpass.getuser(),
                                host.user if host.user else (), host.address,
                                host.port if host.port else ())


def _needs_whole_file(config: Any) -> bool:
    """Whether asyncssh must read the user's config itself: a ProxyJump hop is resolved
    with it, and hostname canonicalization or `Match final` re-read it for another name."""
    return bool(config.get("ProxyJump") or config.get("CanonicalizeHostname")
                or config.has_match_final())


def for_host(host: Host, paths: list[str]) -> tuple[Any, list[str]]:
    """(the config as it applies to `host`, as asyncssh loads it; the config paths to
    give asyncssh for its connection: the cut copies, or the user's files)."""
    cut = [cut_for(p, host.address) for p in paths]
    try:
        config = _load(host, cut)
    except Exception:
        if cut == paths:
            raise
        return _load(host, paths), paths   # asyncssh's own error, naming the user's file
    if cut != paths and _needs_whole_file(config):
        return _load(host, paths), paths
    return config, cut


def lookup(host: Host, ssh: SSHSettings) -> dict[str, Any]:
    """What the ssh config says about this host (HostName, Port, User, IdentityFile...),
    as asyncssh reads it; {} without a config, or when asyncssh cannot read it (it then
    says why when connecting)."""
    paths = config_paths(ssh)
    if not paths:
        return {}
    try:
        return values(for_host(host, paths)[0])
    except Exception:  # noqa: BLE001 - the config is applied by asyncssh anyway
        return {}


def values(config: Any) -> dict[str, Any]:
    return {k: config.get(k) for k in CONFIG_KEYS if config.get(k) is not None}
