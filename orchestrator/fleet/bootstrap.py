"""`orch bootstrap`: run playbooks/bootstrap.yml on hosts, report, and remember who failed.

The checks themselves (the playbook, its rendering into one script per host, the parser
of that script's output) are fleet/checks.py; this module runs them over the fleet's
connections and keeps the verdicts.

Why a state file: dispatch must not choose a host that is known to be broken
(`failed_hosts` in fleet/verdicts.py, asked by lifecycle/admit.py), yet bootstrap is recommended, not
mandatory: a host never bootstrapped is not refused. `bootstrap.json` keeps each
host's last verdict; it is replaced atomically under a file lock, so concurrent
`orch bootstrap` runs on different hosts never lose each other's results. A host
that could not be reached keeps its previous verdict (nothing was learned about it,
and the scheduler refuses unreachable hosts on its own).

Which repositories `repo` checks: `--clone-url URL` as given; `--repo OWNER/NAME`
at the URL dispatch would clone (forge/clone.py: `repo_urls` in orch.yml, else the
forge's own clone_url, so bootstrap never fails a host that dispatch could use). With
neither option, every repo of the config's `repos:` the same way; with no repos the
check is skipped, and with `git.via: orch` too (the hosts never talk to the forge: orch
relays, job/relay.py). `orch provision` runs bootstrap afterwards, so the same holds there.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..atomic import replace_file
from ..config.settings import Settings
from ..core.models import Host
from ..errors import HostUnreachable, UsageError
from ..forge import DEFAULT_FORGE
from ..forge.base import Forge
from ..forge.clone import clone_url
from .checks import (
    BEGIN,
    CheckResult,
    Playbook,
    RepoTarget,
    clip,
    load_playbook,
    parse_output,
    playbook_path,
    render_script,
    with_vars,
)
from .verdicts import read_state, state_path

if TYPE_CHECKING:
    from ..app import App
    from .pool import Fleet

LOCK_FILE = "bootstrap.json.lock"
DEFAULT_TIMEOUT = 120.0            # seconds for one host's whole script
_OWNER_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


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


# --------------------------------------------------------------------------- repositories

def _display(url: str) -> str:
    """A URL without its user:password part (a token in a URL must not be printed)."""
    parts = urlsplit(url)
    if parts.scheme and (parts.password or (parts.username and parts.scheme.startswith("http"))):
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _looks_like_url(value: str) -> bool:
    return ("://" in value or value.startswith(("/", ".", "~")) or
            (":" in value and not _OWNER_NAME.match(value)))


def _no_forge() -> Forge:
    raise UsageError("no forge to ask for a clone URL", hint="set repo_urls in orch.yml")


def redact(text: str, repos: Iterable[RepoTarget]) -> str:
    """Replace every URL that carries credentials by its printable label."""
    for r in repos:
        if r.url != r.label and r.url in text:
            text = text.replace(r.url, r.label)
        userinfo = urlsplit(r.url).netloc.rpartition("@")[0] if "://" in r.url else ""
        if userinfo and userinfo + "@" in text:
            text = text.replace(userinfo + "@", "")
    return text


def repo_targets(settings: Settings, repos: Iterable[str] = (), clone_urls: Iterable[str] = (),
                 forge: Callable[[], Forge] | None = None) -> list[RepoTarget]:
    """The repositories to `git ls-remote` (module docstring says which and why); `forge`
    builds the forge asked for a clone URL that repo_urls does not give."""
    repos, clone_urls = list(repos), list(clone_urls)
    if not repos and not clone_urls:
        if settings.git.via == "orch":
            return []     # hosts never talk to the forge: nothing of theirs to check
        repos = list(settings.repos)
    out: list[RepoTarget] = []
    for r in repos:
        if _looks_like_url(r):           # a path or URL given to --repo: take it as is
            clone_urls.append(r)
            continue
        if not _OWNER_NAME.match(r):
            raise UsageError(f"--repo {r!r}: expected OWNER/NAME (or use --clone-url URL)")
        out.append(RepoTarget(r, clone_url(settings, r, forge or _no_forge)))
    for u in clone_urls:
        if not u or u.startswith("-"):
            raise UsageError(f"--clone-url {u!r}: not a repository URL or path")
        out.append(RepoTarget(_display(u), u))
    return out


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
        report.error = error + (f": {clip(first)}" if first and BEGIN not in lines else "")
    report.seconds = time.monotonic() - started
    return report


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
    forge = functools.cache(lambda: app.forge(DEFAULT_FORGE))   # the forge of `repos:`
    targets = await asyncio.to_thread(repo_targets, settings, repos, clone_urls, forge)
    for h in chosen:                     # a rendering mistake fails before any connection
        render_script(playbook, h, settings, targets)
    async with Fleet(chosen, settings) as fleet:
        reports = list(await asyncio.gather(
            *(bootstrap_host(fleet, h, playbook, settings, targets, timeout) for h in chosen)))
    if record and reports:
        record_reports(app.state_dir, reports)
    return reports


# --------------------------------------------------------------------------- state

def record_reports(state_dir: Path, reports: Iterable[HostReport]) -> None:
    """Merge these verdicts into bootstrap.json (atomic replace, under the file lock).

    A reachable host's entry is replaced; an unreachable one keeps its verdict and
    only gets `last_error` / `last_attempt_at`.
    """
    from filelock import FileLock
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_dir / LOCK_FILE), timeout=60):
        data = read_state(state_dir)
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
        replace_file(state_path(state_dir), json.dumps(data, indent=2, sort_keys=True) + "\n")


def report_json(reports: Iterable[HostReport]) -> list[dict[str, Any]]:
    return [r.to_json() for r in reports]


__all__ = ["HostReport", "bootstrap_host", "record_reports",
           "redact", "repo_targets", "report_json", "run_bootstrap"]
