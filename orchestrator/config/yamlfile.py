"""YAML files that people write by hand: read with line numbers, validate, edit in place.

config.py and inventory.py both read user-written YAML and must say *where* a mistake
is (file, line, dotted key). ruamel.yaml's round-trip loader keeps a line for every key
and keeps comments, so the same parsed document serves for validation and for
`orch inventory` edits that leave the user's comments, blank lines and key order alone.

Three parts:
- reading: `read_document` turns every parser error (duplicates included) into a
  ConfigError carrying the line; `load_validated` first tries libyaml (PyYAML's C
  loader, ~20x faster than ruamel's pure-Python round trip) on a text whose every
  scalar it reads exactly as ruamel would, and falls back to ruamel for anything it
  cannot promise and for every mistake, so errors keep their lines and wording; what
  libyaml read is kept in orch's cache, so an unchanged file is not parsed again;
- validating: `Loc` (where a value is) and small composable validators that raise
  ConfigError through it, so a schema is a table of key -> validator;
- editing: `append_entry`, `replace_value`, `remove_entry` move the comment text that
  ruamel attaches to neighbouring nodes so that comments stay next to what they describe,
  and `atomic_write` replaces the file only once the new text is complete.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .. import cache
from ..atomic import replace_file
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
    from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
    from ruamel.yaml.scalarbool import ScalarBoolean
    from ruamel.yaml.tokens import CommentToken

Validator = Callable[[Any, "Loc"], Any]
T = TypeVar("T")

_RUAMEL = False


def _ruamel() -> None:
    """Import ruamel.yaml (~30 ms) on first use: reading a valid file never needs it."""
    global _RUAMEL, YAML, CommentedMap, CommentedSeq, CommentMark, MarkedYAMLError
    global YAMLError, MappingNode, Node, SequenceNode, ScalarBoolean, CommentToken
    if _RUAMEL:
        return
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
    from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
    from ruamel.yaml.scalarbool import ScalarBoolean
    from ruamel.yaml.tokens import CommentToken
    _RUAMEL = True


# --------------------------------------------------------------------------- reading


def new_yaml(text: str = "") -> YAML:
    """A round-trip YAML instance that writes back in the indentation `text` uses.

    Long lines are never folded (width) and quotes are kept as the user wrote them, so a
    load-dump cycle of an untouched document gives the same bytes.
    """
    _ruamel()
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    mapping, sequence, offset = guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    if text.lstrip().startswith("---"):
        yaml.explicit_start = True
    return yaml


_KEY_LINE = re.compile(r"^( +)[^\s#\-][^#]*?:(\s|$)")
_SEQ_LINE = re.compile(r"^( *)- ")


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as used in `text`; 2, 2, 0 if unsure.

    ruamel's own guesser reports the block-sequence indent only, so the mapping indent is
    the smallest indentation of a nested key.
    """
    key_indents = [len(m.group(1)) for m in map(_KEY_LINE.match, text.splitlines()) if m]
    mapping = min(key_indents) if key_indents else 2
    sequence, offset = mapping, 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        seq = _SEQ_LINE.match(line)
        if seq and i > 0 and lines[i - 1].rstrip().endswith(":"):
            parent = len(lines[i - 1]) - len(lines[i - 1].lstrip())
            offset = max(len(seq.group(1)) - parent, 0)
            sequence = max(offset + 2, mapping)
            break
    return mapping, sequence, offset


