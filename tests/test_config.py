"""orch.yml: defaults, every key of docs/SPEC.md, durations, and errors that name file, line, key."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config.load import SCHEMA, load_settings, parse_duration
from orchestrator.config.settings import DEFAULT_SPECIALTIES, Settings
from orchestrator.errors import ConfigError

SPEC_CONFIG = """\
github:
  url: https://github.example.com/api/v3   # GitHub Enterprise
  token_env: GHE_TOKEN
repos: [octo/api, octo/web]
trigger:
  label: robot
  min_permission: maintain
ssh:
  known_hosts: ~/.ssh/known_hosts
  config: null
  connect_timeout: 5
agent:
  command: claude
  max_turns: 12
  timeout: 1h30m
  max_cost_usd: 2.5
  daily_budget_usd: 40
  model: sonnet
  permission_mode: acceptEdits
  allow_root: true
git:
  author: "Robot <robot@example.com>"
poll:
  lost_after: 15m
  max_attempts: 5
tests:
  command: make check
  max_fix_attempts: 0
specialties:
  backend:  {labels: [be], keywords: [api]}
  devops: null
inventory: /etc/orch/hosts.yml
state_dir: ~/orch-state
"""


def write(tmp_path: Path, text: str, name: str = "orch.yml") -> Path:
    path = tmp_path / name
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
    for var in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- good files


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n", "---\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    settings = load_settings(write(tmp_path, text))
    expected = Settings()
    assert settings.agent == expected.agent
    assert settings.ssh == expected.ssh
    assert settings.specialties == expected.specialties
    assert settings.repos == []
    assert settings.source == tmp_path / "orch.yml"


def test_every_spec_key_is_read(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, SPEC_CONFIG))
    assert s.github.url == "https://github.example.com/api/v3"
    assert s.github.token_env == "GHE_TOKEN"
    assert s.repos == ["octo/api", "octo/web"]
    assert (s.trigger.label, s.trigger.min_permission) == ("robot", "maintain")
    assert s.ssh.config is None
    assert s.ssh.connect_timeout == 5.0
    assert s.agent.max_turns == 12
    assert s.agent.timeout == 5400.0
    assert s.agent.max_cost_usd == 2.5
    assert s.agent.daily_budget_usd == 40.0
    assert s.agent.model == "sonnet"
    assert s.agent.permission_mode == "acceptEdits"
    assert s.agent.allow_root is True
    assert s.git.author == "Robot <robot@example.com>"
    assert (s.poll.lost_after, s.poll.max_attempts) == (900.0, 5)
    assert (s.tests.command, s.tests.max_fix_attempts) == ("make check", 0)
    assert s.inventory == "/etc/orch/hosts.yml"
    assert s.state_dir == "~/orch-state"


def test_specialties_override_per_name_and_null_drops_one(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, SPEC_CONFIG))
    assert s.specialties["backend"] == {"labels": ["be"], "keywords": ["api"]}
    assert "devops" not in s.specialties
    assert s.specialties["frontend"] == DEFAULT_SPECIALTIES["frontend"]


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    s = load_settings(write(tmp_path, "inventory: hosts.yml\nstate_dir: ./state\n", "etc/orch.yml"))
    assert s.inventory == str(tmp_path / "etc" / "hosts.yml")
    assert s.state_dir == str(tmp_path / "etc" / "state")


def test_extra_settings_fields_are_accepted(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """\
        github: {timeout: 30s, retries: 0}
        ssh: {keepalive_interval: 0, max_sessions: 4, client_keys: [/k/id]}
        agent: {env: {FOO: bar, N: 3}}
        workspace: {keep_on_success: true}
        metrics: {textfile: /var/lib/node/orch.prom}
        repo_urls: {octo/api: "git@example.com:octo/api.git"}
        """))
    assert (s.github.timeout, s.github.retries) == (30.0, 0)
    assert (s.ssh.keepalive_interval, s.ssh.max_sessions, s.ssh.client_keys) == (0.0, 4, ["/k/id"])
    assert s.agent.env == {"FOO": "bar", "N": "3"}
    assert s.workspace.keep_on_success is True
    assert s.metrics.textfile == "/var/lib/node/orch.prom"
    assert s.repo_urls == {"octo/api": "git@example.com:octo/api.git"}


def test_schema_covers_every_setting() -> None:
    """A field added to settings.py without a SCHEMA line would be silently unsettable."""
    expected: set[str] = set()
    for f in dataclasses.fields(Settings):
        if f.name == "source":
            continue
        default = getattr(Settings(), f.name)
        if dataclasses.is_dataclass(default):
            expected |= {f"{f.name}.{g.name}" for g in dataclasses.fields(default)}
        else:
            expected.add(f.name)
    assert set(SCHEMA) == expected


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0),
    ("1h30m", 5400.0), ("1h 30m 15s", 5415.0), ("1.5h", 5400.0), ("1d", 86400.0),
    ("45 minutes", 2700.0), ("500ms", 0.5), (0, 0.0), ("2H", 7200.0),
])
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "ten", "5 parsecs", "30m1h", "1h1h", "-5m", -1, True, None, [1]])
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_durations_in_config(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "agent:\n  timeout: 90s\npoll:\n  lost_after: 2h\ntests:\n  timeout: 600\n"))
    assert (s.agent.timeout, s.poll.lost_after, s.tests.timeout) == (90.0, 7200.0, 600.0)


# --------------------------------------------------------------------------- mistakes

BAD_CONFIGS = [
    # (text, line, key, words the message must contain)
    ("agent:\n  model: x\n  max_turns: ten\n", 3, "agent.max_turns", "expected an integer, got 'ten'"),
    ("agent:\n  max_turns: 0\n", 2, "agent.max_turns", "at least 1"),
    ("agent:\n  max_turns: true\n", 2, "agent.max_turns", "expected an integer, got true"),
    ("agent:\n  timeout: soon\n", 2, "agent.timeout", "duration"),
    ("agent:\n  timeout: 0s\n", 2, "agent.timeout", "more than 0"),
    ("agent:\n  max_cost_usd: -1\n", 2, "agent.max_cost_usd", "at least 0"),
    ("agent:\n  allow_root: yes\n", 2, "agent.allow_root", "true or false"),
    ("agent:\n  permission_mode: bypass\n", 2, "agent.permission_mode", "bypassPermissions"),
    ("agent: 5\n", 1, "agent", "expected a mapping"),
    ("# c\ntrigger:\n  min_permission: writer\n", 3, "trigger.min_permission", "none, read, triage, write"),
    ("poll:\n  lost_after: -10m\n", 2, "poll.lost_after", "negative"),
    ("poll:\n  max_attempts: -1\n", 2, "poll.max_attempts", "at least 1"),
    ("tests:\n  max_fix_attempts: -2\n", 2, "tests.max_fix_attempts", "at least 0"),
    ("repos:\n  - octo/api\n  - https://github.com/octo/web\n", 3, "repos[1]", "owner/name"),
    ("repos: octo/api\n", 1, "repos", "expected a list"),
    ("github:\n  token_env: ghp_0123456789abcdef\n", 2, "github.token_env", "looks like a token"),
    ("github:\n  url: api.github.com\n", 2, "github.url", "URL"),
    ("git:\n  author: robot\n", 2, "git.author", "Name <email>"),
    ("ssh:\n  connect_timeout: fast\n", 2, "ssh.connect_timeout", "duration"),
    ("specialties:\n  backend: {labels: [x], keyword: [y]}\n", 2, "specialties.backend.keyword", "unknown key"),
    ("specialties:\n  backend: {labels: x}\n", 2, "specialties.backend.labels", "expected a list"),
    ("agent:\n  max_turn: 3\n", 2, "agent.max_turn", "unknown key"),
    ("agent:\n  max_turns: 1\n  max_turns: 2\n", 3, "agent.max_turns", "twice (first on line 2)"),
    ("- a\n- b\n", 1, None, "expected a mapping"),
    ("trigger:\n  mention: orch\n", 2, "trigger.mention", "expected @ and a login"),
    ("trigger:\n  review: maybe\n", 2, "trigger.review", "true or false"),
    ("pr:\n  reviewers: [alice, 'bob smith']\n", 2, "pr.reviewers[1]", "not a GitHub login"),
    ("pr:\n  draft: 1\n", 2, "pr.draft", "true or false"),
]


def test_conversation_and_pr_keys(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "trigger:\n  mention: '@bot'\n  review: false\n"
                                      "pr:\n  draft: true\n  reviewers: ['@alice', bob]\n"
                                      "  labels: [orch-made]\n"))
    assert (s.trigger.mention, s.trigger.review) == ("@bot", False)
    assert (s.pr.draft, s.pr.reviewers, s.pr.labels) == (True, ["alice", "bob"], ["orch-made"])
    d = Settings()
    assert (d.trigger.mention, d.trigger.review, d.pr.draft, d.pr.reviewers) == ("@orch", True, False, [])


@pytest.mark.parametrize("text, line, key, words", BAD_CONFIGS)
def test_mistakes_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str | None,
                                         words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    err = caught.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("text, line", [
    ("agent:\n  max_turns: [1\n", 2),          # unclosed flow list: reported where it opens
    ("agent:\n\tmax_turns: 3\n", 2),           # tab indentation
    ("agent: {a: 1\ngit: x\n", 2),           # the parser's line; the message names line 1 too
    ("a: b: c\n", 1),
])
def test_bad_yaml_has_the_parser_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.line == line
    assert "invalid YAML" in str(caught.value)


@pytest.mark.parametrize("text, suggestion", [
    ("agent:\n  max_turn: 3\n", "did you mean `max_turns`?"),
    ("agnet:\n  max_turns: 3\n", "did you mean `agent`?"),
    ("max_turns: 3\n", "did you mean `agent.max_turns`?"),
    ("trigger:\n  lable: orch\n", "did you mean `label`?"),
    ("ssh:\n  known_host: x\n", "did you mean `known_hosts`?"),
    ("poll:\n  max_turns: 3\n", "did you mean `agent.max_turns`?"),
    ("state-dir: /x\n", "did you mean `state_dir`?"),
])
def test_unknown_key_suggests_the_closest(tmp_path: Path, text: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert "unknown key" in str(caught.value)
    assert caught.value.hint == suggestion


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.yml")


# --------------------------------------------------------------------------- through the CLI


def test_cli_reports_config_mistake_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "# orch\nagent:\n  max_turns: ten\n")
    code, out, err = run_orch(["--config", str(path), "inventory", "list"], capsys)
    assert code == 2
    assert out == ""
    assert f"{path}:3: agent.max_turns: expected an integer, got 'ten'" in err
    assert "Traceback" not in err


def test_cli_unknown_key_hint_via_env(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "github:\n  token-env: TOKEN\n")
    monkeypatch.setenv("ORCH_CONFIG", str(path))
    code, _, err = run_orch(["inventory", "list", "--json"], capsys)
    assert code == 2
    assert f"{path}:2: github.token-env: unknown key" in err
    assert "did you mean `token_env`?" in err


def test_cli_config_inventory_key_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "hosts:\n  pc1:\n    address: 10.1.1.1\n", "fleet.yml")
    config = write(tmp_path, "inventory: fleet.yml\n")
    code, out, _ = run_orch(["--config", str(config), "inventory", "list", "--json"], capsys)
    assert code == 0
    assert '"address": "10.1.1.1"' in out
