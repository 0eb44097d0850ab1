"""The libyaml fast path of yamlfile.load_validated: it may only answer when it reads a
document exactly as the round-trip (ruamel, YAML 1.2) parser does; errors always come
from the round-trip path, so their lines and wording never change."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config.yamlfile import _UNSURE, fast_parse, parse_document

REPO = Path(__file__).resolve().parent.parent


def _same(fast, slow, where="doc") -> None:
    """Equal values of the same kinds (True is not 1, 1 is not 1.0, 'x' is 'x')."""
    if slow is None or isinstance(slow, bool):
        assert fast is slow, where
    elif isinstance(slow, int):
        assert type(fast) is int and fast == slow, where
    elif isinstance(slow, float):
        assert type(fast) is float and fast == slow, where
    elif isinstance(slow, str):
        assert type(fast) is str and fast == str(slow), where
    elif isinstance(slow, dict):
        assert type(fast) is dict and list(fast) == [str(k) if isinstance(k, str) else k
                                                     for k in slow], where
        for key in slow:
            _same(fast[key], slow[key], f"{where}.{key}")
    elif isinstance(slow, list):
        assert type(fast) is list and len(fast) == len(slow), where
        for i, (a, b) in enumerate(zip(fast, slow, strict=False)):
            _same(a, b, f"{where}[{i}]")
    else:  # pragma: no cover - the fast path should have said "unsure"
        raise AssertionError(f"{where}: ruamel gave {type(slow).__name__}")


def _check(text: str) -> object:
    fast = fast_parse(text)
    if fast is not _UNSURE:
        _same(fast, parse_document(text, Path("x.yml")))
    return fast


def _yaml_blocks(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


DOCS = [
    "",
    "# only a comment\n",
    "hosts:\n",
    "a: 1\nb: -2\nc: +3\nd: 0\ne: 2.5\nf: -0.25\ng: true\nh: False\ni: null\nj: ~\nk:\n",
    "a: yes\nb: no\nc: on\nd: off\ne: y\nf: 1:20\ng: 1.2.3\nh: 127.0.1.10\ni: 8h\n",
    "a: 'quoted'\nb: \"dq\\tx\"\nc: 'it''s'\nd: '1'\ne: \"true\"\nf: ''\n",
    "a: |\n  one\n  two\nb: >-\n  folded\n  text\nc: plain\n  continued\n",
    "list: [a, 'b', 3, 4.5, true, null]\nblock:\n  - x\n  -   y\n  - - nested\n",
    "m: {a: 1, b: {c: [1, 2]}}\n",
    "a: &anchor {x: 1}\nb: *anchor\n",
    "key with spaces: value with:colon\n'quoted key': 1\n\"k2\": 2\n",
    "a: value # comment\n# comment\nb: 'x' # c\n",
    "---\na: 1\n...\n",
    "a: ~/path/to/file\nb: /abs/path\nc: owner/name\nd: https://example.com/x\n",
    "a: 'α β γ'\nb: ünïcode\n",
    "b: '-'\nc: -x\nd: x-\n",
]

UNSURE = [
    "a: 0x1f\n", "a: 0o17\n", "a: 017\n", "a: 1_000\n", "a: 1e3\n", "a: 1.5e3\n", "a: .5\n",
    "a: .inf\n", "a: -.Inf\n", "a: .nan\n", "a: 2026-11-24\n", "a: 2026-11-24 10:00:00\n",
    "a: =\n", "<<: {a: 1}\n", "a: !!str 3\n", "a: !!int '3'\n", "a: !custom x\n",
    "%YAML 1.1\n---\na: yes\n", "a: 1\na: 2\n", "hosts:\n  x: {}\n  x: {}\n",
    "a: [\n", "a:\n\tb: 1\n", "---\na: 1\n---\nb: 2\n", "? [a, b]\n: 1\n", "a: 1.\n",
    "a: +.5\n", "a: 0b101\n", "a: b: c\n", "a: -\n",
]


@pytest.mark.parametrize("text", DOCS)
def test_fast_path_reads_what_ruamel_reads(text: str) -> None:
    assert _check(text) is not _UNSURE


@pytest.mark.parametrize("text", UNSURE)
def test_fast_path_leaves_the_rest_to_ruamel(text: str) -> None:
    assert fast_parse(text) is _UNSURE


def test_project_examples_agree() -> None:
    texts = [(REPO / "inventory" / "hosts.example.yml").read_text()]
    texts += _yaml_blocks(REPO / "README.md")
    for page in sorted((REPO / "docs").glob("*.md")):      # docs/SPEC.md, docs/configuration.md, ...
        texts += _yaml_blocks(page)
    assert len(texts) >= 8, "the README and docs/ lost their YAML examples"
    for text in texts:
        _check(text)
    assert _check(texts[0]) is not _UNSURE


def _load_both(tmp_path: Path) -> list[str]:
    """Load the example inventory and a config in a fresh interpreter: [what it read,
    which YAML libraries it had imported]."""
    inv = tmp_path / "hosts.yml"
    inv.write_text((REPO / "inventory" / "hosts.example.yml").read_text())
    cfg = tmp_path / "orch.yml"
    cfg.write_text("ssh:\n  connect_timeout: 5s\nagent:\n  max_cost_usd: 2.5\n")
    code = (f"import sys\nfrom pathlib import Path\n"
            f"from orchestrator.fleet.inventory import load_inventory\n"
            f"from orchestrator.config.load import load_settings\n"
            f"hosts = load_inventory(Path({str(inv)!r}))\n"
            f"s = load_settings(Path({str(cfg)!r}))\n"
            f"print([h.name for h in hosts], hosts[1].enabled, hosts[0].port, "
            f"s.ssh.connect_timeout, s.agent.max_cost_usd)\n"
            f"print(sorted(m for m in ('yaml', 'ruamel') if m in sys.modules))\n")
    return subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                          capture_output=True, text=True).stdout.splitlines()


READ = "['backend-1', 'frontend-1'] False 22 5.0 2.5"


def test_reading_a_valid_file_does_not_import_ruamel(tmp_path: Path) -> None:
    read, libraries = _load_both(tmp_path)
    assert read == READ and "ruamel" not in libraries


def test_an_invalid_file_still_names_its_line(tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError
    from orchestrator.fleet.inventory import load_inventory
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  a:\n    address: x\n    enabled: yes\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(inv)
    assert caught.value.line == 4 and "true or false" in str(caught.value)


def test_a_file_read_before_is_neither_parsed_nor_needs_pyyaml(tmp_path: Path, monkeypatch) -> None:
    """What libyaml read is kept in orch's cache: the next process reads the same config
    and inventory without parsing them, without importing PyYAML (or ruamel)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs = [_load_both(tmp_path) for _ in range(2)]
    assert runs[0][0] == runs[1][0] == READ
    assert runs[0][1] == "['yaml']"          # the first one parsed them with libyaml
    assert runs[1][1] == "[]"                # the second one read them from the cache


