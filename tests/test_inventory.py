"""hosts.yml: loading with defaults, errors with file/line/key, and in-place edits that keep
the user's comments, blank lines and key order (and write nothing when refused)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config.yamlfile import atomic_write
from orchestrator.core.models import Host
from orchestrator.errors import ConfigError
from orchestrator.fleet.inventory import UNSET, add_host, load_inventory, remove_host, set_host

REPO = Path(__file__).resolve().parent.parent

FLEET = """\
# the fleet (hand-written)
defaults:                  # applied to every host
  user: dev
  port: 22
  max_tasks: 2

hosts:
  # the backend box, under the desk
  backend-1:
    address: 192.168.1.21  # or an ~/.ssh/config alias
    specialties: [backend, api, database]

  # --- frontend ---

  # drained until the GPU is fixed
  frontend-1:
    address: 192.168.1.22
    port: 2222
    specialties: [frontend, ui]
    enabled: false         # drained

  devops-1:
    address: devbox        # ssh alias
    specialties: [devops]
    max_tasks: 1
# end of fleet
"""


def write(tmp_path: Path, text: str, name: str = "hosts.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run_orch(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The real CLI entry point, in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user config, inventory or state leaks in from the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- loading


def test_example_inventory_is_valid_and_applies_defaults() -> None:
    hosts = {h.name: h for h in load_inventory(REPO / "inventory" / "hosts.example.yml")}
    assert set(hosts) == {"backend-1", "frontend-1"}
    backend, frontend = hosts["backend-1"], hosts["frontend-1"]
    assert backend == Host(name="backend-1", address="192.168.1.21",
                           specialties=("backend", "api", "database"), port=22, user="dev",
                           max_tasks=2, workspace_root="~/orch-work")
    assert (frontend.port, frontend.max_tasks, frontend.enabled) == (2222, 1, False)
    assert frontend.user == "dev"                               # from defaults
    assert frontend.identity_file == "~/.ssh/id_ed25519"
    assert frontend.agent == "/opt/claude/bin/claude"


def test_hosts_keep_file_order_and_own_values_win(tmp_path: Path) -> None:
    hosts = load_inventory(write(tmp_path, FLEET))
    assert [h.name for h in hosts] == ["backend-1", "frontend-1", "devops-1"]
    assert [h.max_tasks for h in hosts] == [2, 2, 1]
    assert [h.port for h in hosts] == [22, 2222, 22]
    assert hosts[2].address == "devbox"


def test_null_unsets_a_default(tmp_path: Path) -> None:
    """`port: null` lets ~/.ssh/config decide even though defaults set a port."""
    hosts = load_inventory(write(tmp_path, """\
        defaults: {port: 22, user: dev}
        hosts:
          pc1: {address: alias1, port: null, user: null}
        """))
    assert (hosts[0].port, hosts[0].user) == (None, None)


def test_builtin_defaults_without_a_defaults_section(tmp_path: Path) -> None:
    (host,) = load_inventory(write(tmp_path, "hosts:\n  pc1:\n    address: 10.0.0.1\n"))
    assert host == Host(name="pc1", address="10.0.0.1")


def test_local_host_needs_no_address(tmp_path: Path) -> None:
    (host,) = load_inventory(write(tmp_path, "hosts:\n  here:\n    connection: local\n"))
    assert host.is_local and host.address == "localhost"


@pytest.mark.parametrize("text", ["hosts:\n", "hosts: {}\n", "# none yet\nhosts:\ndefaults: {user: x}\n"])
def test_empty_hosts_mapping_is_valid(tmp_path: Path, text: str) -> None:
    assert load_inventory(write(tmp_path, text)) == []


# --------------------------------------------------------------------------- mistakes

BAD_INVENTORIES = [
    # (text, line, key, words the message must contain)
    ("hosts:\n  pc1:\n    address: x\n    max_tasks: 0\n", 4, "hosts.pc1.max_tasks", "at least 1"),
    ("hosts:\n  pc1:\n    address: x\n    max_tasks: -3\n", 4, "hosts.pc1.max_tasks", "at least 1"),
    ("hosts:\n  pc1:\n    address: x\n    max_tasks: two\n", 4, "hosts.pc1.max_tasks",
     "expected an integer, got 'two'"),
    ("hosts:\n  pc1:\n    address: x\n    port: 70000\n", 4, "hosts.pc1.port", "between 1 and 65535"),
    ("hosts:\n  pc1:\n    address: x\n    port: 0\n", 4, "hosts.pc1.port", "between 1 and 65535"),
    ("hosts:\n  pc1:\n    address: x\n    prot: 22\n", 4, "hosts.pc1.prot", "unknown key"),
    ("hosts:\n  pc1:\n    specialties: [backend]\n", 2, "hosts.pc1.address", "no address"),
    ("hosts:\n  pc1:\n", 2, "hosts.pc1.address", "no address"),
    ("hosts:\n  pc1:\n    address: x\n    specialties: backend\n", 4, "hosts.pc1.specialties",
     "expected a list of strings"),
    ("hosts:\n  pc1:\n    address: x\n    specialties:\n      - backend\n      - [ui]\n", 6,
     "hosts.pc1.specialties[1]", "non-empty string"),
    ("hosts:\n  pc1:\n    address: x\n    specialties: [backend, 3]\n", 4,
     "hosts.pc1.specialties[1]", "non-empty string"),
    ("hosts:\n  pc1:\n    address: x\n    enabled: no\n", 4, "hosts.pc1.enabled", "true or false"),
    ("hosts:\n  pc1:\n    address: x\n    connection: telnet\n", 4, "hosts.pc1.connection", "ssh, local"),
    ("hosts:\n  pc1:\n    address: -oProxyCommand=x\n", 3, "hosts.pc1.address", "not a valid host address"),
    ("hosts:\n  pc1:\n    address: x\n  pc2:\n    address: y\n  pc1:\n    address: z\n", 6, "hosts.pc1",
     "defined twice (first on line 2)"),
    ("hosts:\n  pc1:\n    address: x\n    port: 1\n    port: 2\n", 5, "hosts.pc1.port", "defined twice"),
    ("defaults:\n  max_tasks: 0\nhosts: {}\n", 2, "defaults.max_tasks", "at least 1"),
    ("defaults:\n  address: x\nhosts: {}\n", 2, "defaults.address", "cannot be a default"),
    ("defaults:\n  usr: dev\nhosts: {}\n", 2, "defaults.usr", "unknown key"),
    ("host:\n  pc1: {address: x}\n", 1, "host", "unknown key"),
    ("defaults: {user: x}\n", None, None, "no `hosts:` mapping"),
    ("", None, None, "no `hosts:` mapping"),
    ("hosts: [pc1, pc2]\n", 1, "hosts", "expected a mapping"),
    ("hosts:\n  pc1: 10.0.0.1\n", 2, "hosts.pc1", "expected a mapping"),
    ("hosts:\n  bad name:\n    address: x\n", 2, "hosts.bad name", "not a valid host name"),
    ("- pc1\n", 1, None, "expected a mapping"),
    ("hosts:\n  pc1:\n    address: [x\n", 3, None, "invalid YAML"),
]


@pytest.mark.parametrize("text, line, key, words", BAD_INVENTORIES)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, line: int | None,
                                         key: str | None, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    err = caught.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert words in str(err)


@pytest.mark.parametrize("text, line, key, words", [BAD_INVENTORIES[i] for i in (0, 3, 6, 14, 26)])
def test_cli_reports_inventory_mistakes_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    text: str, line: int | None, key: str | None,
                                                    words: str) -> None:
    path = write(tmp_path, text)
    code, out, err = run_orch(["--inventory", str(path), "inventory", "list"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(f"orch: {path}:{line}: ")
    assert (key or "invalid YAML") in err and words in err


def test_missing_address_hint_mentions_ssh_alias(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_inventory(write(tmp_path, "hosts:\n  devbox: {}\n"))
    assert "address: <the alias>" in (caught.value.hint or "")


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_inventory(write(tmp_path, "hosts:\n  pc1:\n    address: x\n    specialities: [a]\n"))
    assert caught.value.hint == "did you mean `specialties`?"


# --------------------------------------------------------------------------- round-trip edits


def test_add_appends_and_keeps_everything_else(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    host = add_host(path, "testing-1", {"address": "10.0.0.9", "specialties": ["testing"], "max_tasks": 3})
    assert host == Host(name="testing-1", address="10.0.0.9", specialties=("testing",), port=22,
                        user="dev", max_tasks=3)
    expected = FLEET.replace("    max_tasks: 1\n# end of fleet\n",
                             "    max_tasks: 1\n\n"
                             "  testing-1:\n    address: 10.0.0.9\n    specialties: [testing]\n"
                             "    max_tasks: 3\n# end of fleet\n")
    assert path.read_text() == expected


def test_set_changes_values_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    host = set_host(path, "frontend-1", {"enabled": True, "port": 2200, "user": "alice"})
    assert (host.enabled, host.port, host.user) == (True, 2200, "alice")
    expected = FLEET.replace("    port: 2222\n", "    port: 2200\n") \
        .replace("    enabled: false         # drained\n",
                 "    enabled: true          # drained\n    user: alice\n")
    assert path.read_text() == expected


def test_set_unset_removes_the_key_and_defaults_apply(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    host = set_host(path, "devops-1", {"max_tasks": UNSET})
    assert host.max_tasks == 2
    assert path.read_text() == FLEET.replace("    max_tasks: 1\n# end", "# end")


def test_rm_takes_the_comment_directly_above_and_keeps_section_comments(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    remove_host(path, "frontend-1")
    expected = FLEET.replace(
        "  # drained until the GPU is fixed\n  frontend-1:\n    address: 192.168.1.22\n"
        "    port: 2222\n    specialties: [frontend, ui]\n    enabled: false         # drained\n\n", "")
    assert path.read_text() == expected
    assert [h.name for h in load_inventory(path)] == ["backend-1", "devops-1"]


def test_rm_first_and_last_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    remove_host(path, "backend-1")
    text = path.read_text()
    assert "under the desk" not in text and "backend-1" not in text
    assert text.startswith("# the fleet (hand-written)\ndefaults:                  # applied to every host\n")
    assert "hosts:\n  # --- frontend ---\n\n  # drained until the GPU is fixed\n  frontend-1:\n" in text
    remove_host(path, "devops-1")
    assert path.read_text().endswith("    enabled: false         # drained\n# end of fleet\n")


def test_add_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "hosts.yml"
    add_host(path, "here", {"connection": "local", "specialties": ["backend", "ui"]})
    assert load_inventory(path) == [Host(name="here", address="localhost", connection="local",
                                         specialties=("backend", "ui"))]
    assert "  here:\n    specialties: [backend, ui]\n    connection: local\n" in path.read_text()


def test_add_to_empty_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, "# mine\nhosts:\n")
    add_host(path, "pc1", {"address": "a"})
    assert path.read_text() == "# mine\nhosts:\n  pc1:\n    address: a\n"


def test_add_under_a_commented_empty_hosts_keeps_the_comment_on_top(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  # one entry per PC\n\ndefaults:\n  user: dev\n")
    add_host(path, "pc1", {"address": "a"})
    assert path.read_text() == "hosts:\n  # one entry per PC\n  pc1:\n    address: a\n\ndefaults:\n  user: dev\n"


def test_add_keeps_four_space_indentation(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n    pc1:\n        address: a   # one\n")
    add_host(path, "pc2", {"address": "b"})
    assert path.read_text() == "hosts:\n    pc1:\n        address: a   # one\n    pc2:\n        address: b\n"


@pytest.mark.parametrize("edit", [
    lambda p: set_host(p, "backend-1", {"max_tasks": 0}),
    lambda p: set_host(p, "backend-1", {"port": 70000}),
    lambda p: set_host(p, "backend-1", {"specialties": "backend"}),
    lambda p: set_host(p, "backend-1", {"address": UNSET}),
    lambda p: set_host(p, "backend-1", {"prot": 22}),
    lambda p: set_host(p, "nobody", {"port": 22}),
    lambda p: add_host(p, "backend-1", {"address": "x"}),
    lambda p: add_host(p, "new", {"port": 22}),
    lambda p: add_host(p, "new", {"address": "x", "enabled": "no"}),
    lambda p: remove_host(p, "nobody"),
])
def test_refused_edit_leaves_file_byte_identical(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, FLEET)
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        edit(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["hosts.yml"]        # no temp file left behind


def test_edit_of_an_invalid_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  pc1:\n    address: x\n    max_tasks: zero\n")
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        set_host(path, "pc1", {"port": 22})
    assert caught.value.line == 4
    assert path.read_bytes() == before


def test_unknown_host_error_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET)
    with pytest.raises(ConfigError) as caught:
        remove_host(path, "backend-2")
    assert "known: backend-1, frontend-1, devops-1" in str(caught.value)


def test_atomic_write_keeps_mode_and_symlink_and_detects_concurrent_change(tmp_path: Path) -> None:
    real = write(tmp_path, "hosts: {}\n", "real.yml")
    real.chmod(0o600)
    link = tmp_path / "link.yml"
    link.symlink_to(real)
    atomic_write(link, "hosts:\n", expected="hosts: {}\n")
    assert link.is_symlink() and real.read_text() == "hosts:\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="changed by someone else"):
        atomic_write(real, "x: 1\n", expected="hosts: {}\n")
    assert real.read_text() == "hosts:\n"


# --------------------------------------------------------------------------- the CLI


def test_cli_add_set_rm_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FLEET, "inventory/hosts.yml")
    code, out, _ = run_orch(["inventory", "add", "qa-1", "--address", "10.0.0.7", "--specialty", "testing",
                             "--specialties", "qa,e2e", "--max-tasks", "4", "--disabled"], capsys)
    assert code == 0 and "added host qa-1" in out
    code, out, _ = run_orch(["inventory", "set", "qa-1", "enabled=true", "specialties=[testing, qa]",
                             "port=2022", "user=", "identity_file=~/.ssh/qa"], capsys)
    assert code == 0 and "updated host qa-1" in out
    code, out, _ = run_orch(["inventory", "list", "--json"], capsys)
    qa = next(h for h in json.loads(out) if h["name"] == "qa-1")
    assert qa == {"name": "qa-1", "address": "10.0.0.7", "specialties": ["testing", "qa"], "port": 2022,
                  "user": "dev", "identity_file": "~/.ssh/qa", "max_tasks": 4,
                  "workspace_root": "~/orch-work", "agent": None, "enabled": True, "connection": "ssh"}
    assert "  qa-1:\n    address: 10.0.0.7\n    specialties: [testing, qa]\n    max_tasks: 4\n" \
           "    enabled: true\n    port: 2022\n    identity_file: ~/.ssh/qa\n# end of fleet\n" in path.read_text()
    code, out, _ = run_orch(["inventory", "rm", "qa-1"], capsys)
    assert code == 0 and "removed host qa-1" in out
    assert path.read_text() == FLEET


def test_cli_invalid_set_exits_2_and_changes_nothing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FLEET, "inventory/hosts.yml")
    before = path.read_bytes()
    code, out, err = run_orch(["inventory", "set", "devops-1", "max_tasks=0"], capsys)
    assert code == 2 and out == ""
    assert "inventory/hosts.yml:25: hosts.devops-1.max_tasks: must be at least 1, got 0" in err
    assert "enabled: false" in err                               # the hint
    code, _, err = run_orch(["inventory", "set", "devops-1", "specialties=[a"], capsys)
    assert code == 2 and "cannot read '[a' as a YAML value" in err
    code, _, err = run_orch(["inventory", "set", "devops-1", "max_tasks"], capsys)
    assert code == 2 and "expected KEY=VALUE" in err
    assert path.read_bytes() == before


def test_cli_add_creates_default_file_and_list_shows_it(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_orch(["inventory", "list", "--json"], capsys)
    assert code == 0 and [h["name"] for h in json.loads(out)] == ["local"]   # embedded default
    code, _, _ = run_orch(["inventory", "add", "pc1", "--address", "10.0.0.1", "--port", "2222"], capsys)
    assert code == 0
    assert load_inventory(tmp_path / "inventory" / "hosts.yml") == [Host(name="pc1", address="10.0.0.1",
                                                                         port=2222)]
    code, out, _ = run_orch(["inventory", "list"], capsys)
    assert code == 0 and "pc1" in out and "10.0.0.1" in out and "2222" in out


def test_cli_add_honours_inventory_option_and_env(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "a" / "fleet.yml"
    code, _, _ = run_orch(["--inventory", str(explicit), "inventory", "add", "x", "--address", "h"], capsys)
    assert code == 0 and [h.name for h in load_inventory(explicit)] == ["x"]
    env = tmp_path / "b.yml"
    monkeypatch.setenv("ORCH_INVENTORY", str(env))
    code, _, _ = run_orch(["inventory", "add", "y", "--connection", "local"], capsys)
    assert code == 0 and [h.name for h in load_inventory(env)] == ["y"]
    assert not (tmp_path / "inventory").exists()


def test_cli_add_without_address_and_set_without_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_orch(["inventory", "add", "pc1"], capsys)
    assert code == 2 and "hosts.pc1.address: no address" in err
    assert not (tmp_path / "inventory" / "hosts.yml").exists()
    code, _, err = run_orch(["inventory", "rm", "pc1"], capsys)
    assert code == 2 and "no inventory file" in err


def test_orch_console_script_reports_bad_inventory(tmp_path: Path) -> None:
    """The installed entry point, in a subprocess, as a user or cron would run it."""
    path = write(tmp_path, "hosts:\n  pc1:\n    address: x\n    port: huge\n")
    env = {**os.environ, "HOME": str(tmp_path), "ORCH_INVENTORY": str(path)}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "inventory", "list"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{path}:4: hosts.pc1.port: expected an integer, got 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr
