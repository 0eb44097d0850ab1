"""The dispatch playbook is read and compiled once per content (job/steps.py), and the
prompts compiled once per content (core/prompts.py, orchestrator/bytecode.py), in orch's
cache (orchestrator/cache.py). Counted, never timed: how often the YAML parser and
Jinja2's compiler ran, on the shipped files and on a user's own."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import jinja2
import pytest

from orchestrator import cache
from orchestrator.config import yamlfile
from orchestrator.config.resources import playbooks_dir
from orchestrator.config.settings import Settings
from orchestrator.core.models import Comment, Issue
from orchestrator.core.prompts import render_fix_prompt, render_prompt
from orchestrator.errors import ConfigError
from orchestrator.job.playbook import render_job
from tests.test_playbook import SHIPPED, spec

USER_STEP = "  - name: deps\n    run: |\n      npm ci --prefix {{ spec.workspace | path }}\n\n"


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """A cache of this test's own, and how many times the playbook was parsed and a
    template body compiled."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    counts = {"parse": 0, "compile": 0}
    parse, compile_ = yamlfile.parse_document, jinja2.Environment.compile

    def counting_parse(*a, **kw):
        counts["parse"] += 1
        return parse(*a, **kw)

    def counting_compile(self, *a, **kw):
        counts["compile"] += 1
        return compile_(self, *a, **kw)

    monkeypatch.setattr(yamlfile, "parse_document", counting_parse)
    monkeypatch.setattr(jinja2.Environment, "compile", counting_compile)
    return counts


def entries(kind: str = "playbook") -> list[Path]:
    d = cache.cache_dir()
    return sorted(d.glob(f"{kind}-*")) if d.is_dir() else []


