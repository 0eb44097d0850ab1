"""orch.yml -> Settings; every mistake names the file, the line and the dotted key.

The loader is a table: `SCHEMA` maps each dotted key ("agent.max_turns") to a validator
that checks and converts the YAML value. Sections and the set of known keys (for the
"did you mean" hint) come from the same table, so adding a setting is one line here and
one field in settings.py. Nothing else in orch reads orch.yml.

Relative paths in orch.yml (inventory, state_dir, ...) are taken relative to the file's
own directory, so a config under ~/.config/orch works the same from cron as from a shell.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.report import LOG_TAIL_MODES
from ..core.trust import COMMENT_MODES, PERMISSIONS
from ..errors import ConfigError
from .settings import DEFAULT_SPECIALTIES, GIT_VIA, Settings
from .yamlfile import (
    Loc,
    Validator,
    boolean,
    choice,
    describe,
    expect_mapping,
    integer,
    is_number,
    key_line,
    list_of,
    load_validated,
    number,
    optional,
    parse_document,
    read_text,
    string,
    string_key,
    unknown_key,
)

PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk")

# --------------------------------------------------------------------------- durations

_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_PLAIN = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
DURATION_HINT = "durations read 90s, 5m, 2h, 1h30m, or a number of seconds"


def parse_duration(value: Any) -> float:
    """Seconds from a number (already seconds) or text like "90s", "5m", "2h", "1h30m".

    Units go from largest to smallest, each at most once, so "30m1h" (surely a typo) is
    refused rather than guessed at. Raises ValueError with a message fit for a user.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration, got {describe(value)}")
    if isinstance(value, str) and value.strip().startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if isinstance(value, (int, float)) or _PLAIN.match(value):
        seconds = float(value)
    else:
        seconds = _parse_units(value)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {describe(value)}")
    return seconds


def _parse_units(text: str) -> float:
    lowered = text.strip().lower()
    total, pos, last_size = 0.0, 0, float("inf")
    while pos < len(lowered):
        match = _PART.match(lowered, pos)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f"expected a duration like 90s, 5m, 2h or 1h30m, got {text!r}")
        size = _UNITS[match.group(2)]
        if size >= last_size:
            raise ValueError(f"units of a duration go from largest to smallest, once each: {text!r}")
        total += float(match.group(1)) * size
        last_size, pos = size, match.end()
    if pos == 0:
        raise ValueError(f"expected a duration like 90s, 5m, 2h or 1h30m, got {text!r}")
    return total


# --------------------------------------------------------------------------- validators


def duration(*, positive: bool = True) -> Validator:
    """A duration in seconds; `positive` refuses 0 where 0 would mean "never wait"."""
    def check(value: Any, loc: Loc) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            loc.error(str(exc), hint=DURATION_HINT)
        if positive and seconds <= 0:
            loc.error(f"must be more than 0, got {describe(value)}", hint=DURATION_HINT)
        return seconds
    return check


def local_path(value: Any, loc: Loc) -> str:
    """A path on this machine; a relative one is relative to the config file's directory."""
    text = string(value, loc)
    if text.startswith("~") or Path(text).is_absolute():
        return text
    return str(loc.path.parent / text)


def state_address(value: Any, loc: Loc) -> str:
    """Where tasks are kept: tinydb:PATH (relative to the config file) or a PostgreSQL URL
    (store/__init__.py BACKENDS). A wrong value is shown without any password."""
    text = string(value, loc)
    scheme = text.split(":", 1)[0].lower()
    if scheme == "tinydb":
        return "tinydb:" + local_path(text.split(":", 1)[1] or ".", loc)
    if scheme in ("postgresql", "postgres") and text[len(scheme):].startswith("://"):
        return text
    # The value itself is not repeated: it may hold a password.
    loc.error(f"expected tinydb:PATH or postgresql://..., got a value of scheme {scheme[:20]!r}",
              hint="e.g. state: postgresql://orch@db.example:5432/orch (the password in "
                   "PGPASSWORD or ~/.pgpass, not here)")


_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def repo_name(value: Any, loc: Loc) -> str:
    text = string(value, loc)
    if not _REPO.match(text) or text.endswith("/") or ".." in text:
        loc.error(f"expected owner/name, got {describe(value)}",
                  hint="e.g. repos: [octo-org/api]; not a URL")
    return text


_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")


def login(value: Any, loc: Loc) -> str:
    """A GitHub login (a user, or an app's `name[bot]`), without the @."""
    text = string(value, loc).removeprefix("@")
    if not _LOGIN.match(text):
        loc.error(f"not a GitHub login: {describe(value)}", hint="e.g. reviewers: [alice, bob]")
    return text


def mention_handle(value: Any, loc: Loc) -> str:
    """trigger.mention: `@` and a login (what a person types first in a command comment)."""
    text = string(value, loc)
    if not text.startswith("@") or not _LOGIN.match(text[1:]):
        loc.error(f"expected @ and a login, got {describe(value)}", hint='e.g. mention: "@orch"')
    return text


_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN_LIKE = re.compile(r"^(gh[pousr]_|github_pat_)")


def env_name(value: Any, loc: Loc) -> str:
    """The *name* of an environment variable; a token pasted here is refused, not stored."""
    text = string(value, loc)
    if _TOKEN_LIKE.match(text):
        loc.error("this looks like a token, not the name of a variable",
                  hint="put the token in an environment variable and name the variable here; "
                       "revoke the token if this file was shared")
    if not _ENV.match(text):
        loc.error(f"not an environment variable name: {describe(value)}", hint="e.g. GITHUB_TOKEN")
    return text


_NEVER_PASSED = ("SSH_AUTH_SOCK", "SSH_AGENT_PID")


def passable_env_name(value: Any, loc: Loc) -> str:
    """A variable a job may inherit (agent.env_pass): never the ssh-agent's socket."""
    name = env_name(value, loc)
    if name in _NEVER_PASSED:
        loc.error(f"{name} is never passed to a job: it would hand the host your ssh-agent",
                  hint="give the host a key of its own (or a deploy key) instead")
    return name


def url(value: Any, loc: Loc) -> str:
    text = string(value, loc)
    if not re.match(r"^https?://[^\s/]+", text):
        loc.error(f"expected an http(s) URL, got {describe(value)}",
                  hint="GitHub Enterprise: https://HOST/api/v3")
    return text.rstrip("/")


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url(value: Any, loc: Loc) -> str:
    """github.url: https, or http only to this machine (the token travels with every
    request), and no credentials in it (the token comes from github.token_env)."""
    text = url(value, loc)
    parts = urlsplit(text)
    if parts.username or parts.password:
        loc.error("the URL holds credentials", hint="remove user:password@; the token comes "
                  "from the variable named by github.token_env")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        loc.error(f"http:// to {parts.hostname} would send the GitHub token in clear",
                  hint="use https:// (GitHub Enterprise: https://HOST/api/v3); plain http is "
                       "accepted only to this machine (127.0.0.1, ::1, localhost)")
    return text


def clone_url(value: Any, loc: Loc) -> str:
    """A repo_urls value: a git URL or path without a secret in it (config files get
    shared, and the URL reaches every host's job.sh and git config)."""
    text = string(value, loc)
    hint = ("remove the credentials: give the hosts a credential helper (git config "
            "credential.helper) or an SSH key, and use an https:// or git@host: URL")
    if "://" in text:      # scp-like git@host:path has a user, never a password
        parts = urlsplit(text)
        if parts.password or (parts.username and parts.scheme in ("http", "https")):
            loc.error("the clone URL holds credentials", hint=hint)
    return text


_AUTHOR = re.compile(r"^[^<>\n]+ <[^<>\s]+>$")


def git_author(value: Any, loc: Loc) -> str:
    text = string(value, loc)
    if not _AUTHOR.match(text):
        loc.error(f"expected \"Name <email>\", got {describe(value)}",
                  hint='e.g. author: "orch <orch@example.com>"')
    return text


def _string_map(key_check: Validator, value_check: Validator) -> Validator:
    """A mapping of name -> value, both checked, errors at the entry's line."""
    def check(value: Any, loc: Loc) -> dict[str, Any]:
        mapping = expect_mapping(value, loc)
        out: dict[str, Any] = {}
        for key, item in mapping.items():
            entry = loc.entry(mapping, key)
            out[key_check(string_key(key, entry), entry)] = value_check(item, entry)
        return out
    return check


def _env_value(value: Any, loc: Loc) -> str:
    if is_number(value) or isinstance(value, str):
        return str(value)
    loc.error(f"expected a string, got {describe(value)}")


_SPECIALTY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SPECIALTY_KEYS = ("labels", "keywords")


def _specialty_name(value: Any, loc: Loc) -> str:
    if not _SPECIALTY_NAME.match(value):
        loc.error(f"not a valid specialty name: {value!r}",
                  hint="lowercase letters, digits, '-' and '_'")
    return str(value)


def _word_list(value: Any, loc: Loc) -> list[str]:
    return [str(v).strip() for v in list_of(string, "list of strings")(value, loc)]


