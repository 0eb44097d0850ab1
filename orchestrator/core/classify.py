"""Issue -> specialty, with a reason a person can read (pure).

Precedence (docs/SPEC.md, config `specialties`): an explicit override, then the issue's
labels, then keywords in its title and body, else "general". Labels win over keywords
because a label is a person's decision, while keywords are a guess from untrusted text.

Every tie is broken by the order of the specialties in the config, so the same issue
always lands on the same specialty, and the reason says why when there was a choice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from ..errors import UsageError
from .models import Issue

GENERAL = "general"


def classify(issue: Issue, specialties: Mapping[str, Mapping[str, Iterable[str] | None]],
             override: str | None = None) -> tuple[str, str]:
    """Return (specialty, reason) for `issue` under the `specialties` config."""
    if override is not None:
        return _override(override, specialties), "set explicitly (override)"

    by_label = _label_matches(issue.labels, specialties)
    if by_label:
        return _pick(by_label, "label", "labels")

    by_keyword = _keyword_matches(f"{issue.title}\n{issue.body}", specialties)
    if by_keyword:
        return _pick(by_keyword, "keyword", "keywords")

    return GENERAL, "no label or keyword matched"


def known_specialties(specialties: Mapping[str, object]) -> list[str]:
    """The configured specialties plus the always-available 'general'."""
    names = list(specialties)
    return names if GENERAL in names else [*names, GENERAL]


def _override(name: str, specialties: Mapping[str, object]) -> str:
    known = known_specialties(specialties)
    wanted = name.strip().lower()
    for k in known:
        if k.lower() == wanted:
            return k
    raise UsageError(f"unknown specialty {name!r} (known: {', '.join(known)})")


def _words(cfg: Mapping[str, Iterable[str] | None] | None, key: str) -> list[str]:
    """A config list, tolerating a missing or null entry; lowercase, no blanks."""
    values = (cfg or {}).get(key) or []
    if isinstance(values, str):
        values = [values]
    return [str(v).strip().lower() for v in values if str(v).strip()]


# A match: specialty -> (its hit count, the words that matched, in the order found).
Matches = dict[str, tuple[int, list[str]]]


def _label_matches(labels: Iterable[str], specialties: Mapping[str, Mapping[str, Iterable[str] | None]]) -> Matches:
    have = [str(label).strip().lower() for label in labels]
    out: Matches = {}
    for name, cfg in specialties.items():
        wanted = set(_words(cfg, "labels"))
        hits = [label for label in have if label in wanted]
        if hits:
            out[name] = (len(hits), list(dict.fromkeys(hits)))
    return out


@lru_cache(maxsize=256)
def _word_pattern(word: str) -> re.Pattern[str]:
    """`word` as a whole word, case-insensitive.

    Lookarounds instead of \\b so that keywords ending in a non-word character
    ("c++", ".net") still work; "ui" does not match "build", "ci" does not match "cit".
    """
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def _keyword_matches(text: str, specialties: Mapping[str, Mapping[str, Iterable[str] | None]]) -> Matches:
    out: Matches = {}
    for name, cfg in specialties.items():
        total = 0
        found: list[str] = []
        for word in dict.fromkeys(_words(cfg, "keywords")):
            n = len(_word_pattern(word).findall(text))
            if n:
                total += n
                found.append(word)
        if total:
            out[name] = (total, found)
    return out


def _pick(matches: Matches, singular: str, plural: str) -> tuple[str, str]:
    """Most hits wins; ties go to the earlier specialty in the config (dict order)."""
    order = list(matches)
    best = max(order, key=lambda n: (matches[n][0], -order.index(n)))
    hits, words = matches[best]
    if singular == "label":
        quoted = ", ".join(f"'{w}'" for w in words)
        reason = f"{plural if len(words) > 1 else singular} {quoted}"
    else:
        listed = ", ".join(words)
        reason = f"keywords in title/body: {listed}" + (f" ({hits} hits)" if hits > len(words) else "")
    others = [n for n in order if n != best]
    if others:
        rivals = ", ".join(f"{n} ({matches[n][0]})" for n in others)
        tied = any(matches[n][0] == hits for n in others)
        why = "tie broken by config order" if tied else f"most matching {plural}"
        reason += f"; {plural} also point at {rivals}: chose {best}, {why}"
    return best, reason