def user_playbook(directory: Path, marker: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = SHIPPED.read_text().replace("  - name: detect-tests\n",
                                       USER_STEP.replace("npm ci", f"npm ci # {marker}")
                                       + "  - name: detect-tests\n")
    path = directory / "dispatch.yml"
    path.write_text(text)
    return path


def test_the_second_render_reads_neither_yaml_nor_compiles(counted):
    first = render_job(spec(), SHIPPED)
    steps = first.count("\norch_step_")
    assert counted == {"parse": 1, "compile": steps + 1}      # the prelude and each step
    [entry] = entries()
    assert entry.stat().st_mode & 0o077 == 0 and entry.parent.stat().st_mode & 0o077 == 0
    counted.update(parse=0, compile=0)
    assert render_job(spec(), SHIPPED) == first
    other = render_job(spec(task_id="t-other", commit_message="Other (#8)\n"), SHIPPED)
    assert counted == {"parse": 0, "compile": 0}
    assert "\nTASK_ID=t-other\n" in other and "Other (#8)" in other


def test_a_changed_playbook_is_read_again(counted, tmp_path):
    path = user_playbook(tmp_path / "pb", "first")
    assert "# first" in render_job(spec(), path)
    counted.update(parse=0, compile=0)
    path.write_text(path.read_text().replace("# first", "# second"))   # same size, new text
    script = render_job(spec(), path)
    assert "# second" in script and "# first" not in script
    assert counted["parse"] == 1 and counted["compile"] >= 1
    counted.update(parse=0, compile=0)
    assert render_job(spec(), path) == script
    assert counted == {"parse": 0, "compile": 0}
    assert len(entries()) == 1          # one entry per playbook file, replaced


@pytest.mark.parametrize("damage", [
    lambda data: b"",
    lambda data: b"garbage, not marshal",
    lambda data: data[: len(data) // 2],
    lambda data: marshal.dumps(("orch-cache-1", "some other key", {"steps": []})),
    lambda data: marshal.dumps(["not", "a", "tuple"]),
    lambda data: marshal.dumps(("orch-cache-1", marshal.loads(data)[1], {"steps": [("s", 1, "x")]})),
], ids=["empty", "garbage", "truncated", "stale-key", "wrong-shape", "wrong-types"])
def test_a_corrupt_cache_entry_is_ignored_and_replaced(counted, damage):
    expected = render_job(spec(), SHIPPED)
    [entry] = entries()
    entry.write_bytes(damage(entry.read_bytes()))
    counted.update(parse=0, compile=0)
    assert render_job(spec(), SHIPPED) == expected
    assert counted["parse"] == 1
    counted.update(parse=0, compile=0)
    assert render_job(spec(), SHIPPED) == expected
    assert counted == {"parse": 0, "compile": 0}


def test_corrupt_compiled_templates_are_compiled_again(counted):
    expected = render_job(spec(), SHIPPED)
    [entry] = entries()
    fmt, key, value = marshal.loads(entry.read_bytes())
    value["bytecode"] = {k: b"junk" + v[:10] for k, v in value["bytecode"].items()}
    entry.write_bytes(marshal.dumps((fmt, key, value)))
    counted.update(parse=0, compile=0)
    assert render_job(spec(), SHIPPED) == expected
    assert counted["parse"] == 0 and counted["compile"] == len(value["bytecode"])


def test_an_entry_others_may_write_is_not_read(counted):
    render_job(spec(), SHIPPED)
    [entry] = entries()
    entry.chmod(0o666)
    counted.update(parse=0, compile=0)
    render_job(spec(), SHIPPED)
    assert counted["parse"] == 1


def test_a_user_playbook_from_the_config_is_cached_the_same_way(counted, tmp_path):
    settings = Settings(playbooks_dir=str(tmp_path / "mine"))
    user_playbook(tmp_path / "mine", "mine")
    path = playbooks_dir(settings) / "dispatch.yml"
    first = render_job(spec(), path)
    order = [line.split()[1] for line in first.splitlines() if line.startswith("  run_step ")]
    assert order.index("deps") == order.index("branch") + 1
    assert f"rendered from {path}" in first
    counted.update(parse=0, compile=0)
    assert render_job(spec(), path) == first
    assert counted == {"parse": 0, "compile": 0}
    render_job(spec(), SHIPPED)         # a second playbook file: an entry of its own
    assert len(entries()) == 2


def test_a_playbook_with_a_mistake_is_never_cached(counted, tmp_path):
    bad = tmp_path / "dispatch.yml"
    bad.write_text("prelude: |\n  A=1\nsteps:\n  - name: s\n    run: |\n      echo ok\n"
                   "      echo {{ spec.no_such_field }}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"dispatch.yml:6: step s: .*no_such_field"):
            render_job(spec(), bad)
    bad.write_text("steps:\n  - name: s\n    run: |\n      echo ok\n      echo {{ oops\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"dispatch.yml:5: step s"):
            render_job(spec(), bad)
    bad.write_text("steps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"dispatch.yml:3: .*unique"):
            render_job(spec(), bad)
    assert entries() == []


def test_no_usable_cache_directory_is_no_error(counted, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))      # cache_dir() cannot be made
    first = render_job(spec(), SHIPPED)
    assert render_job(spec(), SHIPPED) == first
    assert counted["parse"] == 2


def test_the_cache_directory_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "orch"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")     # the spec: absolute paths only
    assert cache.cache_dir() == Path(os.path.expanduser("~/.cache/orch"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path(os.path.expanduser("~/.cache/orch"))


SHIPPED_PROMPTS = SHIPPED.parent.parent / "prompts"
ISSUE = Issue("acme/calc", 7, "Add a greeting", "Say {{ hello }} $(id)",
              comments=(Comment(author="alice", body="and a bye"),))


def prompts(directory: Path | None = None) -> tuple[str, str]:
    kw = dict(issue=ISSUE, repo="acme/calc", branch="orch/7-add", test_command="pytest",
              prompts_dir=directory)
    return (render_prompt("backend", **kw),
            render_fix_prompt(**kw, specialty="backend"))


def test_the_prompts_are_compiled_once(counted):
    first = prompts(SHIPPED_PROMPTS)
    assert counted["compile"] >= 3       # backend.md.j2 extends general.md.j2; fix.md.j2
    assert "Say {{ hello }} $(id)" in first[0] and "and a bye" in first[0]
    [entry] = entries("prompts")
    assert entry.stat().st_mode & 0o077 == 0
    counted.update(compile=0)
    assert prompts(SHIPPED_PROMPTS) == first
    assert counted["compile"] == 0


def test_an_edited_prompt_is_compiled_again(counted, tmp_path):
    mine = tmp_path / "prompts"
    mine.mkdir()
    for f in SHIPPED_PROMPTS.iterdir():
        (mine / f.name).write_text(f.read_text())
    first = prompts(mine)
    counted.update(compile=0)
    backend = mine / "backend.md.j2"
    backend.write_text(backend.read_text().replace("{% block intro %}\n", "{% block intro %}\nEDITED ", 1))
    edited = prompts(mine)
    assert "EDITED" in edited[0] and edited[1] == first[1]
    assert counted["compile"] == 1       # backend.md.j2 alone
    counted.update(compile=0)
    assert prompts(mine) == edited and counted["compile"] == 0
    assert len(entries("prompts")) == 1  # one entry per prompts directory


@pytest.mark.parametrize("damage", [
    lambda data: b"junk",
    lambda data: data[:-40],
    lambda data: marshal.dumps(("orch-cache-1", marshal.loads(data)[1], {"k": "not bytes"})),
    lambda data: marshal.dumps(("orch-cache-1", marshal.loads(data)[1],
                                {k: b"x" + v[1:] for k, v in marshal.loads(data)[2].items()})),
], ids=["garbage", "truncated", "wrong-types", "bad-bytecode"])
def test_a_corrupt_prompts_entry_is_ignored(counted, damage):
    expected = prompts(SHIPPED_PROMPTS)
    [entry] = entries("prompts")
    entry.write_bytes(damage(entry.read_bytes()))
    assert prompts(SHIPPED_PROMPTS) == expected
    counted.update(compile=0)
    assert prompts(SHIPPED_PROMPTS) == expected
    assert counted["compile"] == 0       # the damaged entry was replaced
