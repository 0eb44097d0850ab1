"""Prompt rendering (pure) and where the shipped prompts/ and playbooks/ are found."""

from __future__ import annotations

import jinja2
import pytest

from orchestrator.config import resources
from orchestrator.config.settings import Settings
from orchestrator.core.models import SPECIALTIES, Issue
from orchestrator.core.prompts import FIX_PROMPT_TAG, TEST_OUTPUT_MARKER, render_fix_prompt, render_prompt
from orchestrator.errors import UsageError

ISSUE = Issue(repo="acme/calc", number=12, title="add() returns $(wrong) `values`",
              body="Steps:\n1. call add(2, 3)\n2. get -1\n\n{{ not_a_template }} {% raw %}",
              labels=("bug", "backend"),
              comments=tuple(f"remark #{i}" for i in range(1, 9)))


@pytest.mark.parametrize("specialty", SPECIALTIES)
def test_every_specialty_renders_the_issue(specialty):
    text = render_prompt(specialty, issue=ISSUE, repo="acme/calc", branch="orch/12-add",
                         test_command="python3 -m pytest -q")
    assert ISSUE.title in text and ISSUE.body in text     # untrusted text is data, verbatim
    assert "Labels: bug, backend" in text
    assert "acme/calc" in text and "`orch/12-add`" in text and "`python3 -m pytest -q`" in text
    assert "remark #8" in text and "remark #4" in text and "remark #3" not in text   # last 5
    assert "Do not commit" in text


def test_specialties_differ_in_their_intro():
    intros = {s: render_prompt(s, issue=ISSUE, repo="r", branch="b", test_command=None)
              .split("\n", 1)[0] for s in SPECIALTIES}
    assert len(set(intros.values())) == len(SPECIALTIES)
    assert "backend" in intros["backend"] and "frontend" in intros["frontend"]


def test_unknown_specialty_falls_back_to_general():
    a = render_prompt("quantum", issue=ISSUE, repo="r", branch="b", test_command=None)
    assert a == render_prompt("general", issue=ISSUE, repo="r", branch="b", test_command=None)
    assert "orch detects the test command" in a


def test_fix_prompt_has_the_tag_and_one_marker_line():
    issue = Issue(repo="r", number=1, title=f"t {TEST_OUTPUT_MARKER}",
                  body=f"x\n{TEST_OUTPUT_MARKER}\n{FIX_PROMPT_TAG}\n")
    text = render_fix_prompt(issue=issue, repo="r", branch="b", test_command="make test")
    assert text.startswith(FIX_PROMPT_TAG + "\n")
    assert text.count(TEST_OUTPUT_MARKER) == 1                 # the issue's copies are defanged
    assert f"\n{TEST_OUTPUT_MARKER}\n" in text
    assert "`make test`" in text
    first = render_prompt("general", issue=issue, repo="r", branch="b", test_command=None)
    assert TEST_OUTPUT_MARKER not in first and not first.startswith(FIX_PROMPT_TAG)


def test_custom_prompts_dir(tmp_path):
    (tmp_path / "general.md.j2").write_text("Issue {{ number }}: {{ title }}\n")
    (tmp_path / "fix.md.j2").write_text("Fix {{ title }}\n")        # forgot tag and marker
    assert render_prompt("backend", issue=ISSUE, repo="r", branch="b", test_command=None,
                         prompts_dir=tmp_path) == f"Issue 12: {ISSUE.title}\n"
    fix = render_fix_prompt(issue=ISSUE, repo="r", branch="b", test_command=None, prompts_dir=tmp_path)
    assert fix.startswith(FIX_PROMPT_TAG) and f"\n{TEST_OUTPUT_MARKER}\n" in fix
    (tmp_path / "general.md.j2").write_text("{{ no_such_thing }}\n")
    with pytest.raises(jinja2.UndefinedError):
        render_prompt("general", issue=ISSUE, repo="r", branch="b", test_command=None,
                      prompts_dir=tmp_path)


def test_empty_body_and_long_comments():
    issue = Issue(repo="r", number=1, title="t", body="", comments=("x" * 10_000,))
    text = render_prompt("general", issue=issue, repo="r", branch="b", test_command=None)
    assert "(no description)" in text and "[… comment cut …]" in text and "x" * 10_000 not in text


def test_resources_find_the_checkout_and_honour_overrides(tmp_path):
    assert (resources.playbooks_dir() / "dispatch.yml").is_file()
    assert (resources.prompts_dir() / "fix.md.j2").is_file()
    s = Settings(playbooks_dir=str(tmp_path), prompts_dir=str(tmp_path))
    assert resources.playbooks_dir(s) == tmp_path and resources.prompts_dir(s) == tmp_path
    with pytest.raises(UsageError, match="playbooks directory not found"):
        resources.playbooks_dir(Settings(playbooks_dir=str(tmp_path / "missing")))


def test_resources_fall_back_to_the_installed_share(tmp_path, monkeypatch):
    share = tmp_path / "share" / "orch" / "prompts"
    share.mkdir(parents=True)
    (share / "general.md.j2").write_text("x")
    monkeypatch.setattr(resources, "_CHECKOUT", tmp_path / "nowhere")
    monkeypatch.setattr(resources.sys, "prefix", str(tmp_path))
    assert resources.prompts_dir() == share
    with pytest.raises(UsageError, match="cannot find orch's playbooks"):
        resources.playbooks_dir()
