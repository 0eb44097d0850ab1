"""playbooks/dispatch.yml as data: a prelude and named steps whose bodies are Jinja2
templates of sh, read and compiled once per content.

Reading the playbook (ruamel, for the lines its errors name: ~40 ms with the import) and
compiling its bodies (~15 ms) would otherwise be paid by every dispatch. The result is
kept in orch's cache (orchestrator/cache.py) under a key made of the playbook's text and
the source of the code that reads and compiles it, so a changed playbook (or a changed
orch) is read again, never served stale. Only a valid playbook is kept: one with a
mistake is read again each time and fails the same way, naming its file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .. import cache
from ..bytecode import Bytecode, code_key
from ..config import yamlfile
from ..errors import ConfigError
from . import engine

_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    line: int | None = None     # where its body starts in the playbook, for errors


@dataclass(frozen=True)
class Playbook:
    path: str
    prelude: str
    steps: tuple[Step, ...]
    prelude_line: int | None = None

    def bodies(self) -> dict[str, str]:
        """Each template body by the name errors give it: `prelude`, `step NAME`."""
        return {"prelude": self.prelude, **{f"step {s.name}": s.run for s in self.steps}}


def load_playbook(path: Path, text: str | None = None) -> Playbook:
    """Read (or take `text` as the file's content) and validate a playbook's shape;
    errors name the file and line."""
    where = str(path)
    data = engine.load_document(Path(path), text)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ConfigError(where, "expected a mapping with `prelude:` (text) and `steps:` (a list)")
    prelude = data.get("prelude") or ""
    if not isinstance(prelude, str):
        raise ConfigError(where, "must be text (a `|` block)", key="prelude",
                          line=engine.key_line(data, "prelude"))
    steps: list[Step] = []
    seen: set[str] = set()
    for i, item in enumerate(data["steps"]):
        line = engine.key_line(data["steps"], i)
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("run"), str):
            raise ConfigError(where, "each step needs `name:` and `run:` (text)",
                              key=f"steps[{i}]", line=line)
        name = item["name"]
        if not _STEP_NAME.match(name) or name in seen:
            raise ConfigError(where, f"step name {name!r} is not a unique simple word",
                              key=f"steps[{i}].name", line=line)
        unknown = set(item) - {"name", "run"}
        if unknown:
            raise ConfigError(where, f"unknown key(s) {', '.join(sorted(unknown))}",
                              key=f"steps[{i}]", line=line)
        seen.add(name)
        steps.append(Step(name, str(item["run"]), engine.body_line(item, "run")))
    return Playbook(where, str(prelude), tuple(steps), engine.body_line(data, "prelude"))


@dataclass
class Compiled:
    """A playbook ready to render: `env`'s templates are its bodies (`Playbook.bodies`),
    compiled through `bytecode`; `save` keeps what was new in the cache."""

    playbook: Playbook
    env: jinja2.Environment
    bytecode: Bytecode
    entry: str                  # the cache entry's name (one per playbook file)
    key: str                    # what the entry must have been made for
    parsed: bool                # read from the file now, not from the cache

    def save(self) -> None:
        if self.parsed or self.bytecode.changed:
            pb = self.playbook
            cache.store(self.entry, self.key, {
                "prelude": pb.prelude, "prelude_line": pb.prelude_line,
                "steps": [(s.name, s.run, s.line) for s in pb.steps],
                "bytecode": self.bytecode.entries})


def compiled(path: Path) -> Compiled:
    """The playbook at `path`, from the cache when its text is the one cached."""
    text = yamlfile.read_text(path)     # its errors (missing, not UTF-8) as read_document's
    # The code whose behaviour a cached playbook stands for: a change in any is a new key.
    key = cache.key(text.encode(), code_key(__file__, engine.__file__, yamlfile.__file__).encode())
    entry = cache.entry_name("playbook", path)
    hit = _from_cache(cache.load(entry, key), path)
    if hit is None:
        pb, bytecode = load_playbook(path, text), Bytecode()
    else:
        pb, bytecode = hit
    env = engine.with_bodies(engine.shell_environment(), pb.bodies(), bytecode)
    return Compiled(pb, env, bytecode, entry, key, parsed=hit is None)


def _from_cache(value: Any, path: Path) -> tuple[Playbook, Bytecode] | None:
    """The cached playbook and bytecode, or None unless `value` has exactly their shape
    (an entry is only ever written by `Compiled.save`; anything else is a miss)."""
    try:
        steps = tuple(Step(name, run, line) for name, run, line in value["steps"])
        pb = Playbook(str(path), value["prelude"], steps, value["prelude_line"])
        codes = Bytecode.entries_in(value["bytecode"])
    except Exception:  # noqa: BLE001 - a miss
        return None
    texts = [pb.prelude, *(x for s in steps for x in (s.name, s.run))]
    lines = [pb.prelude_line, *(s.line for s in steps)]
    if codes is None or not all(isinstance(t, str) for t in texts) \
            or not all(n is None or type(n) is int for n in lines):
        return None
    return pb, Bytecode(codes)
