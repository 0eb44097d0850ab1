"""The one playbook engine: playbooks/*.yml read with line numbers, rendered to POSIX sh.

Both playbooks (dispatch.yml, the remote job; bootstrap.yml, the host preflight) are
YAML files whose text bodies are Jinja2 templates of sh. One policy for both, the safe
one: every `{{ expression }}` is shell-quoted unless it went through `q`, `path` or
`raw`, which mark their output as already shell text. So safety never depends on the
playbook's author remembering to quote. Undefined variables are errors, so a typo fails
at render time (naming the file and line), not on a host.

Filters:
  q     quote for sh (None is '', NUL is dropped: no shell variable can hold one)
  path  quote, keeping a leading `~/` as "$HOME"/ so it expands on the host
  words a list as words: each item quoted, joined by spaces (`set -- {{ list | words }}`)
  raw   insert unquoted: only for text the playbook's author wrote themself

Human-facing text (bootstrap's `fix:` advice) renders with `text_environment`: the same
strictness, no quoting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from ..config import yamlfile
from ..core import shell
from ..errors import ConfigError


class ShellText(str):
    """Text that is already valid shell (the output of q, path, raw): not quoted again."""


def q(value: Any) -> ShellText:
    return ShellText("''" if value is None else shell.quote(str(value).replace("\0", "")))


def path(value: Any) -> ShellText:
    return ShellText("''" if value is None or value == "" else shell.path(str(value).replace("\0", "")))


def raw(value: Any) -> ShellText:
    return ShellText(str(value))


def words(values: Any) -> ShellText:
    return ShellText(" ".join(q(v) for v in values))


def _finalize(value: Any) -> str:
    return value if isinstance(value, ShellText) else q(value)


@functools.cache
def shell_environment() -> jinja2.Environment:
    """Strict undefined, no HTML escaping, every output shell-quoted unless marked."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, finalize=_finalize)
    env.filters.update(q=q, path=path, raw=raw, words=words)
    return env


@functools.cache
def text_environment() -> jinja2.Environment:
    """For text people read (advice, messages): strict, never quoted."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def render(env: jinja2.Environment, source: str, ctx: dict[str, Any], *, file: str,
           what: str, line: int | None, hint: str | None = None) -> str:
    """Render one template body; a mistake is a ConfigError naming file, line and part.

    `line` is where the body starts in the playbook: a syntax error is placed at its own
    line inside the body, an undefined variable at the body's start (Jinja2 does not say
    where it was used).
    """
    return _render(lambda: env.from_string(source), ctx, file=file, what=what, line=line,
                   hint=hint)


def render_named(env: jinja2.Environment, name: str, ctx: dict[str, Any], *, file: str,
                 line: int | None, hint: str | None = None) -> str:
    """`render` for one of the bodies `with_bodies` gave `env`: `name` is also the part
    its errors name."""
    return _render(lambda: env.get_template(name), ctx, file=file, what=name, line=line,
                   hint=hint)


def _render(template: Callable[[], jinja2.Template], ctx: dict[str, Any], *, file: str,
            what: str, line: int | None, hint: str | None) -> str:
    try:
        return template().render(ctx)
    except jinja2.TemplateSyntaxError as exc:
        at = (line + exc.lineno - 1) if line and exc.lineno else line
        raise ConfigError(file, f"{what}: {exc.message}", line=at) from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(file, f"{what}: {exc.message}", line=line, hint=hint) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(file, f"{what}: cannot render: {exc}", line=line, hint=hint) from None


def with_bodies(env: jinja2.Environment, bodies: dict[str, str],
                bytecode: jinja2.BytecodeCache) -> jinja2.Environment:
    """`env` (its filters and policy) whose templates are `bodies` by name, loaded
    through `bytecode`: a body compiled before is not compiled again."""
    return env.overlay(loader=jinja2.DictLoader(bodies), bytecode_cache=bytecode)


def load_document(file: Path, text: str | None = None) -> Any:
    """A playbook's YAML (`text`, else the file's), read by config/yamlfile (the one
    YAML-with-lines reader): every mistake is a ConfigError with its line; mappings and
    lists carry their lines."""
    if text is None:
        return yamlfile.read_document(Path(file))
    return yamlfile.parse_document(text, Path(file))


def key_line(container: Any, key: Any) -> int | None:
    """The 1-based line of `key` (a mapping key or a list index) in a loaded document."""
    return yamlfile.key_line(container, key)


def body_line(mapping: Any, key: str) -> int | None:
    """The 1-based line where the text of `mapping[key]` starts: the line after the key
    for a block scalar (`run: |`), the key's own line otherwise."""
    at = yamlfile.key_line(mapping, key)
    if at is None:
        return None
    return at + 1 if _is_block_scalar(mapping.get(key)) else at


def _is_block_scalar(value: Any) -> bool:
    from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
    return isinstance(value, (LiteralScalarString, FoldedScalarString))
