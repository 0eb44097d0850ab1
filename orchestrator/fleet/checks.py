"""playbooks/bootstrap.yml as data: its checks, rendered into one sh script for a host,
and that script's output read back into verdicts. Pure (no SSH): fleet/bootstrap.py runs
the script and keeps the verdicts.

Why a playbook file and not code: the checks are sh that runs on the hosts, and a team
adapts them (another disk minimum, a proxy for `git ls-remote`) without touching orch;
`playbooks_dir:` in orch.yml points at their copy. It is rendered by the one playbook
engine (job/engine.py), the same quoting policy as dispatch.yml.

Why one script per host: a cold check is bound by round trips, so every check is
rendered into one POSIX sh script sent on stdin (`sh -s`, like the facts probe). Each
check runs in its own `sh -c`, so a broken snippet fails that check only, and reports
with marker lines that the pure parser (`parse_output`) reads:

    ::start:: NAME
    ::check:: NAME ok|fail|info|skip DETAIL     (zero or more)
    ::exit:: NAME RC
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.settings import Settings
from ..core import agentpath, shell
from ..core.models import Host
from ..errors import ConfigError, UsageError
from ..job import engine
from .facts import agent_of

PLAYBOOK = "bootstrap.yml"
STATUSES = ("ok", "info", "skip", "fail")
_RANK = {"skip": 0, "ok": 1, "info": 2, "fail": 3}   # the worst verdict of a check wins
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DETAIL_MAX = 400


@dataclass(frozen=True)
class RepoTarget:
    """A repository for the `repo` check: a label safe to print and the URL to try."""

    label: str
    url: str


@dataclass
class CheckResult:
    """One check on one host. `ok` is false only for status "fail"."""

    name: str
    status: str                        # ok | info | skip | fail
    detail: str = ""
    fix: str | None = None             # the advice, kept for failures only

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail,
                "fix": self.fix, "status": self.status}


# --------------------------------------------------------------------------- playbook

@dataclass(frozen=True)
class Check:
    name: str
    run: str
    fix: str
    run_line: int | None = None      # where each text starts in the playbook, for errors
    fix_line: int | None = None


@dataclass(frozen=True)
class Playbook:
    path: Path
    checks: tuple[Check, ...]
    vars: dict[str, Any]


def playbook_path(settings: Settings) -> Path:
    """bootstrap.yml in the playbooks directory in force (config/resources.py says which)."""
    from ..config.resources import playbooks_dir
    return playbooks_dir(settings) / PLAYBOOK


def load_playbook(path: Path) -> Playbook:
    """Parse and validate the playbook; mistakes are ConfigErrors naming file and line.

    Accepts a mapping {vars, checks} or a bare list of checks.
    """
    if not path.is_file():
        raise UsageError(f"{path}: bootstrap playbook not found",
                         hint="check playbooks_dir in orch.yml, or reinstall orch")
    where = str(path)
    data = engine.load_document(path)
    checks_node = data if isinstance(data, list) else \
        data.get("checks") if isinstance(data, dict) else None
    if not isinstance(checks_node, list):
        raise ConfigError(where, "expected a list of checks (or a mapping with `checks:`)")
    pvars = (data.get("vars") if isinstance(data, dict) else None) or {}
    if not isinstance(pvars, dict):
        raise ConfigError(where, "expected a mapping", key="vars", line=engine.key_line(data, "vars"))
    checks: list[Check] = []
    seen: set[str] = set()
    for i, item in enumerate(checks_node):
        key, line = f"checks[{i}]", engine.key_line(checks_node, i)
        if not isinstance(item, dict):
            raise ConfigError(where, "expected a mapping {name, run, fix}", key=key, line=line)
        unknown = set(item) - {"name", "run", "fix"}
        if unknown:
            raise ConfigError(where, f"unknown keys {sorted(unknown)}", key=key, line=line,
                              hint="a check has name, run and fix")
        name, run, fix = item.get("name"), item.get("run"), item.get("fix", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(where, f"name must be a short token (letters, digits, - _ .), "
                                     f"got {name!r}", key=f"{key}.name", line=line)
        if name in seen:
            raise ConfigError(where, f"duplicate check name {name!r}", key=f"{key}.name", line=line)
        if not isinstance(run, str) or not run.strip():
            raise ConfigError(where, "expected a sh snippet", key=f"{name}.run", line=line)
        if not isinstance(fix, str):
            raise ConfigError(where, "expected text", key=f"{name}.fix", line=line)
        seen.add(name)
        checks.append(Check(str(name), str(run), str(fix).strip(), engine.body_line(item, "run"),
                            engine.body_line(item, "fix")))
    return Playbook(path, tuple(checks), {str(k): _plain(v) for k, v in pvars.items()})


def _plain(value: Any) -> Any:
    """A playbook var as a plain bool, int, float or str (not ruamel's scalar types)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def with_vars(playbook: Playbook, overrides: Mapping[str, Any]) -> Playbook:
    """The playbook with some of its `vars` replaced (`orch bootstrap --var K=V`).
    Only declared vars: a typo must not silently leave the default in force."""
    unknown = sorted(set(overrides) - set(playbook.vars))
    if unknown:
        known = ", ".join(sorted(playbook.vars)) or "none"
        raise UsageError(f"unknown playbook var {', '.join(unknown)} (known: {known})",
                         hint=f"the vars are declared in {playbook.path}")
    return Playbook(playbook.path, playbook.checks, {**playbook.vars, **overrides})


def parse_var(text: str) -> tuple[str, Any]:
    """"KEY=VALUE" -> (KEY, int | float | str)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--var {text!r}: expected KEY=VALUE, e.g. min_free_mb=2048")
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


_HELPERS = r"""LC_ALL=C; export LC_ALL
_orch_say() {
  _orch_s=$1; shift
  printf '::check:: %s %s %s\n' "$_orch_name" "$_orch_s" "$(printf '%s' "$*" | tr '\n\r\t' '   ')"
}
ok() { _orch_say ok "$@"; }
fail() { _orch_say fail "$@"; }
info() { _orch_say info "$@"; }
skip() { _orch_say skip "$@"; }
run_for() { _orch_t=$1; shift; if command -v timeout >/dev/null 2>&1; then timeout "$_orch_t" "$@"; else "$@"; fi; }
""" + agentpath.FIND_AGENT_SH

BEGIN = "::bootstrap:: begin"
END = "::bootstrap:: end"


_VALUES_HINT = ("snippets see host, agent, agent_words, workspace_root, allow_root, repos and "
                "the playbook's vars")


@dataclass(frozen=True)
class RenderedCheck:
    name: str
    snippet: str      # a complete sh script: the helpers, then the check's body
    fix: str          # the advice, one line of plain text


def render_checks(playbook: Playbook, host: Host, settings: Settings,
                  repos: list[RepoTarget]) -> list[RenderedCheck]:
    """Every check of the playbook rendered for `host` (errors name file and line)."""
    values: dict[str, Any] = dict(playbook.vars)
    command = agent_of(host, settings)
    values.update(host=host.name, agent=command, agent_words=agentpath.words(command),
                  workspace_root=host.workspace_root, allow_root=settings.agent.allow_root,
                  repos=[{"label": r.label, "url": r.url} for r in repos])
    where = str(playbook.path)
    out = []
    for check in playbook.checks:
        body = engine.render(engine.shell_environment(), check.run, values, file=where,
                             what=f"check {check.name}", line=check.run_line, hint=_VALUES_HINT)
        fix = engine.render(engine.text_environment(), check.fix, values, file=where,
                            what=f"check {check.name} (fix)", line=check.fix_line, hint=_VALUES_HINT)
        out.append(RenderedCheck(check.name, f"#!/bin/sh\n{_HELPERS}_orch_name={check.name}\n{body}",
                                 " ".join(fix.split())))
    return out


def render_script(playbook: Playbook, host: Host, settings: Settings,
                  repos: list[RepoTarget]) -> tuple[str, dict[str, str]]:
    """The one script for `host` (each check in its own `sh -c`, so that a broken one
    fails alone) and the rendered fix text of every check."""
    checks = render_checks(playbook, host, settings, repos)
    parts = ["{", f"echo '{BEGIN}'"]
    for c in checks:
        parts.append(f"echo '::start:: {c.name}'")
        parts.append(f"sh -c {shell.quote(c.snippet)} 2>&1")
        parts.append(f"echo \"::exit:: {c.name} $?\"")
    parts.append(f"echo '{END}'")
    parts.append("} < /dev/null")
    return "\n".join(parts) + "\n", {c.name: c.fix for c in checks}


# --------------------------------------------------------------------------- parsing

def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[:DETAIL_MAX - 3] + "..."


def parse_output(lines: Iterable[str], names: list[str], fixes: dict[str, str],
                 *, finished: bool = True) -> tuple[list[CheckResult], str | None]:
    """Marker lines -> one CheckResult per check, and an error for the whole script.

    Pure. Lines outside the markers (login noise) are ignored. A check that printed no
    verdict passes on exit 0 and fails otherwise, with its last output as the detail; a
    check the script never reached fails as "did not run".
    """
    verdicts: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    noise: dict[str, list[str]] = {n: [] for n in names}
    exits: dict[str, int] = {}
    started: set[str] = set()
    begun = ended = False
    current: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if line == BEGIN:
            begun = True
            continue
        if line == END:
            ended = True
            continue
        if not begun:
            continue
        tag, _, rest = line.partition(" ")
        if tag == "::start::" and rest in verdicts:
            current = rest
            started.add(rest)
        elif tag == "::exit::":
            name, _, rc = rest.partition(" ")
            if name in verdicts:
                exits[name] = int(rc) if rc.strip().isdigit() else 255
                current = None
        elif tag == "::check::" and current is not None:
            name, _, rest2 = rest.partition(" ")
            status, _, detail = rest2.partition(" ")
            if name == current and status in _RANK:
                verdicts[name].append((status, detail.strip()))
                continue
            noise[current].append(line)
        elif current is not None and line.strip():
            noise[current].append(line)
    results: list[CheckResult] = []
    for n in names:
        got = verdicts[n]
        if got:
            status = max((s for s, _ in got), key=_RANK.__getitem__)
            detail = "; ".join(d for _, d in got if d)
        elif n in exits:
            code = exits[n]
            tail = " ".join(noise[n][-3:])
            status = "ok" if code == 0 else "fail"
            detail = tail if code == 0 else f"exit {code}" + (f": {tail}" if tail else "")
        elif n in started:
            status, detail = "fail", "did not finish" + (
                f": {' '.join(noise[n][-3:])}" if noise[n] else "")
        else:
            status, detail = "fail", "did not run"
        results.append(CheckResult(n, status, clip(detail),
                                   fixes.get(n) if status == "fail" else None))
    error = None
    if not begun:
        error = "the bootstrap script did not run"
    elif not ended and finished:
        error = "the bootstrap script stopped before its end"
    return results, error
