"""The run of `orch provision`: plan, steps on every host at once, then bootstrap.

Three phases, so that bad input changes nothing and a run always ends with a verdict:

1. `make_plan` (no connection yet): the hosts, the agent source and where it goes on
   each host, the bootstrap playbook rendered for each host. Any mistake is a
   UsageError/ConfigError (exit 2) before a host is touched.
2. `provision` runs steps.STEPS on every host at once, one fabric connection
   and one thread per host (fabric is synchronous); a host's steps run in order, and a
   step whose prerequisite failed is skipped. A host that fails never stops the others.
3. Then bootstrap runs on the hosts provision reached (asyncssh, as always) and its
   verdict is recorded in state_dir/bootstrap.json, as `orch bootstrap` would: dispatch
   sees the hosts as they are now. Its checks join the report under their own names;
   one that fails where a provision step said ok makes that step fail (a step that
   changed something and still fails counts in both `changed` and `failed`). This is
   also where the repository check comes from: provision gives no host access to a
   forge, it reports whether the host has it.

`--check` runs only phase 2, reading: nothing changes on the hosts, nothing is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.agentsource import AgentSource, InstallTarget, install_target, parse_agent_source
from ...core.models import Host
from ...errors import HostUnreachable, OrchError, UsageError
from ...transport import transport
from ..facts import agent_of
from .step import StepContext
from .steps import STEPS

if TYPE_CHECKING:
    from ...app import App
    from ...config.settings import Settings
    from ..bootstrap import HostReport

MAX_THREADS = 16
STATUSES = ("ok", "changed", "failed", "skipped")


@dataclass
class StepReport:
    step: str
    status: str                       # ok | changed | failed | skipped
    detail: str = ""
    fix: str | None = None
    made_changes: bool = False        # failed after changing something (bootstrap disagreed)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class HostProvision:
    """What provision did (or, under --check, would do) on one host."""

    host: str
    check: bool = False
    steps: list[StepReport] = field(default_factory=list)
    reached: bool = False             # the connection opened
    error_kind: str | None = None     # HostUnreachable.REASONS when the host was not reached
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)

    @property
    def changed(self) -> list[str]:
        return [s.step for s in self.steps if s.status == "changed" or s.made_changes]

    @property
    def failed(self) -> list[StepReport]:
        return [s for s in self.steps if s.status == "failed"]

    def step(self, name: str) -> StepReport | None:
        return next((s for s in self.steps if s.step == name), None)

    def to_json(self) -> dict[str, Any]:
        """The fixed shape `{"host", "ok", "changed", "failed": [{"step", "error", "fix"}]}`,
        then every step with its status and detail, and what the run was."""
        return {"host": self.host, "ok": self.ok, "changed": self.changed,
                "failed": [{"step": s.step, "error": s.detail, "fix": s.fix} for s in self.failed],
                "check": self.check, "steps": [s.to_json() for s in self.steps],
                "error_kind": self.error_kind,
                "seconds": None if self.seconds is None else round(self.seconds, 3)}


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Plan:
    hosts: tuple[Host, ...]
    check: bool
    source: AgentSource | None
    local_file: Path | None
    local_sha256: str | None
    targets: dict[str, InstallTarget]


def _chosen(app: App, names: Iterable[str]) -> list[Host]:
    """The named hosts (unknown or local ones refused), else every enabled SSH host."""
    by_name = {h.name: h for h in app.hosts}
    wanted = list(dict.fromkeys(names))
    for n in wanted:
        if n not in by_name:
            known = ", ".join(by_name) or "none"
            raise UsageError(f"no host named {n!r} in the inventory (known: {known})")
        if not transport(by_name[n].connection).provisioned:
            raise UsageError(f"{n} is `connection: {by_name[n].connection}`: provision sets "
                             "up SSH hosts only", hint="install the agent there yourself")
    if wanted:
        return [by_name[n] for n in wanted]
    return [h for h in app.hosts if h.enabled and transport(h.connection).provisioned]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source(settings: Settings) -> tuple[AgentSource | None, Path | None, str | None]:
    from ...config.load import locate
    text = settings.provision.agent_source
    if not text:
        return None, None, None
    where = locate(settings.source, "provision.agent_source")
    try:
        source = parse_agent_source(text)
    except ValueError as exc:   # settings built in code, not read from a file
        where.error(str(exc))
    if source.kind == "npm":
        return source, None, None
    path = Path(source.path).expanduser()
    if not path.is_file():
        where.error(f"{path}: no such file" if not path.exists() else f"{path} is not a file",
                    hint="the agent file is uploaded from this machine: fix the path")
    try:
        return source, path, _sha256(path)
    except OSError as exc:
        where.error(f"cannot read {path}: {exc.strerror or exc}")


def _target(app: App, host: Host, source: AgentSource) -> InstallTarget:
    from ...config.load import locate
    try:
        return install_target(agent_of(host, app.settings), source)
    except ValueError as exc:
        if host.agent:
            where = locate(app.inventory_path, f"hosts.{host.name}.agent")
            if where.line is None:
                where = locate(app.inventory_path, "defaults.agent")
        else:
            where = locate(app.settings.source, "agent.command")
        where.error(f"{host.name}: {exc}")


def _check_bootstrap(app: App, hosts: Iterable[Host]) -> None:
    """Load bootstrap's playbook and render it for every host now: its mistakes are bad
    input too. (Which repositories it checks is bootstrap's business, decided when it
    runs: finding their URLs may need the forge.)"""
    from ..checks import load_playbook, playbook_path, render_script
    settings = app.settings
    playbook = load_playbook(playbook_path(settings))
    for h in hosts:
        render_script(playbook, h, settings, [])


def make_plan(app: App, names: Iterable[str] = (), *, check: bool = False) -> Plan:
    """Everything decided before a host is touched; UsageError/ConfigError on bad input."""
    hosts = _chosen(app, names)
    source, local_file, sha = _source(app.settings)
    targets = {h.name: _target(app, h, source) for h in hosts} if source else {}
    if not check:
        _check_bootstrap(app, hosts)
        from ..verdicts import load_state
        load_state(app.state_dir)   # a corrupted bootstrap.json: say so before, not after
    return Plan(tuple(hosts), check, source, local_file, sha, targets)


# --------------------------------------------------------------------------- running

def provision_host(host: Host, settings: Settings, plan: Plan, *,
                   sudo_password: str | None = None, password_available: bool = False) -> HostProvision:
    """The steps on one host, in order. Never raises for a host problem: it is reported."""
    from ...transport.fabric import open_remote
    report = HostProvision(host.name, check=plan.check)
    started = time.monotonic()
    try:
        remote = open_remote(host, settings.ssh, sudo_password=sudo_password)
    except HostUnreachable as exc:
        report.error_kind = exc.reason
        report.steps.append(StepReport("connect", "failed", exc.detail,
                                       exc.hint or "check the host with `orch hosts`"))
        report.seconds = time.monotonic() - started
        return report
    report.reached = True
    current = "connect"
    try:
        with remote:
            home = remote.run('printf %s "$HOME"').stdout.strip()
            if not home.startswith("/"):
                raise HostUnreachable(host.name, "other", f"the login user has no usable $HOME ({home!r})",
                                      hint="provision installs under the login user's home: give it one")
            ctx = StepContext(remote, host, settings, home, check=plan.check,
                              password_available=password_available or sudo_password is not None,
                              source=plan.source, local_file=plan.local_file,
                              local_sha256=plan.local_sha256, target=plan.targets.get(host.name))
            for step in STEPS:
                current = step.name
                blocked = [n for n in step.needs if (s := report.step(n)) and s.status == "failed"]
                if blocked:
                    report.steps.append(StepReport(step.name, "skipped",
                                                   f"{', '.join(blocked)} failed"))
                    continue
                outcome = step.run(ctx)
                report.steps.append(StepReport(step.name, outcome.status, outcome.detail, outcome.fix))
    except HostUnreachable as exc:
        report.error_kind = exc.reason
        report.steps.append(StepReport(current, "failed", exc.detail, exc.hint))
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not stop the others
        report.steps.append(StepReport(current, "failed", f"internal error: {type(exc).__name__}: {exc}",
                                       "this is a bug in orch: please report it with this message"))
    report.seconds = time.monotonic() - started
    return report


_BOOTSTRAP_STATUS = {"ok": "ok", "info": "ok", "skip": "skipped", "fail": "failed"}


def merge_bootstrap(report: HostProvision, boot: HostReport) -> None:
    """Fold bootstrap's verdict for the host into its provision report (module docstring)."""
    if not boot.checks and boot.error:
        report.steps.append(StepReport("bootstrap", "failed", boot.error,
                                       f"run `orch bootstrap {report.host}` and read its checks"))
        return
    for check in boot.checks:
        status = _BOOTSTRAP_STATUS.get(check.status, "failed")
        mine = report.step(check.name)
        if mine is None:
            report.steps.append(StepReport(check.name, status, check.detail, check.fix))
        elif status == "failed" and mine.status in ("ok", "changed"):
            mine.made_changes = mine.status == "changed"
            mine.status = "failed"
            mine.detail = f"{mine.detail}; but bootstrap still fails it: {check.detail}"
            mine.fix = check.fix
    if boot.error:
        report.steps.append(StepReport("bootstrap", "failed", boot.error,
                                       f"run `orch bootstrap {report.host}` and read its checks"))


