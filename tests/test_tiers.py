"""The split of the suite into a fast tier and an integration tier (tests/tiers.py, applied
by the root conftest.py): the rule on sources, and the rule as pytest applies it to this
very suite. (`-m integration` and `-m "not integration"` split the suite in two by
construction: every test runs in exactly one tier.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import INTEGRATION_FIXTURES, ModuleScan

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''
import asyncio, subprocess, sys

def orch(tmp, *args):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp)

def indirect(tmp):
    return orch(tmp, "hosts")

def loop_a():
    return loop_b()

def loop_b():
    return loop_a()

async def exec_form():
    await asyncio.create_subprocess_exec("orch", "poll")

def labels_only():
    return dict(labels=("orch", "backend")), ["orch", "x"]

def runs_git():
    subprocess.run(["git", "init"])
    subprocess.check_output(["sh", "-c", "orch hosts"])

def runs_python():
    subprocess.Popen([sys.executable, "-c", "print(1)"])

def runs_the_standin():
    subprocess.run(["/usr/bin/env", "x"]) or subprocess.run(["python3", "-m", "orchestrator.demo.standin_agent"])

def test_direct(tmp_path):
    orch(tmp_path, "tasks")

def test_through_a_helper(tmp_path):
    indirect(tmp_path)

def test_pure():
    assert loop_a is not None and labels_only()

def test_cycle_of_helpers():
    loop_a()

class TestGroup:
    def test_method(self):
        subprocess.Popen(["orch", "hosts"])
'''


@pytest.fixture(scope="module")
def scan() -> ModuleScan:
    return ModuleScan(SOURCE)


@pytest.mark.parametrize(("names", "expected"), [
    ({"test_direct"}, True),
    ({"test_through_a_helper"}, True),               # a module helper that calls a helper
    ({"exec_form"}, True),                           # create_subprocess_exec(*argv)
    ({"test_method"}, True),                         # a test class's method
    ({"test_pure"}, False),                          # "orch" as a label is not a process
    ({"test_cycle_of_helpers"}, False),              # helpers calling each other end
    ({"runs_git"}, False),                           # git, and sh (whatever its text says)
    ({"runs_python"}, True),                         # another interpreter: not in-process
    ({"runs_the_standin"}, True),
    ({"test_pure", "indirect"}, True),               # a fixture of the module that runs orch
    ({"tmp_path", "not_in_module"}, False),
])
def test_the_rule_sees_orch_run_as_a_process(scan: ModuleScan, names: set[str], expected: bool) -> None:
    assert scan.runs_orch(names) is expected


def test_the_conftest_marks_the_suite() -> None:
    """The rule as pytest applies it, on a few files of the real suite (one collection, in
    a child pytest: the markers are set at collection)."""
    files = ["tests/test_ssh.py", "tests/test_forge_github.py", "tests/test_poll_crash.py",
             "tests/test_inventory.py", "tests/test_classify.py", "tests/test_standin.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "integration", *files], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    integration = {line for line in proc.stdout.splitlines() if "::" in line}
    # each way into the integration tier, on a test of the real suite
    assert "tests/test_ssh.py::test_probe_five_hosts_at_once" in integration         # ssh_fleet
    assert any(t.startswith("tests/test_forge_github.py::") for t in integration)   # github_server
    assert any(t.startswith("tests/test_poll_crash.py::") for t in integration)     # make_world
    assert "tests/test_inventory.py::test_orch_console_script_reports_bad_inventory" in integration
    assert "tests/test_standin.py::test_version_and_flags" in integration           # a child Python
    # test by test, not file by file: the rest of those files, and the pure tests, stay fast
    assert "tests/test_inventory.py::test_example_inventory_is_valid_and_applies_defaults" not in integration
    assert "tests/test_ssh.py::test_silent_port_times_out_within_connect_timeout" not in integration
    assert not any(t.startswith("tests/test_classify.py::") for t in integration)


def test_the_fixtures_that_start_real_parts_exist() -> None:
    """A renamed fixture would silently drop its tests into the fast tier."""
    defined = "\n".join(p.read_text() for p in (ROOT / "tests").glob("fixtures_*.py"))
    for name in INTEGRATION_FIXTURES:
        assert f"def {name}(" in defined, name