def specialties(value: Any, loc: Loc) -> dict[str, dict[str, list[str]]]:
    """Specialty -> {labels, keywords}; named ones replace the defaults, `name: null` drops one.

    Returns the full table (defaults merged), so classify never sees a partial config.
    """
    table = {k: {kk: list(vv) for kk, vv in v.items()} for k, v in DEFAULT_SPECIALTIES.items()}
    for name, spec in expect_mapping(value, loc).items():
        entry = loc.entry(value, name)
        name = _specialty_name(string_key(name, entry), entry)
        if spec is None:
            table.pop(name, None)
            continue
        rules = expect_mapping(spec, entry)
        for key in rules:
            if key not in _SPECIALTY_KEYS:
                unknown_key(entry.entry(rules, key), key, _SPECIALTY_KEYS)
        table[name] = {k: _word_list(rules.get(k) or [], entry.entry(rules, k)) for k in _SPECIALTY_KEYS}
    return table


def agent_source(value: Any, loc: Loc) -> str:
    """`npm:<package spec>` as written, or a local file's path (relative to orch.yml's
    directory, like every local path); the file itself is looked at by `orch provision`."""
    from ..core.agentsource import parse_agent_source
    text = string(value, loc)
    try:
        source = parse_agent_source(text)
    except ValueError as exc:
        loc.error(str(exc), hint="npm:@anthropic-ai/claude-code@2.1.197, or a file such as "
                                 "~/dist/claude (uploaded to each host)")
    return source.text if source.kind == "npm" else local_path(source.path, loc)


# --------------------------------------------------------------------------- the schema

_MISS = "a number of dollars, or null for no limit"

# Dotted key -> validator. A key "a.b" sets settings.a.b; a key without a dot sets
# settings.<key>. The order is the order of docs/SPEC.md, then orch's extra knobs.
SCHEMA: dict[str, Validator] = {
    "github.url": api_url,
    "github.token_env": env_name,
    "github.timeout": duration(),
    "github.retries": integer(0),
    "repos": list_of(repo_name, "list of owner/name"),
    "repo_urls": _string_map(repo_name, clone_url),
    "trigger.label": string,
    "trigger.min_permission": choice(*PERMISSIONS),
    "trigger.comments": choice(*COMMENT_MODES),
    "trigger.mention": mention_handle,
    "trigger.review": boolean,
    "ssh.known_hosts": local_path,
    "ssh.config": optional(local_path),
    "ssh.connect_timeout": duration(),
    "ssh.keepalive_interval": duration(positive=False),
    "ssh.keepalive_count_max": integer(1),
    "ssh.max_sessions": integer(1, hint="sshd allows 10 sessions per connection by default"),
    "ssh.client_keys": list_of(local_path, "list of paths"),
    "agent.command": string,
    "agent.max_turns": integer(1),
    "agent.timeout": duration(),
    "agent.max_cost_usd": optional(number(0, hint=_MISS)),
    "agent.daily_budget_usd": optional(number(0, hint=_MISS)),
    "agent.model": optional(string),
    "agent.permission_mode": choice(*PERMISSION_MODES),
    "agent.allow_root": boolean,
    "agent.env": _string_map(env_name, _env_value),
    "agent.env_pass": list_of(passable_env_name, "list of variable names"),
    "agent.credentials": _string_map(passable_env_name, env_name),
    "git.author": git_author,
    "git.via": choice(*GIT_VIA),
    "poll.lost_after": duration(),
    "poll.max_attempts": integer(1),
    "poll.start_grace": duration(),
    "tests.command": optional(string),
    "tests.max_fix_attempts": integer(0),
    "tests.timeout": duration(),
    "workspace.keep_on_success": boolean,
    "workspace.keep_on_failure": boolean,
    "metrics.textfile": optional(local_path),
    "report.log_tail": choice(*LOG_TAIL_MODES),
    "provision.agent_source": optional(agent_source),
    "pr.draft": boolean,
    "pr.reviewers": list_of(login, "list of GitHub logins"),
    "pr.labels": list_of(string, "list of label names"),
    "split.by_labels": boolean,
    "split.max_parts": integer(1, 16),
    "specialties": specialties,
    "inventory": optional(local_path),
    "state_dir": optional(local_path),
    "state": optional(state_address),
    "playbooks_dir": optional(local_path),
    "prompts_dir": optional(local_path),
    "allow_local_github": boolean,
}

SECTIONS: dict[str, tuple[str, ...]] = {}
for _dotted in SCHEMA:
    if "." in _dotted:
        _section, _leaf = _dotted.split(".", 1)
        SECTIONS[_section] = SECTIONS.get(_section, ()) + (_leaf,)
