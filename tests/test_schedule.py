"""Host placement: every verdict reason, fallbacks, tie-breaks, reserved slots, pinning."""

from __future__ import annotations

import pytest

from orchestrator.core.models import Host, HostFacts
from orchestrator.core.schedule import place, plan_batch
from orchestrator.errors import UsageError


def host(name: str, specialties: tuple[str, ...] = ("backend",), max_tasks: int = 2,
         enabled: bool = True) -> Host:
    return Host(name=name, address=f"{name}.lan", specialties=specialties,
                max_tasks=max_tasks, enabled=enabled)


def fact(name: str, load1: float | None = 0.0, cpus: int | None = 4, running: int | None = 0,
         reachable: bool = True, error: str | None = None,
         bootstrap_ok: bool | None = None) -> HostFacts:
    return HostFacts(name=name, address=f"{name}.lan", reachable=reachable, load1=load1,
                     cpus=cpus, running_tasks=running, error=error, bootstrap_ok=bootstrap_ok)


def facts(*fs: HostFacts) -> dict[str, HostFacts]:
    return {f.name: f for f in fs}


def reasons(p) -> dict[str, str]:
    return {v.host: v.reason for v in p.verdicts}


def test_every_refusal_reason_and_the_choice() -> None:
    hosts = [host("off", enabled=False), host("fe", ("frontend", "ui")),
             host("broken"), host("down"), host("full", max_tasks=2),
             host("busy"), host("idle"), host("unprobed"), host("bad-boot")]
    f = facts(fact("off"), fact("fe"), fact("broken"),
              fact("down", reachable=False, error="connection refused", load1=None),
              fact("full", running=2), fact("busy", load1=3.0, cpus=4, running=1),
              fact("idle", load1=0.5, cpus=4, running=1), fact("bad-boot", bootstrap_ok=False))
    p = place("backend", "label 'backend'", hosts, f,
              unhealthy={"broken": "bootstrap failed: git not found"})
    assert p.host == "idle"
    assert p.specialty == "backend" and p.specialty_reason == "label 'backend'"
    assert reasons(p) == {
        "off": "disabled",
        "fe": "lacks specialty 'backend' (has frontend, ui)",
        "broken": "bootstrap failed: git not found",
        "down": "unreachable: connection refused",
        "full": "full: 2/2 tasks running",
        "busy": "eligible, not chosen: load/cpu 0.75, 1/2 tasks",
        "idle": "chosen: load/cpu 0.12, 1/2 tasks",
        "unprobed": "unreachable: not probed",
        "bad-boot": "bootstrap failed (see `orch bootstrap bad-boot`)",
    }
    assert [v.host for v in p.verdicts] == [h.name for h in hosts]   # inventory order
    eligible = {v.host for v in p.verdicts if v.eligible}
    assert eligible == {"busy", "idle"}
    assert p.reason == "chosen: load/cpu 0.12, 1/2 tasks"
    chosen = next(v for v in p.verdicts if v.host == "idle")
    assert chosen.score == pytest.approx(0.125)


def test_no_capable_host_explains_each() -> None:
    p = place("backend", "r", [host("a", max_tasks=1), host("b", enabled=False)],
              facts(fact("a", running=1), fact("b")))
    assert p.host is None
    assert p.reason == "no capable host: a: full: 1/1 tasks running; b: disabled"
    assert place("backend", "r", [], {}).reason == "the inventory has no hosts"


def test_general_hosts_take_a_specialty_nobody_has() -> None:
    hosts = [host("be", ("backend",)), host("gen", ("general",)), host("gen2", ("general", "x"))]
    f = facts(fact("be"), fact("gen", load1=1.0), fact("gen2", load1=2.0))
    p = place("devops", "keywords", hosts, f)
    assert p.host == "gen"
    r = reasons(p)
    assert r["be"] == "lacks specialty 'devops' and is not a general host (has backend)"
    assert r["gen"] == ("chosen: load/cpu 0.25, 0/2 tasks; no enabled host has 'devops', "
                        "so a 'general' host takes it")
    assert r["gen2"] == "eligible, not chosen: load/cpu 0.50, 0/2 tasks"


