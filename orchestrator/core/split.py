"""Splitting one issue into parts (pure): the plan, its validation, the dependency order.

An issue is split when its labels name two or more specialties (`split.by_labels`), or
when a planning run returns the parts (docs/split.md). Either way the result is a list
of `Part`s: a number k (1-based, the order of the plan), a title, a specialty, the
agent's instructions, the paths it owns and the parts it depends on. A planner's plan is
agent output, untrusted: `validate_plan` refuses anything but a small acyclic list of
known specialties, with a reason a person can read (it reaches the issue, fenced).

The task kinds of a split (named in core/models.py; lifecycle/kinds.py, lifecycle/split.py):
the parent (`split`, holds no slot, runs no job), its `part`s (one job each, on a host of
its specialty) and `integrate` runs (merge finished parts into the integration branch;
the last one runs the whole test suite).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .shell import branch_name, slug

SCHEMA_FILE = "split-schema.json"           # in prompts/: the planner's --json-schema
SPLIT_LABEL = "orch:split"                  # asks for a planning run (docs/split.md)
LAST_SPECIALTY = "testing"                  # by label, the testing part runs after the others
UNSPLIT = ("general",)                      # a label that names no part of its own
MAX_TEXT = 4000                             # characters of a part's instructions
MAX_PATHS = 50


class PlanRefused(ValueError):
    """A plan orch will not run; the message says why, for the issue's comment."""


@dataclass(frozen=True)
class Part:
    k: int                                  # 1-based, the plan's order
    title: str
    specialty: str
    instructions: str = ""
    paths: tuple[str, ...] = ()
    depends_on: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "title": self.title, "specialty": self.specialty,
                "instructions": self.instructions, "paths": list(self.paths),
                "depends_on": list(self.depends_on)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Part:
        return cls(k=int(data["k"]), title=str(data.get("title", "")),
                   specialty=str(data.get("specialty", "general")),
                   instructions=str(data.get("instructions", "")),
                   paths=tuple(str(p) for p in data.get("paths", ())),
                   depends_on=tuple(int(d) for d in data.get("depends_on", ())))


def label_specialties(labels: Iterable[str],
                      table: Mapping[str, Mapping[str, Sequence[str]]]) -> list[str]:
    """The specialties an issue's labels name (a specialty's own name, or one of its
    `labels` in the `specialties` setting), in the table's order."""
    have = {label.strip().lower() for label in labels}
    return [s for s, cfg in table.items() if s not in UNSPLIT
            and have & {s, *(str(x).lower() for x in cfg.get("labels", ()))}]


def parts_from_labels(title: str, labels: Iterable[str],
                      table: Mapping[str, Mapping[str, Sequence[str]]]) -> list[Part]:
    """One part per specialty label when there are two or more (else []); `testing`
    depends on every other part, so it runs on what they made."""
    named = label_specialties(labels, table)
    if len(named) < 2:
        return []
    first = [s for s in named if s != LAST_SPECIALTY]
    parts = [Part(k, f"{title} ({s} part)", s,
                  f"The {s} side of the issue: do what the issue asks of {s}, and leave the "
                  f"other parts' work to them.") for k, s in enumerate(first, 1)]
    if LAST_SPECIALTY in named:
        parts.append(Part(len(parts) + 1, f"{title} (testing part)", LAST_SPECIALTY,
                          "The tests of the issue: test what the other parts made.",
                          depends_on=tuple(p.k for p in parts)))
    return parts


def _strings(value: Any, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PlanRefused(f"{what} must be a list of strings")
    if len(value) > limit:
        raise PlanRefused(f"{what} has {len(value)} entries, at most {limit} are allowed")
    return tuple(v[:300] for v in value)


def validate_plan(raw: Any, *, known: Sequence[str], max_parts: int) -> list[Part]:
    """A planner's structured output -> parts, or PlanRefused saying why: at most
    `max_parts`, known specialties, dependencies on other parts of the plan, no cycle."""
    if isinstance(raw, Mapping) and "parts" in raw:
        raw = raw["parts"]
    if not isinstance(raw, list) or not raw:
        raise PlanRefused("the plan is not a non-empty list of parts")
    if len(raw) > max_parts:
        raise PlanRefused(f"the plan has {len(raw)} parts; split.max_parts allows {max_parts}")
    parts = []
    for k, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise PlanRefused(f"part {k} is not an object")
        title, specialty = item.get("title"), item.get("specialty")
        if not isinstance(title, str) or not title.strip():
            raise PlanRefused(f"part {k} has no title")
        if specialty not in known:
            raise PlanRefused(f"part {k} names an unknown specialty {str(specialty)[:40]!r} "
                              f"(known: {', '.join(known)})")
        instructions = item.get("instructions", "")
        if not isinstance(instructions, str):
            raise PlanRefused(f"part {k}'s instructions are not text")
        deps = item.get("depends_on", [])
        if not isinstance(deps, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                 for d in deps):
            raise PlanRefused(f"part {k}'s depends_on is not a list of part numbers")
        for d in deps:
            if not 1 <= d <= len(raw) or d == k:
                raise PlanRefused(f"part {k} depends on part {d}, which is not another part "
                                  f"of the plan (1 to {len(raw)})")
        parts.append(Part(k, " ".join(title.split())[:200], str(specialty),
                          instructions[:MAX_TEXT],
                          _strings(item.get("paths", []), f"part {k}'s paths", MAX_PATHS),
                          tuple(sorted(set(deps)))))
    dependency_order(parts)   # raises on a cycle
    return parts


def dependency_order(parts: Sequence[Part]) -> list[Part]:
    """Parts so that each comes after those it depends on (ties: plan order); a cycle is
    PlanRefused, naming the parts in it."""
    left = {p.k: p for p in parts}
    done: set[int] = set()
    out: list[Part] = []
    while left:
        ready = [p for p in left.values() if set(p.depends_on) <= done]
        if not ready:
            raise PlanRefused("the parts depend on each other in a cycle: parts "
                              + ", ".join(str(k) for k in sorted(left)))
        for p in sorted(ready, key=lambda p: p.k):
            out.append(p)
            done.add(p.k)
            del left[p.k]
    return out


def ready_parts(parts: Sequence[Part], merged: Iterable[int], started: Iterable[int]) -> list[Part]:
    """Parts not started yet whose dependencies are all in the integration branch."""
    have, begun = set(merged), set(started)
    return [p for p in parts if p.k not in begun and set(p.depends_on) <= have]


def integration_branch(number: int, title: str) -> str:
    return branch_name(number, title)


def part_branch(number: int, title: str, part: Part) -> str:
    """orch/<issue>-<slug>--<k>-<specialty>."""
    return f"{branch_name(number, title)}--{part.k}-{slug(part.specialty, 20)}"
