"""Issue classification: precedence, whole-word keywords, deterministic ties, reasons."""

from __future__ import annotations

import pytest

from orchestrator.config.settings import DEFAULT_SPECIALTIES as SPEC
from orchestrator.core.classify import classify, known_specialties
from orchestrator.core.models import Issue
from orchestrator.errors import UsageError


def issue(title: str = "", body: str = "", labels: tuple[str, ...] = ()) -> Issue:
    return Issue(repo="acme/widgets", number=1, title=title, body=body, labels=labels)


def test_override_wins_over_labels_and_keywords() -> None:
    i = issue("React css page", labels=("backend",))
    assert classify(i, SPEC, override="devops") == ("devops", "set explicitly (override)")
    assert classify(i, SPEC, override="General")[0] == "general"
    assert classify(i, SPEC, override="FRONTEND")[0] == "frontend"


def test_unknown_override_lists_known_specialties() -> None:
    with pytest.raises(UsageError) as ei:
        classify(issue(), SPEC, override="mobile")
    assert str(ei.value) == ("unknown specialty 'mobile' "
                             "(known: backend, frontend, testing, devops, general)")
    assert ei.value.exit_code == 2


def test_label_wins_over_keywords_case_insensitive() -> None:
    i = issue("Add a React component with css", labels=("orch", "Frontend"))
    assert classify(i, SPEC) == ("frontend", "label 'frontend'")
    i = issue("Add a React component with css", labels=("DataBase",))
    assert classify(i, SPEC) == ("backend", "label 'database'")


def test_several_labels_of_one_specialty() -> None:
    assert classify(issue(labels=("api", "backend")), SPEC) == ("backend", "labels 'api', 'backend'")


def test_labels_for_several_specialties_most_labels_wins() -> None:
    spec, reason = classify(issue(labels=("ui", "ci", "infra")), SPEC)
    assert spec == "devops"
    assert reason == ("labels 'ci', 'infra'; labels also point at frontend (1): "
                      "chose devops, most matching labels")


def test_labels_tie_broken_by_config_order() -> None:
    spec, reason = classify(issue(labels=("qa", "frontend")), SPEC)
    assert spec == "frontend"      # frontend comes before testing in the config
    assert reason == ("label 'frontend'; labels also point at testing (1): "
                      "chose frontend, tie broken by config order")
    reordered = {"testing": SPEC["testing"], "frontend": SPEC["frontend"]}
    assert classify(issue(labels=("frontend", "qa")), reordered)[0] == "testing"


def test_keywords_in_title_and_body() -> None:
    i = issue("Broken page", "The react component has bad CSS.")
    assert classify(i, SPEC) == ("frontend", "keywords in title/body: react, css, component, page")


def test_keywords_count_repeated_hits_most_hits_wins() -> None:
    i = issue("SQL is slow", "sql sql. Also the docker image.")
    spec, reason = classify(i, SPEC)
    assert spec == "backend"
    assert reason == ("keywords in title/body: sql (3 hits); keywords also point at "
                      "devops (1): chose backend, most matching keywords")


def test_keywords_tie_broken_by_config_order() -> None:
    spec, reason = classify(issue("docker and pytest"), SPEC)
    assert spec == "testing"       # testing is listed before devops
    assert "tie broken by config order" in reason


def test_keywords_are_whole_words() -> None:
    # "ui" inside "build", "ci" inside "decide", "test" inside "latest", "api" in "rapid"
    i = issue("Rapid build", "We decide on the latest sqlite tests")
    assert classify(i, SPEC) == ("general", "no label or keyword matched")
    # punctuation and case around a word still match
    assert classify(issue("(API)"), SPEC)[0] == "backend"
    assert classify(issue("fix e2e-flake"), SPEC)[0] == "testing"


def test_keywords_with_symbols_and_phrases() -> None:
    cfg = {"native": {"labels": [], "keywords": ["c++", "end to end"]}}
    assert classify(issue("Port to C++ now"), cfg)[0] == "native"
    assert classify(issue("An End  to end"), cfg)[0] == "general"     # exact phrase only
    assert classify(issue("an end to end test"), cfg) == ("native", "keywords in title/body: end to end")
    assert classify(issue("c++x"), cfg)[0] == "general"


def test_labels_not_matched_against_text_and_unrelated_labels_ignored() -> None:
    assert classify(issue("nothing here", labels=("orch", "bug")), SPEC) == \
        ("general", "no label or keyword matched")


def test_tolerates_sparse_config_and_untrusted_text() -> None:
    cfg = {"backend": {"keywords": ["api"]}, "frontend": {"labels": None},
           "odd": {"labels": "ops", "keywords": None}}
    assert classify(issue(labels=("ops",)), cfg) == ("odd", "label 'ops'")
    hostile = "$(touch /tmp/x) `rm` [a-z]+ (?P<x>) \\b " * 5000 + " API"
    assert classify(issue("x", hostile), cfg)[0] == "backend"
    assert classify(issue("x"), {}) == ("general", "no label or keyword matched")


def test_known_specialties() -> None:
    assert known_specialties(SPEC) == ["backend", "frontend", "testing", "devops", "general"]
    assert known_specialties({"general": {}, "x": {}}) == ["general", "x"]
