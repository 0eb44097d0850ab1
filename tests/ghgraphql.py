"""The part of GitHub's GraphQL API that orch asks (tests/ghserver.py serves it).

Why a real (small) GraphQL engine and not a canned answer: the query orch sends is parsed
and answered field by field, as GitHub would: only the fields asked are returned, an
unknown field is a validation error ("Field 'x' doesn't exist on type 'Issue'"), a
connection needs `first` or `last` (at most 100), a missing repository or issue is a
NOT_FOUND error with a null in `data`, inline fragments (`... on LabeledEvent`) select
by `__typename`. So a typo in orch's query fails here as it would on github.com.

Types served: Query.repository(owner, name) -> Repository.issue(number) -> Issue with
number, title, body, createdAt, lastEditedAt, author, editor, comments, userContentEdits,
timelineItems(itemTypes: [LABELED_EVENT, UNLABELED_EVENT, RENAMED_TITLE_EVENT]).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r'\s+|,|#[^\n]*|(\.\.\.|[{}()\[\]:!$=]|"(?:[^"\\]|\\.)*"|-?\d+|[_A-Za-z]\w*)')
MAX_PAGE = 100


class GraphQLError(Exception):
    def __init__(self, message: str, path: list[Any] | None = None, kind: str | None = None,
                 extensions: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.payload: dict[str, Any] = {"message": message}
        if kind:
            self.payload["type"] = kind
        if path is not None:
            self.payload["path"] = path
        if extensions:
            self.payload["extensions"] = extensions


# --------------------------------------------------------------------------- parsing

def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise GraphQLError(f"Parse error on {text[pos:pos + 10]!r}")
        if m.group(1):
            out.append(m.group(1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise GraphQLError(f"Parse error: expected {want or 'a token'}, got {tok!r}")
        self.i += 1
        return tok

    def document(self) -> list[tuple]:
        if self.peek() == "query":
            self.take()
            if self.peek() not in ("(", "{"):
                self.take()                       # the operation's name
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    self.take("$"), self.take(), self.take(":"), self.type_()
                    if self.peek() == "=":
                        self.take(), self.value()
                self.take(")")
        sel = self.selections()
        if self.peek() is not None:
            raise GraphQLError(f"Parse error on {self.peek()!r}")
        return sel

    def type_(self) -> None:
        if self.peek() == "[":
            self.take("["), self.type_(), self.take("]")
        else:
            self.take()
        if self.peek() == "!":
            self.take()

    def value(self) -> Any:
        tok = self.take()
        if tok == "$":
            return ("$", self.take())
        if tok == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if tok.startswith('"'):
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        return {"true": True, "false": False, "null": None}.get(tok, ("enum", tok))

    def selections(self) -> list[tuple]:
        """[("field", alias, name, args, sub) | ("on", type, sub)]"""
        self.take("{")
        out: list[tuple] = []
        while self.peek() != "}":
            if self.peek() == "...":
                self.take(), self.take("on")
                out.append(("on", self.take(), self.selections()))
                continue
            name = self.take()
            alias = name
            if self.peek() == ":":
                self.take()
                name = self.take()
            args: dict[str, Any] = {}
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    key = self.take()
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            sub = self.selections() if self.peek() == "{" else None
            out.append(("field", alias, name, args, sub))
        self.take("}")
        return out


# --------------------------------------------------------------------------- the schema

Resolver = Callable[[Any, dict[str, Any], list[Any]], Any]

# type -> field -> (return type, resolver(parent, args, path)); "[T]" is a list of T; a
# union (UNIONS) is told apart by each value's "__typename". Query comes from the server.
SCHEMA: dict[str, dict[str, tuple[str, Resolver]]] = {}
UNIONS = {"IssueTimelineItems": ("LabeledEvent", "UnlabeledEvent", "RenamedTitleEvent")}
TIMELINE_KINDS = {"LABELED_EVENT": "LabeledEvent", "UNLABELED_EVENT": "UnlabeledEvent",
                  "RENAMED_TITLE_EVENT": "RenamedTitleEvent"}


def _scalar(key: str) -> tuple[str, Resolver]:
    return "String", lambda obj, args, path: obj.get(key)


def _actor(key: str) -> tuple[str, Resolver]:
    return "Actor", lambda obj, args, path: {"login": obj[key]} if obj.get(key) else None


def _page(items: list[Any], args: dict[str, Any], path: list[Any]) -> list[Any]:
    name = path[-1]
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError(f"You must provide a `first` or `last` value to properly paginate "
                           f"the `{name}` connection.", path, "MISSING_PAGINATION_BOUNDARIES")
    for key, n in (("first", first), ("last", last)):
        if n is not None and n > MAX_PAGE:
            raise GraphQLError(f"Requesting {n} records on the `{name}` connection exceeds the "
                               f"`{key}` limit of {MAX_PAGE} records.", path, "EXCESSIVE_PAGINATION")
    if first is not None:
        items = items[:first]
    if last is not None:
        items = items[-last:] if last else []
    return items


def _connection(node_type: str, items: Callable[[Any, dict[str, Any]], list[Any]]
                ) -> tuple[str, Resolver]:
    def resolve(obj: Any, args: dict[str, Any], path: list[Any]) -> Any:
        every = items(obj, args)
        return {"__nodes": _page(every, args, path), "__total": len(every)}
    return f"{node_type}Connection", resolve


SCHEMA["Actor"] = {"login": _scalar("login")}
SCHEMA["Label"] = {"name": _scalar("name")}
SCHEMA["IssueComment"] = {
    "databaseId": ("Int", lambda c, a, p: c["id"]), "body": _scalar("body"),
    "createdAt": _scalar("created_at"), "lastEditedAt": _scalar("edited_at"),
    "author": _actor("user"), "editor": _actor("editor"),
    "authorAssociation": _scalar("association")}
SCHEMA["UserContentEdit"] = {"editedAt": _scalar("at"), "createdAt": _scalar("at"),
                             "editor": _actor("editor")}
for _event in ("LabeledEvent", "UnlabeledEvent"):
    SCHEMA[_event] = {"createdAt": _scalar("at"), "actor": _actor("actor"),
                      "label": ("Label", lambda e, a, p: {"name": e["label"]})}
SCHEMA["RenamedTitleEvent"] = {"createdAt": _scalar("at"), "actor": _actor("actor"),
                               "previousTitle": _scalar("from"), "currentTitle": _scalar("to")}
for _node in ("IssueComment", "UserContentEdit", "IssueTimelineItems"):
    SCHEMA[f"{_node}Connection"] = {
        "nodes": (f"[{_node}]", lambda c, a, p: c["__nodes"]),
        "totalCount": ("Int", lambda c, a, p: c["__total"])}


def _timeline(issue: dict[str, Any], args: dict[str, Any]) -> list[Any]:
    wanted = {TIMELINE_KINDS[k] for k in args.get("itemTypes") or TIMELINE_KINDS}
    return [e for e in issue["__events"] if e["__typename"] in wanted]


SCHEMA["Issue"] = {
    "number": ("Int", lambda i, a, p: i["number"]), "title": _scalar("title"),
    "body": _scalar("body"), "createdAt": _scalar("created_at"),
    "lastEditedAt": ("String", lambda i, a, p: i["edits"][-1]["at"] if i["edits"] else None),
    "author": _actor("user"),
    "editor": ("Actor", lambda i, a, p: {"login": i["edits"][-1]["editor"]} if i["edits"] else None),
    "comments": _connection("IssueComment", lambda i, a: i["__comments"]),
    "userContentEdits": _connection("UserContentEdit", lambda i, a: i["edits"]),
    "timelineItems": _connection("IssueTimelineItems", _timeline),
}


def _issue(repo: dict[str, Any], args: dict[str, Any], path: list[Any]) -> Any:
    view = repo["__issue"](args.get("number"))
    if view is None:
        raise GraphQLError(f"Could not resolve to an Issue with the number of "
                           f"{args.get('number')}.", path, "NOT_FOUND")
    return view


SCHEMA["Repository"] = {"nameWithOwner": _scalar("full_name"), "issue": ("Issue", _issue)}


def _typename(value: Any, declared: str) -> str:
    return value.get("__typename", declared) if isinstance(value, dict) else declared


# --------------------------------------------------------------------------- executing

Schema = dict[str, dict[str, tuple[str, Resolver]]]


def _validate(schema: Schema, type_name: str, selections: list[tuple],
              path: list[str]) -> list[dict[str, Any]]:
    """Static checks GitHub makes before running anything (unknown fields)."""
    errors: list[dict[str, Any]] = []
    types = UNIONS.get(type_name, (type_name,))
    for sel in selections:
        if sel[0] == "on":
            if sel[1] not in types and sel[1] != type_name:
                errors.append(GraphQLError(f"Fragment on {sel[1]} can't be spread inside "
                                           f"{type_name}", path).payload)
                continue
            errors += _validate(schema, sel[1], sel[2], path)
            continue
        _, _, name, _, sub = sel
        if name == "__typename":
            continue
        fields = schema.get(type_name, {}) if type_name not in UNIONS else {}
        if name not in fields:
            errors.append(GraphQLError(
                f"Field '{name}' doesn't exist on type '{type_name}'", [*path, name],
                extensions={"code": "undefinedField", "typeName": type_name,
                            "fieldName": name}).payload)
            continue
        ret = fields[name][0].strip("[]")
        if sub is not None:
            errors += _validate(schema, ret, sub, [*path, name])
        elif ret in schema or ret in UNIONS:
            errors.append(GraphQLError(f"Field must have selections (field '{name}' returns "
                                       f"{ret} but has no selections.)", [*path, name]).payload)
    return errors


def _resolve(schema: Schema, type_name: str, obj: Any, selections: list[tuple],
             variables: dict[str, Any], path: list[Any], errors: list[dict[str, Any]]
             ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    actual = _typename(obj, type_name)
    for sel in selections:
        if sel[0] == "on":
            if sel[1] == actual:
                out.update(_resolve(schema, actual, obj, sel[2], variables, path, errors))
            continue
        _, alias, name, raw_args, sub = sel
        if name == "__typename":
            out[alias] = actual
            continue
        ret, resolver = schema[actual][name]
        args = {k: _arg(v, variables) for k, v in raw_args.items()}
        try:
            value = resolver(obj, args, [*path, alias])
        except GraphQLError as exc:
            errors.append(exc.payload)
            out[alias] = None
            continue
        out[alias] = _shape(schema, ret.strip("[]"), value, sub, variables, [*path, alias],
                            errors)
    return out


def _shape(schema: Schema, type_name: str, value: Any, sub: list[tuple] | None,
           variables: dict[str, Any], path: list[Any], errors: list[dict[str, Any]]) -> Any:
    if value is None or sub is None:
        return value
    if isinstance(value, list):
        return [_shape(schema, type_name, v, sub, variables, [*path, i], errors)
                for i, v in enumerate(value)]
    return _resolve(schema, type_name, value, sub, variables, path, errors)


def _arg(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, tuple) and value[0] == "$":
        return variables.get(value[1])
    if isinstance(value, tuple) and value[0] == "enum":
        return value[1]
    if isinstance(value, list):
        return [_arg(v, variables) for v in value]
    return value


def execute(query: str, variables: dict[str, Any] | None,
            root_fields: dict[str, tuple[str, Resolver]]) -> dict[str, Any]:
    """Run `query`; `root_fields` are Query's fields (they see the server's state)."""
    schema: Schema = {**SCHEMA, "Query": root_fields}
    try:
        selections = _Parser(query).document()
    except GraphQLError as exc:
        return {"errors": [exc.payload]}
    errors = _validate(schema, "Query", selections, ["query"])
    if errors:
        return {"errors": errors}
    errors = []
    data = _resolve(schema, "Query", {}, selections, variables or {}, [], errors)
    return {"data": data, **({"errors": errors} if errors else {})}
