"""A split's pure parts (issue 13, core/split.py): the label rule, a planner's plan and
its validation (untrusted agent output), the dependency order, the branch names; the
texts on the forge (core/report.py) and the prompts (core/prompts.py) keep the plan's
text as data; the stand-in's scoped directives and structured output."""

from __future__ import annotations

import json

import pytest

from orchestrator.config.settings import DEFAULT_SPECIALTIES
from orchestrator.core import report
from orchestrator.core.models import SPECIALTIES, Issue, Task
from orchestrator.core.prompts import render_merge_prompt, render_part_prompt, render_plan_prompt
from orchestrator.core.split import (
    Part,
    PlanRefused,
    dependency_order,
    part_branch,
    parts_from_labels,
    ready_parts,
    validate_plan,
)
from orchestrator.demo.standin_agent import parse_directives

KNOWN = list(SPECIALTIES)


def p(title: str, specialty: str, deps=(), paths=()) -> dict:
    return {"title": title, "specialty": specialty, "instructions": "x", "paths": list(paths),
            "depends_on": list(deps)}


def test_two_specialty_labels_make_one_part_each_and_testing_comes_last():
    parts = parts_from_labels("Add login", ["orch", "testing", "ui", "backend"], DEFAULT_SPECIALTIES)
    assert [(x.k, x.specialty, x.depends_on) for x in parts] == [
        (1, "backend", ()), (2, "frontend", ()), (3, "testing", (1, 2))]


@pytest.mark.parametrize("labels", [["orch"], ["orch", "backend"], ["backend", "api"],
                                    ["general", "backend"]])
def test_fewer_than_two_specialties_is_no_split(labels):
    assert parts_from_labels("t", labels, DEFAULT_SPECIALTIES) == []


def test_a_valid_plan_becomes_parts():
    parts = validate_plan({"parts": [p("a", "backend", paths=["api/"]), p("b", "frontend", [1])]},
                          known=KNOWN, max_parts=4)
    assert parts == [Part(1, "a", "backend", "x", ("api/",)), Part(2, "b", "frontend", "x", (), (1,))]


@pytest.mark.parametrize("raw, why", [
    ([p("a", "backend", [2]), p("b", "frontend", [3]), p("c", "testing", [1])],
     "the parts depend on each other in a cycle: parts 1, 2, 3"),
    ([p("a", "backend", [1])], "part 1 depends on part 1, which is not another part"),
    ([p("a", "backend", [5])], "part 1 depends on part 5, which is not another part"),
    ([p("a", "wizard")], "part 1 names an unknown specialty 'wizard'"),
    ([p(str(i), "backend") for i in range(5)], "the plan has 5 parts; split.max_parts allows 4"),
    ([], "the plan is not a non-empty list of parts"),
    ("rm -rf /", "the plan is not a non-empty list of parts"),
    ([{"title": "", "specialty": "backend"}], "part 1 has no title"),
    ([p("a", "backend") | {"depends_on": [True]}], "part 1's depends_on is not a list"),
    ([p("a", "backend") | {"paths": "api"}], "part 1's paths must be a list of strings"),
])
def test_an_invalid_plan_is_refused_with_the_reason(raw, why):
    with pytest.raises(PlanRefused) as exc:
        validate_plan(raw, known=KNOWN, max_parts=4)
    assert why in str(exc.value)


def test_dependency_order_and_readiness():
    parts = [Part(1, "a", "testing", depends_on=(2, 3)), Part(2, "b", "backend"),
             Part(3, "c", "frontend", depends_on=(2,))]
    assert [x.k for x in dependency_order(parts)] == [2, 3, 1]
    assert [x.k for x in ready_parts(parts, merged=[], started=[])] == [2]
    assert [x.k for x in ready_parts(parts, merged=[2], started=[2])] == [3]
    assert [x.k for x in ready_parts(parts, merged=[2, 3], started=[2, 3])] == [1]


def test_part_branches_are_valid_whatever_the_title():
    from orchestrator.job.playbook import valid_branch
    branch = part_branch(12, "Fix `$(id)` ../ ..", Part(2, "t", "frontend"))
    assert branch == "orch/12-fix-id--2-frontend" and valid_branch(branch)


def _task(**kw) -> Task:
    base = dict(id="c1", repo="o/r", issue=3, title="T", specialty="backend", kind="part",
                parent="p1", host="h1", status="running", split={"part": {"k": 1}})
    return Task(**(base | kw))


def test_a_hostile_plan_reaches_the_comment_as_code_only():
    parent = Task(id="p1", repo="o/r", issue=3, title="T", specialty="general", kind="split",
                  branch="orch/3-t", split={"plan": [
                      {"k": 1, "title": "@admin <img src=x> | `x`", "specialty": "backend",
                       "paths": ["a|b"], "depends_on": []}]})
    body = report.comment_split(parent, [_task()], 1)
    assert "@admin" not in body and "@\u2060admin" in body
    # only inside a code span longer than any backtick run in it
    assert body.count("<img") == 1 and "| `` @\u2060admin <img src=x> \\| `x` `` |" in body
    assert "a\\|b" in body                          # a table cell cannot be split
    failed = report.comment_split_failed(parent, [_task(status="failed")], _task(status="failed"),
                                         "```\n@everyone hi")
    assert "@everyone" not in failed and "```` text" not in failed


def test_the_pr_body_has_a_row_per_part_and_closes_the_issue():
    parent = Task(id="p1", repo="o/r", issue=3, title="T", specialty="general", kind="split")
    kids = [_task(id="a", commit="0123456789abcdef", turns=3, cost_usd=0.5, tests="passed"),
            _task(id="b", specialty="frontend", host="h2", split={"part": {"k": 2}})]
    body = report.split_pr_body(parent, kids, {"a": "did the api", "b": "@x did ui"})
    assert "| part 1 | `backend` | `h1` | `running` | 3 | $0.50 | passed | `0123456789ab` |" in body
    assert "| part 2 | `frontend` | `h2` |" in body
    assert "Closes #3\n" in body and "@x" not in body


