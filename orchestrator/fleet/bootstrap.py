"""`orch bootstrap`: run playbooks/bootstrap.yml on hosts, report, and remember who failed.

Why a playbook file and not code: the checks are sh that runs on the hosts, and a team
adapts them (another disk minimum, a proxy for `git ls-remote`) without touching orch;
`playbooks_dir:` in orch.yml points at their copy.

Why one script per host: a cold check is bound by round trips, so every check is
rendered into one POSIX sh script sent on stdin (`sh -s`, like the facts probe). Each
check runs in its own `sh -c`, so a broken snippet fails that check only, and reports
with marker lines that the pure parser (`parse_output`) reads:

    ::start:: NAME
    ::check:: NAME ok|fail|info|skip DETAIL     (zero or more)
    ::exit:: NAME RC

Why a state file: dispatch must not choose a host that is known to be broken
(`failed_hosts`, used by pipeline/launch.py), yet bootstrap is recommended, not
mandatory: a host never bootstrapped is not refused. `bootstrap.json` keeps each
host's last verdict; it is replaced atomically under a file lock, so concurrent
`orch bootstrap` runs on different hosts never lose each other's results. A host
that could not be reached keeps its previous verdict (nothing was learned about it,
and the scheduler refuses unreachable hosts on its own).

Which repositories `repo` checks: `--clone-url URL` as given; `--repo OWNER/NAME`
through `repo_urls` in orch.yml, else derived from github.url
(https://api.github.com -> https://github.com/OWNER/NAME.git, GitHub Enterprise
https://HOST/api/v3 -> https://HOST/OWNER/NAME.git: the URL the job clones). With
neither option, every repo of the config's `repos:` the same way; with no repos the
check is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..config.settings import Settings
from ..core import shell
from ..core.models import Host
from ..errors import ConfigError, HostUnreachable, UsageError

if TYPE_CHECKING:
    import jinja2

    from ..app import App
    from .pool import Fleet

STATE_FILE = "bootstrap.json"
LOCK_FILE = "bootstrap.json.lock"
PLAYBOOK = "bootstrap.yml"
DEFAULT_TIMEOUT = 120.0            # seconds for one host's whole script
STATUSES = ("ok", "info", "skip", "fail")
_RANK = {"skip": 0, "ok": 1, "info": 2, "fail": 3}   # the worst verdict of a check wins
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_OWNER_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
DETAIL_MAX = 400


# --------------------------------------------------------------------------- results

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


@dataclass
class HostReport:
    """What bootstrap found on one host; `error` is set when the checks could not run."""

    host: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None      # HostUnreachable.REASONS, or "script"
    seconds: float | None = None
    at: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def reachable(self) -> bool:
        return self.error_kind not in HostUnreachable.REASONS

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok,
                "checks": [c.to_json() for c in self.checks], "error": self.error,
                "error_kind": self.error_kind, "reachable": self.reachable,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "at": self.at}


# --------------------------------------------------------------------------- playbook

@dataclass(frozen=True)
class Check:
    name: str
    run: str
    fix: str


@dataclass(frozen=True)
class Playbook:
    path: Path
    checks: tuple[Check, ...]
    vars: dict[str, Any]


def playbook_path(settings: Settings) -> Path:
    """bootstrap.yml from orchestrator.config.resources when that module exists (it knows the
    installed share/ dir), else settings.playbooks_dir, else the source tree's playbooks/."""
    try:
        from ..config.resources import playbooks_dir
    except ImportError:
        base = (Path(settings.playbooks_dir).expanduser() if settings.playbooks_dir
                else Path(__file__).resolve().parents[2] / "playbooks")
    else:
        base = Path(playbooks_dir(settings))
    return base / PLAYBOOK


