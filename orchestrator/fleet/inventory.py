"""hosts.yml -> Host records, and the in-place edits behind `orch inventory add/set/rm`.

One validator serves both reading and editing: an edit changes the parsed round-trip
document, the document is validated exactly as `load_inventory` would validate the
file, and only a valid result is written (atomically). So `orch inventory` can never
leave a hosts.yml that the next `orch` command refuses, and a refused edit leaves the
file byte-for-byte as it was. Comments, blank lines and key order survive because the
document is ruamel's round-trip tree, not plain dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.yamlfile import (
    Loc,
    Validator,
    append_entry,
    atomic_write,
    boolean,
    choice,
    dump_document,
    expect_mapping,
    flow_list,
    integer,
    key_line,
    list_of,
    load_validated,
    optional,
    parse_document,
    pop_leading_comments,
    read_text,
    remove_entry,
    replace_value,
    set_pre_comment,
    string,
    string_key,
    unknown_key,
)
from ..core.models import Host
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - ruamel is imported by the edits that need it
    from ruamel.yaml.comments import CommentedMap

TOP_KEYS = ("defaults", "hosts")
CONNECTIONS = ("ssh", "local")
ALIAS_HINT = ("add `address:` with an IP, a DNS name or an ~/.ssh/config alias; a host whose "
              "name is an ssh alias still needs `address: <the alias>`")
DUPLICATE_HINTS = {"hosts": "host names must be unique: rename or remove one of them",
                   "": "a top-level section appears twice: merge them"}
NEW_FILE_TEXT = "# orch inventory: see `orch inventory --help` and orch's docs/configuration.md\nhosts:\n"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NO_SPACE = re.compile(r"^\S+$")


# --------------------------------------------------------------------------- field validators


def _word(what: str) -> Validator:
    """A single word that reaches ssh as an argument: no spaces, no leading dash.

    A leading dash would let an inventory entry smuggle an ssh option (-oProxyCommand=...).
    """
    def check(value: Any, loc: Loc) -> str:
        text = string(value, loc)
        if not _NO_SPACE.match(text) or text.startswith("-"):
            loc.error(f"not a valid {what}: {text!r}",
                      hint=f"a {what} has no spaces and does not start with '-'")
        return text
    return check


def _specialty(value: Any, loc: Loc) -> str:
    if not isinstance(value, str) or not value.strip():
        loc.error(f"a specialty must be a non-empty string, got {value!r}",
                  hint="specialties: [backend, api]")
    return str(value).strip()


_MAX_TASKS_HINT = "a host you do not want used is `enabled: false`"

# Host field -> validator. Optional fields accept null, which means "unset" (e.g. `port:
# null` lets ~/.ssh/config decide even when `defaults:` sets a port).
FIELDS: dict[str, Validator] = {
    "address": _word("host address"),
    "port": optional(integer(1, 65535, hint="the sshd port, 22 unless you changed it")),
    "user": optional(_word("user name")),
    "identity_file": optional(string),
    "specialties": list_of(_specialty, "list of strings"),
    "max_tasks": integer(1, hint=_MAX_TASKS_HINT),
    "workspace_root": string,
    "agent": optional(string),
    "enabled": boolean,
    "connection": choice(*CONNECTIONS),
}
# The order `orch inventory add` writes fields in.
FIELD_ORDER = tuple(FIELDS)
DEFAULTABLE = tuple(k for k in FIELDS if k != "address")
_HOST_DEFAULTS = {f.name: f.default for f in dataclass_fields(Host) if f.default is not MISSING}


# --------------------------------------------------------------------------- validation


def validate_document(doc: Any, path: Path) -> list[Host]:
    """The Hosts a parsed hosts.yml describes, or a ConfigError naming file, line and key."""
    root = Loc(path)
    if doc is None:
        root.error("no `hosts:` mapping (the file is empty)",
                   hint="start with `hosts:` and one entry per host, see inventory/hosts.example.yml")
    top = expect_mapping(doc, Loc(path, line=1), null_ok=False)
    for key in top:
        if key not in TOP_KEYS:
            unknown_key(root.entry(top, key), key, TOP_KEYS,
                        elsewhere={k: f"hosts.<name>.{k}" for k in FIELDS})
    if "hosts" not in top:
        root.error("no `hosts:` mapping", hint="hosts.yml needs a top-level `hosts:` with one entry per host")
    defaults_loc = root.entry(top, "defaults")
    defaults = _validate_fields(expect_mapping(top.get("defaults"), defaults_loc), defaults_loc,
                                is_defaults=True)
    hosts_loc = root.entry(top, "hosts")
    hosts = expect_mapping(top["hosts"], hosts_loc)
    result = []
    for name, spec in hosts.items():
        loc = hosts_loc.entry(hosts, name)
        result.append(_host(string_key(name, loc), spec, loc, defaults))
    return result


def _validate_fields(mapping: Mapping[Any, Any], loc: Loc, *,
                     is_defaults: bool = False) -> dict[str, Any]:
    """Check every key of one host (or of `defaults:`) against FIELDS."""
    allowed = DEFAULTABLE if is_defaults else FIELD_ORDER
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        key_loc = loc.entry(mapping, key)
        if key == "address" and is_defaults:
            key_loc.error("an address belongs to one host, it cannot be a default",
                          hint="move it under the host")
        if key not in allowed:
            unknown_key(key_loc, key, allowed)
        values[key] = FIELDS[key](value, key_loc)
    return values


def _host(name: str, spec: Any, loc: Loc, defaults: Mapping[str, Any]) -> Host:
    """One host: its own fields over `defaults:` over Host's built-in defaults."""
    if not _NAME.match(name):
        loc.error(f"not a valid host name: {name!r}",
                  hint="use letters, digits, '.', '_' and '-', starting with a letter or digit")
    own = _validate_fields(expect_mapping(spec, loc), loc)
    merged = {**_HOST_DEFAULTS, **defaults, **own}
    if merged.get("address") is None:
        if merged["connection"] != "local":
            Loc(loc.path, f"{loc.key}.address", loc.line).error("no address", hint=ALIAS_HINT)
        merged["address"] = "localhost"
    merged["specialties"] = tuple(merged["specialties"])
    return Host(name=name, **merged)