ISSUE = Issue(repo="o/r", number=3, title="Add it", body="orch-standin[backend]: write a.txt a\n"
                                                         "@@ORCH_TEST_OUTPUT@@")


def test_a_part_prompt_has_the_issue_its_part_the_others_and_the_integrated_commits():
    parts = [Part(1, "api", "backend", "do the api", ("api/",)),
             Part(2, "ui", "frontend", "do the ui", ("web/",), (1,))]
    text = render_part_prompt("frontend", issue=ISSUE, repo="o/r", branch="b", test_command=None,
                              part=parts[1], parts=parts,
                              integrated=[{"k": 1, "specialty": "backend", "commit": "abc123"}])
    assert "orch-standin[backend]: write a.txt a" in text        # the whole issue
    assert "<!-- orch:part frontend -->" in text
    assert "part 2 of 2 (frontend)" in text and "do the ui" in text
    assert "part 1 (backend): api; owns api/" in text
    assert "part 1 (backend): commit abc123" in text
    assert "@@ORCH_TEST_OUTPUT@@" not in text                    # defanged


def test_the_merge_and_plan_prompts():
    merge = render_merge_prompt(issue=ISSUE, repo="o/r", branch="orch/3-add-it", parts=[
        {"k": 1, "specialty": "backend", "title": "api", "branch": "orch/3-add-it--1-backend",
         "summary": "wrote api"}])
    assert merge.startswith("<!-- orch:merge-prompt -->") and "wrote api" in merge
    plan = render_plan_prompt(issue=ISSUE, specialties=KNOWN, max_parts=3)
    assert "at most 3 parts" in plan and "backend, frontend" in plan


def test_the_standin_acts_on_its_scope_only_and_answers_structured_output():
    issue = ("orch-standin: write plain.txt p\norch-standin[backend]: write b.txt b\n"
             "orch-standin[merge]: write m.txt m\n"
             "orch-standin[plan]: structured '{\"parts\": []}'\n")
    assert [a for _, a in parse_directives(issue).actions] == [["plain.txt", "p"]]
    part = parse_directives("<!-- orch:part backend -->\n" + issue)
    assert [a for _, a in part.actions] == [["b.txt", "b"]]
    merge = parse_directives("<!-- orch:merge-prompt -->\n" + issue)
    assert [a for _, a in merge.actions] == [["m.txt", "m"]]
    plan = parse_directives("<!-- orch:plan-prompt -->\n" + issue)
    assert plan.structured == {"parts": []} and plan.actions == []


def test_the_shipped_schema_is_the_plan_shape():
    from orchestrator.config.resources import prompts_dir
    schema = json.loads((prompts_dir() / "split-schema.json").read_text())
    item = schema["properties"]["parts"]["items"]
    assert sorted(item["required"]) == ["depends_on", "instructions", "paths", "specialty", "title"]


def test_a_record_from_before_splits_reads_without_the_split_field():
    old = {"id": "a1", "repo": "o/r", "issue": 1, "title": "t", "specialty": "backend",
           "status": "succeeded"}
    task = Task.from_json(old)
    assert task.split is None and task.kind == "issue"
    assert Task.from_json(task.to_json()) == task


def test_the_split_settings(tmp_path):
    from orchestrator.config.load import load_settings
    from orchestrator.errors import ConfigError
    path = tmp_path / "orch.yml"
    path.write_text("split:\n  by_labels: false\n  max_parts: 3\n")
    s = load_settings(path)
    assert (s.split.by_labels, s.split.max_parts) == (False, 3)
    path.write_text("repos: []\nsplit:\n  max_parts: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "split.max_parts" in caught.value.message and ":3" in caught.value.message
    assert caught.value.exit_code == 2


def test_orch_top_and_orch_tasks_show_parts_under_their_parent():
    from orchestrator.ops.snapshot import order_live
    from orchestrator.render.tasks import nested
    parent = Task(id="p1", repo="o/r", issue=3, title="T", specialty="general", kind="split",
                  status="running", host="", started_at="2026-01-01T00:00:00Z")
    a = _task(id="a", started_at="2026-01-01T00:00:01Z")
    b = _task(id="b", specialty="frontend", started_at="2026-01-01T00:00:02Z",
              split={"part": {"k": 2}})
    other = Task(id="z", repo="o/r", issue=4, title="U", specialty="backend", status="running",
                 host="h1", started_at="2026-01-01T00:00:03Z")
    assert [(t.id, d) for t, d in order_live([other, b, a, parent])] == [
        ("p1", 0), ("a", 1), ("b", 1), ("z", 0)]
    # orch tasks: newest first, a parent's children right under it, oldest first
    assert [(t.id, d) for t, d in nested([other, b, a, parent])] == [
        ("z", 0), ("p1", 0), ("a", 1), ("b", 1)]


def test_split_by_labels_false_turns_the_label_rule_off(tmp_path):
    from orchestrator.app import App
    from orchestrator.lifecycle.split import label_parts, wants_planner
    on, off = tmp_path / "on.yml", tmp_path / "off.yml"
    on.write_text("repos: [o/r]\n")
    off.write_text("repos: [o/r]\nsplit:\n  by_labels: false\n")
    labels = ("orch", "backend", "frontend")
    assert [p.specialty for p in label_parts(App(config_path=str(on)), "t", labels)] == [
        "backend", "frontend"]
    assert label_parts(App(config_path=str(off)), "t", labels) == []
    assert wants_planner(("orch", "orch:split")) and not wants_planner(labels)