def load_playbook(path: Path) -> Playbook:
    """Parse and validate the playbook; mistakes are ConfigErrors naming file and line.

    Accepts a mapping {vars, checks} or a bare list of checks.
    """
    import yaml
    if not path.is_file():
        raise UsageError(f"{path}: bootstrap playbook not found",
                         hint="check playbooks_dir in orch.yml, or reinstall orch")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(str(path), f"not valid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"checks": data}
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        raise ConfigError(str(path), "expected a list of checks (or a mapping with `checks:`)")
    pvars = data.get("vars") or {}
    if not isinstance(pvars, dict):
        raise ConfigError(str(path), "expected a mapping", key="vars")
    checks: list[Check] = []
    seen: set[str] = set()
    for i, item in enumerate(data["checks"]):
        key = f"checks[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(str(path), "expected a mapping {name, run, fix}", key=key)
        unknown = set(item) - {"name", "run", "fix"}
        if unknown:
            raise ConfigError(str(path), f"unknown keys {sorted(unknown)}", key=key,
                              hint="a check has name, run and fix")
        name, run, fix = item.get("name"), item.get("run"), item.get("fix", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(str(path), f"name must be a short token (letters, digits, - _ .), "
                                         f"got {name!r}", key=f"{key}.name")
        if name in seen:
            raise ConfigError(str(path), f"duplicate check name {name!r}", key=f"{key}.name")
        if not isinstance(run, str) or not run.strip():
            raise ConfigError(str(path), "expected a sh snippet", key=f"{name}.run")
        if not isinstance(fix, str):
            raise ConfigError(str(path), "expected text", key=f"{name}.fix")
        seen.add(name)
        checks.append(Check(name, run, fix.strip()))
    return Playbook(path, tuple(checks), dict(pvars))


class Quoted(str):
    """Text that a `q` or `path` filter made safe for sh."""


def _finalize(value: Any) -> Any:
    """Refuse any `{{ value }}` that is neither quoted nor a number: an unquoted
    inventory value in a snippet would be a shell injection waiting to happen."""
    if isinstance(value, Quoted):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise UsageError(f"bootstrap playbook: {value!r} reaches sh unquoted",
                     hint="write {{ value | q }} (or | path for ~/ paths, | int for numbers)")


def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    import jinja2
    run_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                                 keep_trailing_newline=True, finalize=_finalize)
    run_env.filters["q"] = lambda v: Quoted(shell.quote(v))
    run_env.filters["path"] = lambda v: Quoted(shell.path(str(v)))
    text_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return run_env, text_env


@dataclass(frozen=True)
class RepoTarget:
    """A repository for the `repo` check: a label safe to print and the URL to try."""

    label: str
    url: str


def _display(url: str) -> str:
    """A URL without its user:password part (a token in a URL must not be printed)."""
    parts = urlsplit(url)
    if parts.scheme and (parts.password or (parts.username and parts.scheme.startswith("http"))):
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def web_base(github_url: str) -> str:
    """The web root for clone URLs from the API URL (see the module docstring)."""
    parts = urlsplit(github_url.rstrip("/"))
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    path = parts.path
    if path.endswith("/api/v3"):
        path = path[:-len("/api/v3")]
    return urlunsplit((parts.scheme or "https", host, path, "", ""))


def _looks_like_url(value: str) -> bool:
    return ("://" in value or value.startswith(("/", ".", "~")) or
            (":" in value and not _OWNER_NAME.match(value)))


def redact(text: str, repos: Iterable[RepoTarget]) -> str:
    """Replace every URL that carries credentials by its printable label."""
    for r in repos:
        if r.url != r.label and r.url in text:
            text = text.replace(r.url, r.label)
        userinfo = urlsplit(r.url).netloc.rpartition("@")[0] if "://" in r.url else ""
        if userinfo and userinfo + "@" in text:
            text = text.replace(userinfo + "@", "")
    return text


def repo_targets(settings: Settings, repos: Iterable[str] = (),
                 clone_urls: Iterable[str] = ()) -> list[RepoTarget]:
    """The repositories to `git ls-remote` (module docstring says which and why)."""
    repos, clone_urls = list(repos), list(clone_urls)
    if not repos and not clone_urls:
        repos = list(settings.repos)
    out: list[RepoTarget] = []
    for r in repos:
        if _looks_like_url(r):           # a path or URL given to --repo: take it as is
            clone_urls.append(r)
            continue
        if not _OWNER_NAME.match(r):
            raise UsageError(f"--repo {r!r}: expected OWNER/NAME (or use --clone-url URL)")
        url = settings.repo_urls.get(r) or f"{web_base(settings.github.url)}/{r}.git"
        out.append(RepoTarget(r, url))
    for u in clone_urls:
        if not u or u.startswith("-"):
            raise UsageError(f"--clone-url {u!r}: not a repository URL or path")
        out.append(RepoTarget(_display(u), u))
    return out


def agent_of(host: Host, settings: Settings) -> str:
    return host.agent or settings.agent.command


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
"""

BEGIN = "::bootstrap:: begin"
END = "::bootstrap:: end"


def render_script(playbook: Playbook, host: Host, settings: Settings,
                  repos: list[RepoTarget]) -> tuple[str, dict[str, str]]:
    """The one script for `host` and the rendered fix text of every check."""
    run_env, text_env = _environments()
    import jinja2
    values: dict[str, Any] = dict(playbook.vars)
    values.update(host=host.name, agent=agent_of(host, settings),
                  workspace_root=host.workspace_root, allow_root=settings.agent.allow_root,
                  repos=[{"label": r.label, "url": r.url} for r in repos])
    parts = ["{", f"echo '{BEGIN}'"]
    fixes: dict[str, str] = {}
    for check in playbook.checks:
        try:
            body = run_env.from_string(check.run).render(values)
            fixes[check.name] = " ".join(text_env.from_string(check.fix).render(values).split())
        except jinja2.TemplateError as exc:
            line = getattr(exc, "lineno", None)
            raise ConfigError(str(playbook.path), f"cannot render: {exc}",
                              key=f"{check.name}.run" + (f" (line {line} of the snippet)"
                                                         if line else "")) from None
        snippet = f"{_HELPERS}_orch_name={check.name}\n{body}"
        parts.append(f"echo '::start:: {check.name}'")
        parts.append(f"sh -c {shell.quote(snippet)} 2>&1")
        parts.append(f"echo \"::exit:: {check.name} $?\"")
    parts.append(f"echo '{END}'")
    parts.append("} < /dev/null")
    return "\n".join(parts) + "\n", fixes


# --------------------------------------------------------------------------- parsing

def _clip(text: str) -> str:
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
        results.append(CheckResult(n, status, _clip(detail),
                                   fixes.get(n) if status == "fail" else None))
    error = None
    if not begun:
        error = "the bootstrap script did not run"
    elif not ended and finished:
        error = "the bootstrap script stopped before its end"
    return results, error


# --------------------------------------------------------------------------- running

def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def bootstrap_host(fleet: Fleet, host: Host, playbook: Playbook, settings: Settings,
                         repos: list[RepoTarget], timeout: float = DEFAULT_TIMEOUT) -> HostReport:
    """Run the checks on one host. Never raises for a host problem: it is in the report."""
    report = HostReport(host=host.name, at=_now())
    started = time.monotonic()
    script, fixes = render_script(playbook, host, settings, repos)
    names = [c.name for c in playbook.checks]
    lines: list[str] = []

    async def collect() -> None:
        conn = await fleet.connection(host.name)
        async for line in conn.stream("sh -s", input=script):
            lines.append(line)

    finished = True
    try:
        await asyncio.wait_for(collect(), timeout)
    except HostUnreachable as exc:
        report.error_kind = exc.reason
        report.error = exc.detail + (f" (hint: {exc.hint})" if exc.hint else "")
        report.seconds = time.monotonic() - started
        return report
    except TimeoutError:
        finished = False
        report.error_kind = "script"
        report.error = f"the checks did not finish within {timeout:g}s"
    report.checks, error = parse_output(lines, names, fixes, finished=finished)
    for c in report.checks:
        c.detail = redact(c.detail, repos)
    if error and report.error is None:
        first = next((ln for ln in lines if ln.strip()), "")
        report.error_kind = "script"
        report.error = error + (f": {_clip(first)}" if first and BEGIN not in lines else "")
    report.seconds = time.monotonic() - started
    return report


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


async def run_bootstrap(app: App, names: Iterable[str] | None = None, *,
                        repos: Iterable[str] = (), clone_urls: Iterable[str] = (),
                        variables: Mapping[str, Any] | None = None,
                        timeout: float = DEFAULT_TIMEOUT, record: bool = True) -> list[HostReport]:
    """Bootstrap `names` (default: every enabled host) concurrently, in inventory order,
    and record the verdicts in the state dir. Unknown names raise UsageError before any
    connection is made; a named disabled host is checked (a person asked for it)."""
    from .pool import Fleet
    settings = app.settings
    inventory: list[Host] = list(app.hosts)
    by_name = {h.name: h for h in inventory}
    wanted = list(dict.fromkeys(names or ()))
    if wanted:
        for n in wanted:
            if n not in by_name:
                known = ", ".join(by_name) or "none"
                raise UsageError(f"no host named {n!r} in the inventory (known: {known})")
        chosen = [by_name[n] for n in wanted]
    else:
        chosen = [h for h in inventory if h.enabled]
    playbook = load_playbook(playbook_path(settings))
    if variables:
        playbook = with_vars(playbook, variables)
    targets = repo_targets(settings, repos, clone_urls)
    for h in chosen:                     # a rendering mistake fails before any connection
        render_script(playbook, h, settings, targets)
    async with Fleet(chosen, settings) as fleet:
        reports = list(await asyncio.gather(
            *(bootstrap_host(fleet, h, playbook, settings, targets, timeout) for h in chosen)))
    if record and reports:
        record_reports(app.state_dir, reports)
    return reports


# --------------------------------------------------------------------------- state

def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def _read_state(state_dir: Path) -> dict[str, Any]:
    path = _state_path(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"version": 1, "hosts": {}}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict):
            raise ValueError("no `hosts` mapping")
    except ValueError as exc:
        raise UsageError(f"{path}: corrupted bootstrap state ({exc})",
                         hint=f"remove {path} and run `orch bootstrap` again") from None
    return data


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def record_reports(state_dir: Path, reports: Iterable[HostReport]) -> None:
    """Merge these verdicts into bootstrap.json (atomic replace, under the file lock).

    A reachable host's entry is replaced; an unreachable one keeps its verdict and
    only gets `last_error` / `last_attempt_at`.
    """
    from filelock import FileLock
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_dir / LOCK_FILE), timeout=60):
        data = _read_state(state_dir)
        hosts: dict[str, Any] = data["hosts"]
        for r in reports:
            if not r.reachable:
                entry = dict(hosts.get(r.host) or {})
                entry.update(last_attempt_at=r.at, last_error=r.error)
                hosts[r.host] = entry
                continue
            hosts[r.host] = {
                "ok": r.ok, "at": r.at, "error": r.error,
                "failed": [{"name": c.name, "detail": c.detail} for c in r.failed],
                "last_attempt_at": r.at, "last_error": None}
        data["version"] = 1
        _write_atomic(_state_path(state_dir), json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    """host -> its last recorded bootstrap entry (for `orch hosts`, metrics, tests)."""
    return dict(_read_state(Path(state_dir))["hosts"])


def failed_hosts(state_dir: Path) -> dict[str, str]:
    """host -> "bootstrap failed: <check>: <detail>" for hosts whose LAST bootstrap
    failed. Hosts never bootstrapped (or only ever unreachable) are not listed."""
    out: dict[str, str] = {}
    for name, entry in load_state(state_dir).items():
        if entry.get("ok") is not False:
            continue
        failed = entry.get("failed") or []
        if failed:
            first = failed[0]
            reason = f"bootstrap failed: {first.get('name')}: {first.get('detail') or 'failed'}"
            if len(failed) > 1:
                reason += f" (and {len(failed) - 1} more)"
        else:
            reason = f"bootstrap failed: {entry.get('error') or 'see `orch bootstrap ' + name + '`'}"
        out[name] = reason
    return out


def report_json(reports: Iterable[HostReport]) -> list[dict[str, Any]]:
    return [r.to_json() for r in reports]


__all__ = ["CheckResult", "HostReport", "Playbook", "RepoTarget", "failed_hosts",
           "load_playbook", "load_state", "parse_output", "parse_var", "with_vars", "playbook_path", "record_reports",
           "render_script", "repo_targets", "run_bootstrap", "report_json"]
