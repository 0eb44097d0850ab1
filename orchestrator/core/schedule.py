"""Choose a host for a specialty, with a reason for every host (pure).

A host is eligible when it is enabled, has the specialty, is healthy (not refused by
bootstrap), reachable, and has a free slot. If no enabled host has the specialty, hosts
tagged `general` take it; a `general` issue with no general-tagged host may run on any
host (otherwise an unclassified issue could never run on a fleet of specialists).
Among eligible hosts the lowest load per CPU wins, then fewer running tasks, then name,
so the choice is deterministic and explainable.

Capacity counts both what the host reports and what the store has reserved for it:
the probe sees jobs actually running there (including ones another orchestrator
started), the store knows tasks started a moment ago that may not show yet. With the
reserved task ids (`Store.reserved()`), a host's load is its running jobs plus the
reserved tasks it does not show yet - exact, and no job is counted twice. With bare
counts it is max(host's count, reserved count). Callers that place several issues in
one pass either record each task in the store before placing the next (so `reserved`
grows) or use `plan_batch`.

`pinned` (`orch dispatch --host H`) restricts the choice to one host. A person's
explicit choice beats the specialty match (it is noted in the reason), but not the
safety checks: a disabled, unhealthy, unreachable or full host is still refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping

from ..errors import UsageError
from .models import Host, HostFacts, HostVerdict, Placement

GENERAL = "general"

# What the store holds for a host: its live task ids (exact), or just their number.
Reserved = int | Collection[str]


def place(specialty: str, specialty_reason: str, hosts: list[Host],
          facts: Mapping[str, HostFacts] | Iterable[HostFacts],
          reserved: Mapping[str, Reserved] | None = None, pinned: str | None = None,
          unhealthy: Mapping[str, str] | None = None) -> Placement:
    """Place one task of `specialty`; every host gets a HostVerdict saying why (not).

    `facts`: probe results by host name (or a list of them); a host without facts is
    "not probed". `reserved`: live tasks per host from the store (`Store.reserved()`:
    task ids; a plain count also works, less precisely).
    `unhealthy`: host name -> the full verdict text, e.g. "bootstrap failed: no git".
    Raises UsageError if `pinned` names no inventory host.
    """
    facts_by_name = _by_name(facts)
    reserved = reserved or {}
    unhealthy = unhealthy or {}
    if pinned is not None and all(h.name != pinned for h in hosts):
        known = ", ".join(h.name for h in hosts) or "none"
        raise UsageError(f"no host named {pinned!r} in the inventory (known: {known})")

    capable, mode, note = _capable(specialty, hosts)
    candidates: list[tuple[tuple[float, int, str], Host, int, float | None, str]] = []
    verdicts: dict[str, HostVerdict] = {}
    for host in hosts:
        f = facts_by_name.get(host.name)
        running = _occupied(f, reserved.get(host.name))
        extra = note
        refusal = None
        if pinned is not None and host.name != pinned:
            refusal = f"not the requested host ({pinned})"
        elif not host.enabled:
            refusal = "disabled"
        elif not capable(host):
            if pinned is None:
                refusal = _lacks(specialty, host, mode, note)
            else:
                extra = f"{_lacks(specialty, host, 'own', '')}, but it was requested explicitly"
        if refusal is None:
            refusal = _health(host, f, unhealthy, running)
        if refusal is not None:
            verdicts[host.name] = HostVerdict(host.name, False, refusal)
            continue
        score = f.load_per_cpu if f is not None else None
        key = (score if score is not None else math.inf, running, host.name)
        candidates.append((key, host, running, score, extra))

    chosen = None
    if candidates:
        candidates.sort(key=lambda c: c[0])
        chosen = candidates[0][1].name
        for i, (_, host, running, score, extra) in enumerate(candidates):
            load = f"load/cpu {score:.2f}" if score is not None else "load/cpu unknown"
            text = f"{load}, {running}/{host.max_tasks} tasks"
            if i == 0:
                reason = f"chosen: {text}" + (f"; {extra}" if extra else "")
            else:
                reason = f"eligible, not chosen: {text}"
            verdicts[host.name] = HostVerdict(host.name, True, reason, score)

    return Placement(specialty=specialty, specialty_reason=specialty_reason, host=chosen,
                     verdicts=tuple(verdicts[h.name] for h in hosts))


def plan_batch(requests: Iterable[tuple[str, str]], hosts: list[Host],
               facts: Mapping[str, HostFacts] | Iterable[HostFacts],
               reserved: Mapping[str, Reserved] | None = None,
               unhealthy: Mapping[str, str] | None = None) -> list[Placement]:
    """Place several (specialty, reason) requests in order, each using up a slot.

    For a pass that plans before recording anything: issue 2 must not be sent to the
    slot issue 1 just took.
    """
    facts_by_name = _by_name(facts)
    taken: dict[str, Reserved] = {k: (v if isinstance(v, int) else set(v))
                                  for k, v in (reserved or {}).items()}
    out = []
    for n, (specialty, reason) in enumerate(requests):
        p = place(specialty, reason, hosts, facts_by_name, taken, unhealthy=unhealthy)
        if p.host is not None:
            current = taken.get(p.host)
            if isinstance(current, int):
                taken[p.host] = _occupied(facts_by_name.get(p.host), current) + 1
            else:
                taken[p.host] = {*(current or ()), f"\0planned-{n}"}
        out.append(p)
    return out


def _by_name(facts: Mapping[str, HostFacts] | Iterable[HostFacts]) -> dict[str, HostFacts]:
    if isinstance(facts, Mapping):
        return dict(facts)
    return {f.name: f for f in facts}


def _running(f: HostFacts | None) -> int:
    return int(f.running_tasks or 0) if f is not None else 0


def _occupied(f: HostFacts | None, reserved: Reserved | None) -> int:
    """Slots in use on a host: its running jobs, plus reserved tasks it does not show."""
    if reserved is None:
        return _running(f)
    if isinstance(reserved, int):
        return max(_running(f), reserved)
    shown = set(f.running_task_ids) if f is not None else set()
    return _running(f) + len(set(reserved) - shown)


def _has(host: Host, specialty: str) -> bool:
    want = specialty.lower()
    return any(s.lower() == want for s in host.specialties)


def _capable(specialty: str, hosts: list[Host]) -> tuple[Callable[[Host], bool], str, str]:
    """(which hosts may take `specialty`, mode, note): mode is own|general|any|none."""
    enabled = [h for h in hosts if h.enabled]
    if any(_has(h, specialty) for h in enabled):
        return (lambda h: _has(h, specialty)), "own", ""
    if specialty.lower() == GENERAL:
        return (lambda h: True), "any", "no enabled host is tagged 'general', so any host may take it"
    if any(_has(h, GENERAL) for h in enabled):
        return ((lambda h: _has(h, GENERAL)), "general",
                f"no enabled host has '{specialty}', so a 'general' host takes it")
    return (lambda h: False), "none", f"no enabled host has '{specialty}' or 'general'"


def _lacks(specialty: str, host: Host, mode: str, note: str) -> str:
    has = ", ".join(host.specialties) or "none"
    if mode == "general":
        return f"lacks specialty '{specialty}' and is not a general host (has {has})"
    text = f"lacks specialty '{specialty}' (has {has})"
    return f"{text}; {note}" if mode == "none" else text


def _health(host: Host, f: HostFacts | None, unhealthy: Mapping[str, str],
            running: int) -> str | None:
    """Why a capable host cannot take work right now, or None if it can."""
    if host.name in unhealthy:
        # The caller's full verdict text, e.g. "bootstrap failed: claude not found".
        return unhealthy[host.name]
    if f is None:
        return "unreachable: not probed"
    if not f.reachable:
        return f"unreachable: {f.error or 'no answer'}"
    if f.bootstrap_ok is False:
        return f"bootstrap failed (see `orch bootstrap {host.name}`)"
    if running >= host.max_tasks:
        return f"full: {running}/{host.max_tasks} tasks running"
    return None