def provision(app: App, plan: Plan, *, sudo_password: str | None = None,
              password_available: bool = False) -> list[HostProvision]:
    """Run the plan on its hosts concurrently (inventory order kept), then refresh
    bootstrap's verdict for the hosts reached (not under --check)."""
    if not plan.hosts:
        return []
    settings = app.settings
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(plan.hosts)),
                            thread_name_prefix="provision") as pool:
        reports = list(pool.map(
            lambda h: provision_host(h, settings, plan, sudo_password=sudo_password,
                                     password_available=password_available), plan.hosts))
    reached = [r for r in reports if r.reached]
    if plan.check or not reached:
        return reports
    from ..bootstrap import run_bootstrap
    started = time.monotonic()
    try:
        boots = asyncio.run(run_bootstrap(app, [r.host for r in reached], record=True))
    except OrchError as exc:   # e.g. the forge, asked for a clone URL, is down: the hosts
        for report in reached:  # were provisioned all the same, and the report says so
            report.steps.append(StepReport("bootstrap", "failed", exc.message,
                                           exc.hint or "run `orch bootstrap` and read its error"))
        return reports
    spent = time.monotonic() - started
    for report, boot in zip(reached, boots, strict=True):
        merge_bootstrap(report, boot)
        report.seconds = (report.seconds or 0.0) + spent
    return reports


def report_json(reports: Iterable[HostProvision]) -> list[dict[str, Any]]:
    return [r.to_json() for r in reports]


__all__ = ["HostProvision", "Plan", "StepReport", "make_plan", "merge_bootstrap", "provision",
           "provision_host", "report_json"]