def test_a_kept_file_changed_or_damaged_is_parsed_again(tmp_path: Path, monkeypatch) -> None:
    from orchestrator import cache
    from orchestrator.config import yamlfile
    from orchestrator.fleet.inventory import load_inventory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parsed = []
    real = yamlfile.fast_parse
    monkeypatch.setattr(yamlfile, "fast_parse", lambda text: parsed.append(text) or real(text))
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  a:\n    address: x\n")
    assert [h.address for h in load_inventory(inv)] == ["x"]
    assert [h.address for h in load_inventory(inv)] == ["x"] and len(parsed) == 1
    inv.write_text("hosts:\n  a:\n    address: y\n")             # same size, new text
    assert [h.address for h in load_inventory(inv)] == ["y"] and len(parsed) == 2
    [entry] = cache.cache_dir().glob("yaml-*")                    # one entry per file
    entry.write_bytes(b"\x00damaged")
    assert [h.address for h in load_inventory(inv)] == ["y"] and len(parsed) == 3
    assert [h.address for h in load_inventory(inv)] == ["y"] and len(parsed) == 3


def test_a_kept_file_with_a_mistake_still_names_its_line(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.errors import ConfigError
    from orchestrator.fleet.inventory import load_inventory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  a:\n    address: x\n    max_tasks: many\n")
    for _ in range(2):              # the second time from the cache: the same error
        with pytest.raises(ConfigError) as caught:
            load_inventory(inv)
        assert caught.value.line == 4 and "max_tasks" in str(caught.value)