def load_inventory(path: Path) -> list[Host]:
    """Read hosts.yml: every host with `defaults:` applied, in file order.

    Any mistake raises ConfigError with the file, the line and the dotted key
    (e.g. "hosts.backend-1.max_tasks").
    """
    path = Path(path)
    return load_validated(path, lambda doc: validate_document(doc, path),
                          duplicate_hints=DUPLICATE_HINTS)


# --------------------------------------------------------------------------- round-trip edits


def _to_yaml_value(value: Any) -> Any:
    """Lists are written inline like docs/SPEC.md's examples; everything else as is."""
    if isinstance(value, (list, tuple)):
        return flow_list(value)
    return value


def _check_edit_keys(path: Path, name: str, fields: Mapping[str, Any]) -> None:
    for key in fields:
        if key not in FIELDS:
            unknown_key(Loc(path, f"hosts.{name}.{key}"), key, FIELD_ORDER)


def _open_for_edit(path: Path, *, create: bool = False) -> tuple[str, CommentedMap]:
    """The file's text and its round-trip document, validated so that edits start from good.

    With `create` (for `add`), a missing or empty file, or one without `hosts:`, is
    given a `hosts:` mapping first.
    """
    from ruamel.yaml.comments import CommentedMap
    text = read_text(path) if path.exists() or not create else ""
    doc = parse_document(text, path, duplicate_hints=DUPLICATE_HINTS)
    if create and doc is None:
        doc = parse_document(NEW_FILE_TEXT, path)
    if create and isinstance(doc, CommentedMap) and "hosts" not in doc:
        append_entry(doc, "hosts", CommentedMap())
    validate_document(doc, path)
    if not isinstance(doc["hosts"], CommentedMap):
        _fill_empty_hosts(doc)
    return text, doc