TOP_LEVEL: tuple[str, ...] = tuple(dict.fromkeys(k.split(".", 1)[0] for k in SCHEMA))
# A leaf name -> its full key, to redirect keys written in the wrong section.
_LEAVES: dict[str, str] = {k.split(".", 1)[1]: k for k in SCHEMA if "." in k}


# --------------------------------------------------------------------------- loading


def load_settings(path: Path) -> Settings:
    """Read orch.yml: defaults for every key it leaves out, a ConfigError for any mistake.

    An empty file (or one holding only comments) gives the defaults.
    """
    path = Path(path)
    return load_validated(path, lambda doc: _settings(doc, path),
                          duplicate_hints={"": "a section appears twice: merge the two"})


def _settings(doc: Any, path: Path) -> Settings:
    """A parsed orch.yml (None when empty) -> Settings, or a ConfigError."""
    settings = Settings()
    settings.source = path
    root = Loc(path)
    if doc is None:
        return settings
    top = expect_mapping(doc, Loc(path, line=1), null_ok=False)
    for key, value in top.items():
        loc = root.entry(top, key)
        key = string_key(key, loc)
        if key in SECTIONS:
            _load_section(settings, key, value, loc)
        elif key in SCHEMA:
            setattr(settings, key, SCHEMA[key](value, loc))
        else:
            unknown_key(loc, key, TOP_LEVEL, elsewhere=_LEAVES)
    _check_token_not_passed(settings, top, root)
    _check_token_not_a_credential(settings, top, root)
    return settings


def _check_token_not_passed(settings: Settings, top: Mapping[Any, Any], root: Loc) -> None:
    """agent.env_pass must not hand a job the GitHub token (github.token_env may be
    written before or after it, so this is checked once both are read)."""
    token = settings.github.token_env
    if token not in settings.agent.env_pass:
        return
    agent = top.get("agent") or {}
    names = agent.get("env_pass") or []
    loc = root.entry(top, "agent").entry(agent, "env_pass")
    loc = loc.item(names, list(names).index(token)) if token in names else loc
    loc.error(f"{token} holds orch's GitHub token (github.token_env): it is never passed "
              f"to a job", hint="remove it from agent.env_pass; hosts push with their own "
                                "credentials (a deploy key, a credential helper)")


def _check_token_not_a_credential(settings: Settings, top: Mapping[Any, Any], root: Loc) -> None:
    """agent.credentials must not hand the agent orch's GitHub token either (the agent
    would hold push rights to every repository orch serves)."""
    token = settings.github.token_env
    agent = top.get("agent") or {}
    creds = agent.get("credentials") or {}
    for name, source in settings.agent.credentials.items():
        if source == token:
            root.entry(top, "agent").entry(agent, "credentials").entry(creds, name).error(
                f"{token} holds orch's GitHub token (github.token_env): it is never handed "
                f"to the agent", hint="name the variable that holds the agent's key "
                "(ANTHROPIC_API_KEY, or the CLAUDE_CODE_OAUTH_TOKEN `claude setup-token` gives)")


def _load_section(settings: Settings, section: str, value: Any, loc: Loc) -> None:
    """One `section:` mapping onto its settings dataclass, key by key through SCHEMA."""
    target = getattr(settings, section)
    mapping: Mapping[Any, Any] = expect_mapping(value, loc)
    for key, item in mapping.items():
        entry = loc.entry(mapping, key)
        key = string_key(key, entry)
        if key not in SECTIONS[section]:
            elsewhere = {leaf: full for leaf, full in _LEAVES.items() if not full.startswith(section + ".")}
            unknown_key(entry, key, SECTIONS[section], elsewhere=elsewhere)
        setattr(target, key, SCHEMA[f"{section}.{key}"](item, entry))


def locate(path: Path | None, dotted: str) -> Loc:
    """Where `dotted` (e.g. "provision.agent_source") is written in the YAML file at `path`,
    for a mistake found after loading (a file it names has gone): file, key and line.
    The line is that of the deepest key found; None when the file cannot be read."""
    if path is None:
        return Loc(Path("orch.yml"), dotted)
    path = Path(path)
    node: Any = None
    try:
        node = parse_document(read_text(path), path)
    except ConfigError:
        pass
    line = None
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            break
        line = key_line(node, part) or line
        node = node[part]
    return Loc(path, dotted, line)


__all__ = ["PERMISSIONS", "SCHEMA", "load_settings", "locate", "parse_duration"]
