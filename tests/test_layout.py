"""The rules that keep the package's layout readable (docs/ARCHITECTURE.md), checked on the
source itself: no import cycles, typed seams."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestrator"

# The parameters that cross a seam: each must say what it is (mypy's disallow_untyped_defs
# makes them annotated; this makes sure the annotation is not a shrug).
SEAM_PARAMETERS = frozenset({"forge", "conn", "connection"})
SHRUGS = frozenset({"Any", "typing.Any", "object"})


def _import_cycles() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_cycles", module)
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_import_cycles() -> None:
    ic = _import_cycles()
    assert ic.cycles(ic.import_graph(PACKAGE)) == []


def test_the_cycle_check_sees_cycles_through_relative_and_deferred_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from . import a\nfrom .sub import d\n",     # a package and its children: fine
        "a.py": "from .b import x\n",
        "b.py": "def late():\n    from pkg import a\nx = 1\n",    # deferred into a function
        "c.py": "import pkg.sub.e\nz = 1\n",
        "sub/__init__.py": "",
        "sub/d.py": "from ..c import z\n",
        "sub/e.py": "from pkg.sub.d import q\n",
        "lone.py": "import os\nfrom . import a\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    ic = _import_cycles()
    assert ic.cycles(ic.import_graph(pkg)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d", "pkg.sub.e"]]
    assert ic.main(["import_cycles.py", str(pkg)]) == 1
    assert ic.main(["import_cycles.py", str(PACKAGE)]) == 0


def _seam_parameters(source: str, filename: str) -> list[tuple[int, str, str | None]]:
    """(line, parameter, its annotation or None) of every seam parameter of every def."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if arg.arg in SEAM_PARAMETERS:
                    note = ast.unparse(arg.annotation) if arg.annotation is not None else None
                    out.append((node.lineno, arg.arg, note))
    return out


def _shrugged(note: str | None) -> bool:
    return note is None or note.strip("'\"") in SHRUGS


def test_forge_and_connection_parameters_are_typed() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        for line, name, note in _seam_parameters(path.read_text(encoding="utf-8"), str(rel)):
            if _shrugged(note):
                bad.append(f"{rel}:{line}: parameter {name!r} is {'untyped' if note is None else note}")
    assert not bad, "give these their protocol (Forge, Connection):\n" + "\n".join(bad)


def test_the_seam_check_sees_untyped_and_any() -> None:
    found = _seam_parameters(
        "def a(forge, conn: Any, connection: 'object'): ...\n"
        "async def b(forge: Forge, *, conn: Connection | None = None): ...\n", "<t>")
    assert [(n, _shrugged(note)) for _, n, note in found] == [
        ("forge", True), ("conn", True), ("connection", True), ("forge", False), ("conn", False)]


# --------------------------------------------------------------------------- citations

# What a citation looks like: a path from the repository's root into one of these folders
# (with the file kinds that live there), or a document named by itself (an upper-case name
# like README.md, or a docs page beside the citing one). Each must name a file of this
# repository.
CITED_PATH = re.compile(
    r"(?<![\w./~$-])("
    r"docs/[\w./-]*\.md"
    r"|(?:orchestrator|tests|bench|scripts)/[\w./*-]*\.(?:py|sh|md)"
    r"|(?:playbooks|prompts|inventory)/[\w./*-]*\.(?:yml|yaml|j2)"
    r"|[A-Z][A-Z0-9_-]*\.md"
    r")(?![\w/-])")
# One of the project's documents named in prose without its file ("see FIELD-NOTES", "the
# SPEC's fields"): say which file. (A constant named SPEC in a test is not a citation.)
BARE_DOC = re.compile(r"(?<![\w./-])((?:docs/)?(?:FIELD-NOTES|CONTRACTS|ARCHITECTURE)(?![\w.-])"
                      r"|(?:(?<=[Tt]he )|(?<=[Ss]ee ))SPEC(?![\w.-])|SPEC(?=['’]s\b))")
# Paths in the docs that are a user's own files, not the repository's.
USER_FILES = frozenset({"inventory/hosts.yml"})
SCANNED = ("orchestrator/**/*.py", "tests/**/*.py", "scripts/*", "bench/*.py", "bench/*.md",
           "playbooks/*", "prompts/*", "inventory/*", "docs/*.md", "README.md", "conftest.py",
           "Makefile", "setup.cfg", "pyproject.toml", ".ci/run")
MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def _scanned_files() -> list[Path]:
    files: set[Path] = set()
    for pattern in SCANNED:
        files.update(p for p in ROOT.glob(pattern) if p.is_file() and ".venv" not in p.parts)
    return sorted(files)


def _exists(citing: Path, cited: str) -> bool:
    """A cited path names a file: from the repository's root, or beside the citing file
    (a docs page naming its neighbour); a glob must match at least one."""
    for base in (ROOT, citing.parent):
        if any(c in cited for c in "*?["):
            if any(base.glob(cited)):
                return True
        elif (base / cited).is_file():
            return True
    return False


def bad_citations(citing: Path, text: str) -> list[str]:
    def at(m: re.Match[str]) -> str:
        return f"{citing.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(1)}"
    missing = [m for m in CITED_PATH.finditer(text)
               if m.group(1) not in USER_FILES and not _exists(citing, m.group(1))]
    bare = [] if citing == Path(__file__).resolve() else BARE_DOC.finditer(text)   # the rule's own text
    return sorted([at(m) for m in missing] + [at(m) + " (which file?)" for m in bare],
                  key=lambda line: int(line.split(":")[1]))


def test_code_and_docs_cite_files_that_exist() -> None:
    bad = [b for path in _scanned_files() for b in bad_citations(path, path.read_text(encoding="utf-8"))]
    assert not bad, "these cite a file the repository does not have:\n" + "\n".join(bad)


def test_the_citation_check_sees_a_missing_file() -> None:
    here = ROOT / "orchestrator" / "app.py"
    # written in pieces, so that this file itself cites nothing that is missing
    spec, nope, gone, missing = "SPEC" + ".md", "docs/NOPE" + ".md", "orchestrator/gone" + ".py", \
        "playbooks/missing" + ".yml"
    text = (f"# see {spec} and docs/{spec}, orchestrator/app.py, tests/test_layout.py,\n"
            f"# {nope}, {gone}, playbooks/dispatch.yml, prompts/*.md.j2,\n"
            f"# {missing}, ../shared/{spec}, prompt.md, inventory/hosts.yml, docs/{'FIELD' + '-NOTES'}\n"
            "# the SPEC's shape, see SPEC; SPEC = {...}; classify(i, SPEC)\n")
    assert [b.split(": ", 1)[1] for b in bad_citations(here, text)] == [
        spec, nope, gone, missing, "docs/FIELD-NOTES (which file?)", "SPEC (which file?)",
        "SPEC (which file?)"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


def test_links_in_the_readme_and_docs_lead_somewhere() -> None:
    bad = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for m in MD_LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue                                   # https:, mailto:
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.is_file():
                bad.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{where}: no heading #{anchor}")
    assert not bad, "\n".join(bad)


def test_the_slug_is_githubs() -> None:
    assert _slug(" orch.yml: every key") == "orchyml-every-key"
    assert _slug(" `orch demo` options") == "orch-demo-options"
    assert _slug(" 6. Prepare each host: git, Claude Code, its login, repository access") == \
        "6-prepare-each-host-git-claude-code-its-login-repository-access"