def read_text(path: Path) -> str:
    """The file's text, or a ConfigError that names it (missing, unreadable, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None


def parse_document(text: str, path: Path, *,
                   duplicate_hints: Mapping[str, str] | None = None) -> Any:
    """Parse `text` round-trip; any YAML mistake becomes a ConfigError with its line.

    `duplicate_hints` maps a dotted parent key (e.g. "hosts") to the hint shown when a key
    under it appears twice.
    """
    _ruamel()
    try:
        return new_yaml(text).load(text)
    except MarkedYAMLError as exc:
        if "duplicate key" in str(exc.problem or ""):
            raise duplicate_key_error(text, path, exc, duplicate_hints or {}) from None
        raise syntax_error(path, exc) from None
    except YAMLError as exc:
        raise ConfigError(str(path), f"invalid YAML: {exc}") from None


def read_document(path: Path, *, duplicate_hints: Mapping[str, str] | None = None) -> Any:
    """Read and parse `path`; None for an empty file."""
    return parse_document(read_text(path), path, duplicate_hints=duplicate_hints)


def load_validated(path: Path, validate: Callable[[Any], T], *,
                   duplicate_hints: Mapping[str, str] | None = None) -> T:
    """`validate(document)` for the YAML file at `path` (None for an empty file).

    The fast path reads the text with libyaml into plain dicts, lists and scalars, only
    when every scalar means there exactly what ruamel (YAML 1.2) would read (see
    `fast_parse`), and validates that. Anything it cannot promise, and every mistake the
    validation finds, goes through the round-trip parser instead: the errors, their lines
    and their wording are those of `read_document` + `validate`, always.
    """
    text = read_text(path)
    data = _fast_parse_kept(text, path)
    if data is not _UNSURE:
        try:
            return validate(data)
        except Exception:  # noqa: BLE001 - the round-trip path says what is wrong, where
            pass
    return validate(parse_document(text, path, duplicate_hints=duplicate_hints))


def _fast_parse_kept(text: str, path: Path) -> Any:
    """`fast_parse(text)`, kept in orch's cache (orchestrator/cache.py) under the text and
    this module's source: a config or inventory read before is not parsed again, and
    PyYAML (~12 ms of start-up) is not even imported. Only plain data is kept (what
    fast_parse answers), so it reads back exactly; `_UNSURE` texts are parsed each time."""
    key = cache.key(text.encode(), cache.file_bytes(__file__))
    entry = cache.entry_name("yaml", path)
    kept = cache.load(entry, key)
    if isinstance(kept, tuple) and len(kept) == 1:
        return kept[0]
    data = fast_parse(text)
    if data is not _UNSURE:
        cache.store(entry, key, (data,))
    return data


class _Unsure(Exception):
    """libyaml might read this text differently from ruamel: use ruamel."""


_UNSURE: Any = _Unsure  # fast_parse's "no answer"

# Plain scalars the fast path types itself, exactly as YAML 1.2 (ruamel) does...
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_TRUE = frozenset(("true", "True", "TRUE"))
_FALSE = frozenset(("false", "False", "FALSE"))
_DEC_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_DEC_FLOAT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\.[0-9]+\Z")
# ...and everything else that ruamel's YAML 1.2 resolvers would type (floats with
# exponents or underscores, .inf/.nan, 0x/0o/0b and leading-zero ints, `<<`, `=`,
# timestamps): the fast path does not guess at those.
_OTHER_TYPED = re.compile(r"""(?:
     [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+
    |<<|=
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?.*
    )\Z""", re.X)


@functools.cache
def _fast_loader() -> Any:
    """A PyYAML C loader with YAML 1.2 scalars (as ruamel reads them), or None without
    libyaml."""
    try:
        import yaml
        from yaml import CSafeLoader
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return None
    str_tag, int_tag = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"
    float_tag, bool_tag = "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
    null_tag = "tag:yaml.org,2002:null"
    map_tag, seq_tag = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
    scalar_node, mapping_node = yaml.ScalarNode, yaml.MappingNode

    def plain_tag(value: str) -> str:
        if value in _NULLS:
            return null_tag
        if value in _TRUE or value in _FALSE:
            return bool_tag
        if _DEC_INT.match(value):
            return int_tag
        if _DEC_FLOAT.match(value):
            return float_tag
        if _OTHER_TYPED.match(value):
            raise _Unsure(value)
        return str_tag

    class Loader(CSafeLoader):
        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            if kind is scalar_node and implicit[0]:
                return plain_tag(value)
            return super().resolve(kind, value, implicit)

        def construct_document(self, node: Any) -> Any:
            _check_nodes(node)
            return super().construct_document(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            mapping = super().construct_mapping(node, deep=deep)
            if len(mapping) != len(node.value):
                raise _Unsure("duplicate key")  # ruamel refuses it, with both lines
            return mapping

    def _check_nodes(root: Any) -> None:
        """Only plain maps, lists, strings and the scalars above, each written so that
        ruamel reads the same (an explicit !!int "0x1f" is not, for one)."""
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue  # an alias: checked once
            seen.add(id(node))
            tag = node.tag
            if isinstance(node, scalar_node):
                if tag == str_tag:
                    continue
                if tag in (null_tag, bool_tag, int_tag, float_tag) and \
                        plain_tag(node.value) == tag:
                    continue
                raise _Unsure(tag)
            if tag == (map_tag if isinstance(node, mapping_node) else seq_tag):
                if isinstance(node, mapping_node):
                    for key, value in node.value:
                        stack.append(key)
                        stack.append(value)
                else:
                    stack.extend(node.value)
                continue
            raise _Unsure(tag)

    return Loader


def fast_parse(text: str) -> Any:
    """The document as plain Python data via libyaml, or `_UNSURE` when libyaml is
    missing, the text has a directive (`%YAML 1.1` changes how ruamel reads it) or a
    "!" (maybe a tag), or anything in it might read differently under ruamel (or fails
    to parse at all)."""
    loader_cls = _fast_loader()
    if loader_cls is None or "!" in text or text.startswith("%") or "\n%" in text:
        return _UNSURE  # "!": an explicit tag, which ruamel keeps as a TaggedScalar
    loader = loader_cls(text)
    try:
        return loader.get_single_data()
    except Exception:  # noqa: BLE001 - _Unsure, a syntax error, a recursive alias...
        return _UNSURE
    finally:
        loader.dispose()


def syntax_error(path: Path, exc: MarkedYAMLError) -> ConfigError:
    """The parser's complaint, at the parser's line, plus where the construct began."""
    problem = str(exc.problem or exc.context or "cannot parse").strip()
    mark = exc.problem_mark or exc.context_mark
    if "<stream end>" in problem and exc.context_mark is not None:
        mark = exc.context_mark      # "got end of file": the unclosed construct is the news
    line = mark.line + 1 if mark is not None else None
    message = f"invalid YAML: {problem}"
    if exc.context and exc.context_mark is not None and exc.problem_mark is not None \
            and exc.context_mark.line != exc.problem_mark.line:
        message += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    hint = None
    if "\\t" in problem or "'\\t'" in problem:
        hint = "YAML indentation must use spaces, not tabs"
    return ConfigError(str(path), message, line=line, hint=hint)


def duplicate_key_error(text: str, path: Path, exc: MarkedYAMLError,
                        hints: Mapping[str, str]) -> ConfigError:
    """Name the duplicated key by its full dotted path and both of its lines.

    ruamel only says 'found duplicate key "x"'; composing the node tree (which keeps
    duplicates) tells us under which parent it sits and where its first copy is.
    """
    found = find_duplicate(text)
    line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
    if found is None:
        return ConfigError(str(path), f"invalid YAML: {exc.problem}", line=line)
    parent, key, first_line, second_line = found
    dotted = f"{parent}.{key}" if parent else key
    return ConfigError(str(path), f"defined twice (first on line {first_line})",
                       line=second_line, key=dotted,
                       hint=hints.get(parent, "remove or rename one of the two"))


def find_duplicate(text: str) -> tuple[str, str, int, int] | None:
    """(dotted parent, key, first line, second line) of the first duplicated mapping key."""
    _ruamel()
    try:
        root = YAML(typ="rt").compose(text)
    except YAMLError:
        return None
    return _walk_for_duplicate(root, "") if root is not None else None


def _walk_for_duplicate(node: Node, prefix: str) -> tuple[str, str, int, int] | None:
    _ruamel()
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                return prefix, key, seen[key], line
            seen[key] = line
            found = _walk_for_duplicate(value_node, join_key(prefix, key))
            if found:
                return found
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            found = _walk_for_duplicate(item, f"{prefix}[{index}]")
            if found:
                return found
    return None


def dump_document(doc: Any, original_text: str = "") -> str:
    """Serialise a round-trip document in the style (indentation) of `original_text`."""
    out = io.StringIO()
    new_yaml(original_text).dump(doc, out)
    return out.getvalue()


# --------------------------------------------------------------------------- locations


def join_key(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def key_line(container: Any, key: Any) -> int | None:
    """1-based line where `key` (a mapping key or a sequence index) is written, if known.

    Nodes added by an edit have no line; errors about them name the key only.
    """
    lc = getattr(container, "lc", None)
    data = getattr(lc, "data", None) if lc is not None else None
    if not data or key not in data:
        return None
    return int(data[key][0]) + 1


@dataclass(frozen=True)
class Loc:
    """Where a value sits: the file, its dotted key and its line, all a ConfigError needs."""

    path: Path
    key: str = ""
    line: int | None = None

    def error(self, message: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(str(self.path), message, line=self.line, key=self.key or None, hint=hint)

    def entry(self, mapping: Any, key: str) -> Loc:
        """The location of `mapping[key]` (its key's line: scalars sit on that line)."""
        return Loc(self.path, join_key(self.key, str(key)), key_line(mapping, key))

    def item(self, seq: Any, index: int) -> Loc:
        return Loc(self.path, f"{self.key}[{index}]", key_line(seq, index) or self.line)


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest known name to a mistyped one, or None if nothing is close."""
    import difflib  # here: only a mistake needs it, every command reads YAML
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key(loc: Loc, key: Any, known: Sequence[str],
                elsewhere: Mapping[str, str] | None = None) -> NoReturn:
    """Reject an unknown key, suggesting the closest known one.

    `elsewhere` maps other spellings (e.g. leaf names of other sections) to where they
    belong, for keys written at the wrong level ("max_turns" -> "agent.max_turns").
    """
    name = str(key)
    close = suggest(name, known)
    if close is None and elsewhere:
        other = name if name in elsewhere else suggest(name, elsewhere)
        close = elsewhere[other] if other else None
    hint = f"did you mean `{close}`?" if close else "known keys: " + ", ".join(known)
    loc.error("unknown key", hint=hint)


def describe(value: Any) -> str:
    """How a wrong value is shown in an error: YAML spelling, short."""
    if value is None:
        return "null"
    if is_bool(value):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(str(text))
    return str(value)


# --------------------------------------------------------------------------- validators


def is_bool(value: Any) -> bool:
    # A ScalarBoolean only comes from a ruamel document, so ruamel is loaded by then.
    return isinstance(value, bool) or (_RUAMEL and isinstance(value, ScalarBoolean))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not is_bool(value)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float))) and not is_bool(value)


def string(value: Any, loc: Loc) -> str:
    """A non-empty string (plain str, whatever ruamel subclass the quotes produced)."""
    if not isinstance(value, str):
        loc.error(f"expected a string, got {describe(value)}")
    if not value.strip():
        loc.error("must not be empty")
    return str(value)


def integer(minimum: int | None = None, maximum: int | None = None,
            hint: str | None = None) -> Validator:
    """An integer within bounds (booleans and floats are refused)."""
    def check(value: Any, loc: Loc) -> int:
        if not is_int(value):
            loc.error(f"expected an integer, got {describe(value)}")
        _check_range(int(value), loc, minimum, maximum, hint)
        return int(value)
    return check


def number(minimum: float | None = None, hint: str | None = None) -> Validator:
    """An int or float, at least `minimum`."""
    def check(value: Any, loc: Loc) -> float:
        if not is_number(value):
            loc.error(f"expected a number, got {describe(value)}")
        _check_range(float(value), loc, minimum, None, hint)
        return float(value)
    return check


def _check_range(value: float, loc: Loc, minimum: float | None, maximum: float | None,
                 hint: str | None) -> None:
    shown = int(value) if float(value).is_integer() else value
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        loc.error(f"must be between {minimum} and {maximum}, got {shown}", hint=hint)
    if minimum is not None and value < minimum:
        loc.error(f"must be at least {minimum}, got {shown}", hint=hint)
    if maximum is not None and value > maximum:
        loc.error(f"must be at most {maximum}, got {shown}", hint=hint)


def boolean(value: Any, loc: Loc) -> bool:
    """true or false; YAML 1.2 reads yes/no/on/off as strings, so say so."""
    if not is_bool(value):
        hint = "write true or false" if isinstance(value, str) else None
        loc.error(f"expected true or false, got {describe(value)}", hint=hint)
    return bool(value)


def choice(*options: str) -> Validator:
    """One of a fixed set of strings, with the closest one suggested."""
    def check(value: Any, loc: Loc) -> str:
        if not isinstance(value, str) or value not in options:
            close = suggest(str(value), options) if isinstance(value, str) else None
            hint = f"did you mean `{close}`?" if close else None
            loc.error(f"expected one of {', '.join(options)}, got {describe(value)}", hint=hint)
        return str(value)
    return check


def optional(inner: Validator) -> Validator:
    """`inner`, or null (None)."""
    def check(value: Any, loc: Loc) -> Any:
        return None if value is None else inner(value, loc)
    return check


def list_of(inner: Validator, what: str = "list") -> Validator:
    """A YAML list whose every item passes `inner`; errors point at the item's line."""
    def check(value: Any, loc: Loc) -> list[Any]:
        if not isinstance(value, list):
            loc.error(f"expected a {what}, got {describe(value)}",
                      hint="write it as [a, b] or one `- item` per line")
        return [inner(item, loc.item(value, i)) for i, item in enumerate(value)]
    return check


def expect_mapping(value: Any, loc: Loc, *, null_ok: bool = True) -> Mapping[Any, Any]:
    """A mapping (an empty section, `key:` with nothing, counts as an empty one)."""
    if value is None and null_ok:
        return {}
    if not isinstance(value, Mapping):
        loc.error(f"expected a mapping (key: value lines), got {describe(value)}")
    return value


def string_key(key: Any, loc: Loc) -> str:
    """Mapping keys people write are names; `1:` or `null:` is a mistake worth naming."""
    if not isinstance(key, str):
        loc.error(f"expected a name, got {describe(key)}", hint="quote it if it is meant as a name")
    return str(key)


# --------------------------------------------------------------------------- editing
#
# ruamel keeps the text between two entries (blank lines, comments) as comment tokens on
# the *previous* entry's deepest last node ("tail"), or before a mapping's first entry
# ("pre-comment"), or, at times, before a key (ca.items[key][1]). Appending or removing
# an entry naively therefore moves or loses that text; these helpers re-home it.


def _is_block(value: Any) -> bool:
    _ruamel()
    return isinstance(value, (CommentedMap, CommentedSeq)) and len(value) > 0 \
        and not value.fa.flow_style()


def _leaf(container: Any, key: Any) -> tuple[Any, Any]:
    """The (container, key) whose comment slot holds the text after `container[key]`."""
    _ruamel()
    value = container[key]
    while _is_block(value):
        container = value
        key = list(value.keys())[-1] if isinstance(value, CommentedMap) else len(value) - 1
        value = container[key]
    return container, key


def _slot_index(container: Any) -> int:
    _ruamel()
    return 2 if isinstance(container, CommentedMap) else 0


def _slot(container: Any, key: Any) -> CommentToken | None:
    _ruamel()
    entry = container.ca.items.get(key)
    if not entry:
        return None
    token = entry[_slot_index(container)]
    return token if isinstance(token, CommentToken) else None


def _split_token(value: str) -> tuple[str, str]:
    """(end-of-line part, text after it) of a post-value comment token."""
    cut = value.find("\n")
    return (value, "") if cut < 0 else (value[:cut + 1], value[cut + 1:])


def get_tail(container: Any, key: Any) -> str:
    """The raw text (blank lines, comment lines) written after the entry's last line."""
    leaf, leaf_key = _leaf(container, key)
    token = _slot(leaf, leaf_key)
    return _split_token(token.value)[1] if token else ""


def set_tail(container: Any, key: Any, text: str) -> None:
    """Make `text` the raw text written after the entry's last line (keeping its EOL comment)."""
    _ruamel()
    leaf, leaf_key = _leaf(container, key)
    token = _slot(leaf, leaf_key)
    head = _split_token(token.value)[0] if token else "\n"
    if not head.endswith("\n"):
        head += "\n"
    if token is not None:
        token.value = head + text
        return
    if not text:
        return
    entry = leaf.ca.items.setdefault(leaf_key, [None, None, None, None]
                                     if isinstance(leaf, CommentedMap) else [None, None])
    entry[_slot_index(leaf)] = CommentToken(head + text, CommentMark(0), None)


def _tokens_text(tokens: Iterable[Any] | None) -> str:
    _ruamel()
    text = ""
    for token in tokens or ():
        if isinstance(token, CommentToken):
            value = token.value
            text += (" " * (token.column or 0) + value) if value.lstrip().startswith("#") else value
    return text


def _text_tokens(text: str) -> list[CommentToken]:
    """Raw comment text -> one token per comment line, blank lines folded into the previous."""
    _ruamel()
    tokens: list[CommentToken] = []
    for line in text.splitlines():
        if not line.strip():
            if tokens:
                tokens[-1].value += "\n"
            else:
                tokens.append(CommentToken("\n", CommentMark(0), None))
            continue
        column = len(line) - len(line.lstrip())
        tokens.append(CommentToken(line.lstrip() + "\n", CommentMark(column), None))
    return tokens


def get_pre_comment(mapping: CommentedMap) -> str:
    """The raw text between a mapping's parent key and its first entry."""
    comment = mapping.ca.comment
    return _tokens_text(comment[1]) if comment and len(comment) > 1 else ""


def set_pre_comment(mapping: CommentedMap, text: str, *, parent: CommentedMap | None = None,
                    key: Any = None) -> None:
    """Replace the text before a mapping's first entry.

    A loaded mapping shares that token list with its parent's entry, which is what the
    emitter reads, so it is changed in place; a new mapping needs `parent` and `key`.
    """
    tokens = _text_tokens(text)
    comment = mapping.ca.comment
    if comment and len(comment) > 1 and isinstance(comment[1], list):
        comment[1][:] = tokens
        tokens = comment[1]
    elif tokens:
        mapping.ca.comment = [comment[0] if comment else None, tokens]
    if parent is not None:
        entry = parent.ca.items.setdefault(key, [None, None, None, None])
        entry[3] = tokens or None


def _key_pre_text(mapping: CommentedMap, key: Any) -> str:
    entry = mapping.ca.items.get(key)
    return _tokens_text(entry[1]) if entry and len(entry) > 1 and entry[1] else ""


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _drop_attached(text: str) -> str:
    """Drop the comment block directly above a removed entry, and blank lines before it.

    A comment with no blank line between it and an entry describes that entry and goes
    with it; a comment separated by a blank line (a section header) stays.
    """
    lines = _lines(text)
    while lines and lines[-1].strip().startswith("#"):
        lines.pop()
    while lines and not lines[-1].strip():
        lines.pop()
    return _text(lines)


def _strip_leading_blank(text: str) -> str:
    lines = _lines(text)
    while lines and not lines[0].strip():
        lines.pop(0)
    return _text(lines)


def _separated_by_blank_lines(mapping: CommentedMap) -> bool:
    """Whether the mapping's entries are written with blank lines between them."""
    keys = list(mapping.keys())
    if len(keys) < 2:
        return False
    before_last = get_tail(mapping, keys[-2]) + _key_pre_text(mapping, keys[-1])
    return any(not line.strip() for line in _lines(before_last))


def append_entry(mapping: CommentedMap, key: str, value: Any) -> None:
    """Add `key: value` at the end of `mapping`, after its last entry but before the text
    that followed it (a closing comment stays last), in the mapping's spacing style."""
    keys = list(mapping.keys())
    if not keys:
        mapping[key] = value
        return
    tail = get_tail(mapping, keys[-1])
    spaced = _separated_by_blank_lines(mapping)
    set_tail(mapping, keys[-1], "\n" if spaced else "")
    mapping[key] = value
    set_tail(mapping, key, _strip_leading_blank(tail) if spaced else tail)


def replace_value(mapping: CommentedMap, key: str, value: Any) -> None:
    """Set an existing key's value, keeping the key's place and the text after the entry."""
    tail = get_tail(mapping, key)
    mapping[key] = value
    set_tail(mapping, key, tail)


def remove_entry(mapping: CommentedMap, key: str) -> None:
    """Delete `key` with the comment lines directly above it; keep everything else."""
    keys = list(mapping.keys())
    index = keys.index(key)
    after = get_tail(mapping, key)
    if index > 0:
        previous = keys[index - 1]
        before = get_tail(mapping, previous) + _key_pre_text(mapping, key)
        del mapping[key]
        set_tail(mapping, previous, _drop_attached(before) + after)
        return
    before = _drop_attached(get_pre_comment(mapping) + _key_pre_text(mapping, key))
    if index + 1 < len(keys):            # the new first entry's own leading text moves up too
        after += _key_pre_text(mapping, keys[index + 1])
        _clear_key_pre(mapping, keys[index + 1])
    del mapping[key]
    if not mapping:
        set_pre_comment(mapping, "")
        return
    set_pre_comment(mapping, before + (after if before else _strip_leading_blank(after)))


def _clear_key_pre(mapping: CommentedMap, key: Any) -> None:
    entry = mapping.ca.items.get(key)
    if entry and len(entry) > 1:
        entry[1] = None


def pop_leading_comments(mapping: CommentedMap, key: str) -> str:
    """Take the comment lines written right after `key:` (whose value is empty) and before
    any blank line; the rest of the text after it stays where it was.

    ruamel files such comments under the next key, or at the document's end when `key` is
    last; `orch inventory add` re-homes them above the first entry of the new mapping.
    """
    keys = list(mapping.keys())
    following = keys[keys.index(key) + 1] if keys.index(key) + 1 < len(keys) else None
    if following is not None:
        text = get_tail(mapping, key) + _key_pre_text(mapping, following)
    else:
        text = get_tail(mapping, key) + _tokens_text(mapping.ca.end)
    lines = text.splitlines(keepends=True)
    lead = 0
    while lead < len(lines) and lines[lead].strip().startswith("#"):
        lead += 1
    rest = "".join(lines[lead:])
    set_tail(mapping, key, "")
    if following is not None:
        entry = mapping.ca.items.setdefault(following, [None, None, None, None])
        entry[1] = _text_tokens(rest) or None
    else:
        mapping.ca.end = _text_tokens(rest)
    return "".join(lines[:lead])


def flow_list(items: Iterable[Any]) -> CommentedSeq:
    """A list written inline, `[a, b]`, as docs/SPEC.md's examples write specialties."""
    _ruamel()
    seq = CommentedSeq(list(items))
    seq.fa.set_flow_style()
    return seq


def atomic_write(path: Path, text: str, *, expected: str | None = None) -> None:
    """Replace `path` with `text` all at once: a reader sees the old file or the new one.

    The temporary file lives in the same directory (os.replace is atomic only within a
    file system), keeps the old file's permissions, and a symlinked file is replaced at
    its target. `expected` is the text the edit started from: if the file changed
    meanwhile (another edit), nothing is written.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    if expected is not None:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != expected:
            raise ConfigError(str(path), "changed by someone else during this edit; nothing written",
                              hint="run the command again")
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    replace_file(target, text, mode=mode)