def test_no_fallback_when_a_specialist_exists_but_is_busy() -> None:
    """A full or unreachable specialist means wait, not run on a general host."""
    hosts = [host("fe", ("frontend",), max_tasks=1), host("gen", ("general",))]
    p = place("frontend", "r", hosts, facts(fact("fe", running=1), fact("gen")))
    assert p.host is None
    assert reasons(p)["gen"] == "lacks specialty 'frontend' (has general)"


def test_disabled_specialist_does_not_count_so_general_takes_it() -> None:
    hosts = [host("fe", ("frontend",), enabled=False), host("gen", ("general",))]
    p = place("frontend", "r", hosts, facts(fact("fe"), fact("gen")))
    assert p.host == "gen"


def test_no_specialist_and_no_general_host() -> None:
    p = place("devops", "r", [host("be")], facts(fact("be")))
    assert p.host is None
    assert reasons(p)["be"] == ("lacks specialty 'devops' (has backend); "
                                "no enabled host has 'devops' or 'general'")


def test_general_issue_runs_anywhere_without_a_general_host() -> None:
    hosts = [host("be", ("backend",)), host("fe", ("frontend",))]
    p = place("general", "no label or keyword matched", hosts,
              facts(fact("be", load1=2.0), fact("fe", load1=1.0)))
    assert p.host == "fe"
    assert "no enabled host is tagged 'general', so any host may take it" in reasons(p)["fe"]
    # ...but a general-tagged host is preferred when there is one.
    hosts.append(host("gen", ("general",)))
    p = place("general", "r", hosts, facts(fact("be"), fact("fe"), fact("gen", load1=3.0)))
    assert p.host == "gen"


def test_specialty_match_is_case_insensitive() -> None:
    p = place("Backend", "r", [host("be", ("backend",))], facts(fact("be")))
    assert p.host == "be"


def test_tie_breaks_load_then_running_then_name() -> None:
    hosts = [host("c"), host("b"), host("a")]
    # same load/cpu (1/2 == 2/4): fewer running tasks wins
    p = place("backend", "r", hosts, facts(fact("c", 1.0, 2, running=0),
                                          fact("b", 2.0, 4, running=1),
                                          fact("a", 2.0, 4, running=1)))
    assert p.host == "c"
    # same load and running: name decides
    p = place("backend", "r", hosts, facts(fact("c", 1.0, 2, running=1),
                                          fact("b", 2.0, 4, running=1),
                                          fact("a", 2.0, 4, running=1)))
    assert p.host == "a"


def test_unknown_load_sorts_last() -> None:
    hosts = [host("noload"), host("loaded")]
    p = place("backend", "r", hosts, facts(fact("noload", load1=None),
                                          fact("loaded", load1=8.0, cpus=2)))
    assert p.host == "loaded"
    assert reasons(p)["noload"] == "eligible, not chosen: load/cpu unknown, 0/2 tasks"
    p = place("backend", "r", [host("x")], facts(fact("x", cpus=None)))
    assert p.reason == "chosen: load/cpu unknown, 0/2 tasks"


def test_reserved_slots_count_when_the_host_does_not_show_them_yet() -> None:
    hosts = [host("a", max_tasks=2), host("b", max_tasks=2)]
    f = facts(fact("a", load1=0.0, running=0), fact("b", load1=1.0, running=1))
    p = place("backend", "r", hosts, f, reserved={"a": 2})
    assert p.host == "b"
    assert reasons(p)["a"] == "full: 2/2 tasks running"
    # max(host, store), not the sum: the store's task that does show is not counted twice
    p = place("backend", "r", hosts, f, reserved={"b": 1})
    assert reasons(p)["b"] == "eligible, not chosen: load/cpu 0.25, 1/2 tasks"
    # ...and jobs the host runs that the store does not know about still count
    p = place("backend", "r", [host("a", max_tasks=1)], facts(fact("a", running=1)),
              reserved={})
    assert p.host is None