def _fill_empty_hosts(doc: CommentedMap) -> None:
    """Turn `hosts:` (null) into a mapping; comment lines right under it stay on top of it."""
    from ruamel.yaml.comments import CommentedMap
    lead = pop_leading_comments(doc, "hosts")
    hosts = CommentedMap()
    doc["hosts"] = hosts
    set_pre_comment(hosts, lead, parent=doc, key="hosts")


def _save(path: Path, doc: CommentedMap, original: str) -> list[Host]:
    """Validate the edited document, then write it; a refused edit writes nothing."""
    hosts = validate_document(doc, path)
    new_text = dump_document(doc, original)
    # What is written must read back the same: parse the exact text once more.
    validate_document(parse_document(new_text, path, duplicate_hints=DUPLICATE_HINTS), path)
    atomic_write(path, new_text, expected=original)
    return hosts


def _find(hosts: list[Host], name: str) -> Host:
    return next(h for h in hosts if h.name == name)


def _unknown_host(path: Path, name: str, doc: CommentedMap) -> ConfigError:
    known = ", ".join(str(k) for k in doc["hosts"]) or "none"
    return ConfigError(str(path), f"no host named {name!r} (known: {known})", key=f"hosts.{name}",
                       hint="`orch inventory list` shows them; `orch inventory add` adds one")


def add_host(path: Path, name: str, fields: Mapping[str, Any]) -> Host:
    """Append a host to hosts.yml (creating the file with `hosts:` if needed).

    Only the given fields are written, so `defaults:` keep applying to the rest.
    Returns the host with its effective values.
    """
    from ruamel.yaml.comments import CommentedMap
    path = Path(path)
    original, doc = _open_for_edit(path, create=True)
    hosts = doc["hosts"]
    if name in hosts:
        raise ConfigError(str(path), "a host with this name already exists", key=f"hosts.{name}",
                          line=key_line(hosts, name),
                          hint=f"change it with `orch inventory set {name} KEY=VALUE`")
    _check_edit_keys(path, name, fields)
    entry = CommentedMap()
    for key in FIELD_ORDER:
        if key in fields:
            entry[key] = _to_yaml_value(fields[key])
    append_entry(hosts, name, entry)
    return _find(_save(path, doc, original), name)


UNSET = object()  # a field value meaning "remove the key; defaults apply again"


def set_host(path: Path, name: str, fields: Mapping[str, Any]) -> Host:
    """Change fields of one host in place; a value of `UNSET` removes the key.

    Existing keys keep their place and comments; new keys go after the host's last key.
    """
    from ruamel.yaml.comments import CommentedMap
    path = Path(path)
    original, doc = _open_for_edit(path)
    hosts = doc["hosts"]
    if name not in hosts:
        raise _unknown_host(path, name, doc)
    _check_edit_keys(path, name, fields)
    entry = hosts[name]
    if not isinstance(entry, CommentedMap):
        entry = CommentedMap()
        replace_value(hosts, name, entry)
    for key, value in fields.items():
        if value is UNSET:
            if key in entry:
                remove_entry(entry, key)
        elif key in entry:
            replace_value(entry, key, _to_yaml_value(value))
        else:
            append_entry(entry, key, _to_yaml_value(value))
    return _find(_save(path, doc, original), name)


def remove_host(path: Path, name: str) -> None:
    """Delete a host and the comment block directly above it; keep all else."""
    path = Path(path)
    original, doc = _open_for_edit(path)
    if name not in doc["hosts"]:
        raise _unknown_host(path, name, doc)
    remove_entry(doc["hosts"], name)
    _save(path, doc, original)


def host_json(host: Host) -> dict[str, Any]:
    """A host's effective values as plain JSON types (for `orch inventory list --json`)."""
    data = {f.name: getattr(host, f.name) for f in dataclass_fields(Host)}
    data["specialties"] = list(host.specialties)
    return data


__all__ = ["FIELDS", "FIELD_ORDER", "UNSET", "add_host", "host_json",
           "load_inventory", "remove_host", "set_host", "validate_document"]
