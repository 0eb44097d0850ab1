"""Which tier a test belongs to: fast (pure and in-process) or integration (real sshd, git
remotes, the GitHub-style server, or orch or another Python run as a process).

The root conftest.py calls `is_integration` for every collected test and marks it
`integration`, so a new test lands in the right tier without anyone remembering a marker:

- it uses (directly or through other fixtures) a fixture that starts a real part:
  INTEGRATION_FIXTURES below;
- or its body, a helper of its own module it calls, or a fixture of its module it uses,
  starts orch or another Python as a process (`[sys.executable, "-m", "orchestrator", ...]`,
  `[sys.executable, "-c", code]`, `["orch", ...]`): a child interpreter costs a start-up
  and a scheduler slot, which is what makes a suite slow and load-sensitive;
- or it carries `@pytest.mark.integration` by hand (for anything slow the two rules above
  cannot see).

Everything else is the fast tier (`make test-fast`). Not a test module: pytest does not
collect it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

# The fixtures that start a real part (each test module's fixtures build on these, and
# pytest's fixture closure is transitive, so the roots are enough).
INTEGRATION_FIXTURES = frozenset({
    "ssh_fleet_factory",      # tests/fixtures_ssh.py: OpenSSH sshd servers on loopback
    "github_server",          # tests/fixtures_github.py: the GitHub-style REST server
    "git_remote_factory",     # tests/fixtures_git.py: bare git remotes
    "make_world",             # tests/fixtures_world.py: all of the above
    "pg_server",              # tests/fixtures_pg.py: a PostgreSQL server on loopback
})


# The calls that start a process, by the name they are called with (subprocess.run,
# Popen, asyncio.create_subprocess_exec, ...).
SPAWNS = frozenset({"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec",
                    "execv", "execvp"})


def _argv(call: ast.Call) -> list[ast.expr]:
    """The argv of a process-starting call: `run([a, b])` or `create_subprocess_exec(a, b)`."""
    args: list[ast.expr] = call.args
    if args and isinstance(args[0], ast.List | ast.Tuple):
        return list(args[0].elts)
    return list(args)


def _word(node: ast.expr) -> str | None:
    """An argv word as far as it is literal: a string constant, or `sys.executable`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and node.attr == "executable" and \
            isinstance(node.value, ast.Name) and node.value.id == "sys":
        return "sys.executable"
    return None


# argv[0] of a process that is orch or another Python: not an in-process test.
PROGRAMS = frozenset({"sys.executable", "orch", "orch-standin-agent", "python", "python3"})


def _runs_orch(node: ast.AST) -> bool:
    """Whether `node` starts orch or a Python interpreter as a process: a spawning call
    whose argv starts with one of PROGRAMS, or holds `-m orchestrator...`."""
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        func = sub.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in SPAWNS:
            continue
        words = [_word(a) for a in _argv(sub)]
        if words and words[0] in PROGRAMS:
            return True
        if any(a == "-m" and (b or "").startswith("orchestrator") for a, b in zip(words, words[1:], strict=False)):
            return True
    return False


class ModuleScan:
    """The functions of one test module: which run orch themselves, and which module-level
    names each one calls (so a test that calls a helper that runs orch is seen)."""

    def __init__(self, source: str, filename: str = "<test>") -> None:
        tree = ast.parse(source, filename)
        self.direct: dict[str, bool] = {}
        self.calls: dict[str, set[str]] = {}
        for node in tree.body:
            for fn in _functions(node):
                self.direct[fn.name] = _runs_orch(fn)
                self.calls[fn.name] = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}

    def runs_orch(self, names: Iterable[str]) -> bool:
        """Whether any of `names` (test functions, fixtures) runs orch, itself or through
        the module's own functions it refers to."""
        seen: set[str] = set()
        todo = [n for n in names if n in self.direct]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if self.direct[name]:
                return True
            todo.extend(n for n in self.calls[name] if n in self.direct and n not in seen)
        return False


def _functions(node: ast.stmt) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return [node]
    if isinstance(node, ast.ClassDef):     # test classes: their methods by name
        return [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return []


@functools.cache
def scan(path: Path) -> ModuleScan:
    return ModuleScan(path.read_text(encoding="utf-8"), str(path))


def is_integration(path: Path, function: str, fixturenames: Iterable[str]) -> bool:
    """The tier rule for one collected test (see the module docstring)."""
    names = set(fixturenames)
    if names & INTEGRATION_FIXTURES:
        return True
    return path.suffix == ".py" and scan(path).runs_orch({function, *names})