def test_reserved_task_ids_count_exactly() -> None:
    """Ids: the host's jobs plus the store's tasks it does not show yet, none twice."""
    hosts = [host("a", max_tasks=3)]
    shown = fact("a", running=2)
    shown.running_task_ids = ["t1", "stray"]          # a job the store does not know
    # t1 shows on the host, t2 was started a moment ago and does not show yet: 2 + 1
    p = place("backend", "r", hosts, facts(shown), reserved={"a": ["t1", "t2"]})
    assert p.host is None and reasons(p)["a"] == "full: 3/3 tasks running"
    # with counts only, max(2, 2) undercounts: that is why the store gives ids
    assert place("backend", "r", hosts, facts(shown), reserved={"a": 2}).host == "a"
    p = place("backend", "r", hosts, facts(shown), reserved={"a": ["t1"]})
    assert reasons(p)["a"] == "chosen: load/cpu 0.00, 2/3 tasks"
    # a host without facts is refused before capacity matters
    p = place("backend", "r", hosts, {}, reserved={"a": ["t1", "t2", "t3"]})
    assert reasons(p)["a"] == "unreachable: not probed"


def test_plan_batch_with_task_ids() -> None:
    hosts = [host("a", max_tasks=2), host("b", max_tasks=2)]
    fa = fact("a", load1=0.0, running=1)
    fa.running_task_ids = ["t1"]
    plans = plan_batch([("backend", "r")] * 4, hosts, facts(fa, fact("b", load1=1.0)),
                       reserved={"a": ["t1"]})
    assert [p.host for p in plans] == ["a", "b", "b", None]


def test_pinned_host_restricts_and_explains() -> None:
    hosts = [host("a"), host("b", max_tasks=1), host("fe", ("frontend",))]
    f = facts(fact("a"), fact("b", running=1), fact("fe", load1=3.0))
    p = place("backend", "r", hosts, f, pinned="b")
    assert p.host is None
    assert reasons(p) == {"a": "not the requested host (b)", "b": "full: 1/1 tasks running",
                          "fe": "not the requested host (b)"}
    p = place("backend", "r", hosts, f, pinned="a")
    assert p.host == "a"
    # A person's explicit choice beats the specialty match, and the reason says so.
    p = place("backend", "r", hosts, f, pinned="fe")
    assert p.host == "fe"
    assert reasons(p)["fe"] == ("chosen: load/cpu 0.75, 0/2 tasks; lacks specialty 'backend' "
                                "(has frontend), but it was requested explicitly")
    # ...but not the safety checks.
    p = place("backend", "r", [host("a", enabled=False)], facts(fact("a")), pinned="a")
    assert p.host is None and reasons(p)["a"] == "disabled"
    p = place("backend", "r", [host("a")], facts(fact("a", reachable=False, error="timeout")),
              pinned="a")
    assert p.host is None and reasons(p)["a"] == "unreachable: timeout"
    with pytest.raises(UsageError, match="no host named 'zz'.*known: a"):
        place("backend", "r", [host("a")], facts(fact("a")), pinned="zz")


def test_facts_may_be_a_list() -> None:
    p = place("backend", "r", [host("a")], [fact("a")])
    assert p.host == "a"


def test_plan_batch_uses_up_slots() -> None:
    hosts = [host("a", max_tasks=2), host("b", max_tasks=1), host("fe", ("frontend",), 1)]
    f = facts(fact("a", load1=0.0, running=1), fact("b", load1=1.0), fact("fe"))
    reqs = [("backend", "r1"), ("backend", "r2"), ("frontend", "r3"), ("backend", "r4"),
            ("frontend", "r5")]
    plans = plan_batch(reqs, hosts, f, reserved={"a": 0})
    assert [p.host for p in plans] == ["a", "b", "fe", None, None]
    assert reasons(plans[3])["a"] == "full: 2/2 tasks running"
    assert reasons(plans[4])["fe"] == "full: 1/1 tasks running"
    assert [p.specialty_reason for p in plans] == ["r1", "r2", "r3", "r4", "r5"]
