"""The commands people and cron run most import only what they use (issue 10: start-up
is a large part of `orch tasks`, `orch hosts --json` and `orch dispatch`). Checked in a
fresh interpreter, on what it imported:

- `orch tasks` / `orch show`: no asyncio (~35 ms), no forge, no SSH, no Jinja2;
- every `--json` command: no rich (~20 ms: render/__init__.py);
- `orch hosts --json`: no YAML round-trip parser, no templates, no store, and from its
  second run on no PyYAML either (what it read is in orch's cache: config/yamlfile.py);
- `orch dispatch --json`: no bootstrap runner (fleet/verdicts.py), nothing that only a
  follow-up, git.via: orch, a split or an old state uses (NOT_FOR_AN_ISSUE), and from
  its second run on neither YAML library (the playbook, orch.yml and hosts.yml come from
  orch's cache: job/steps.py, config/yamlfile.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CODE = ("import json, sys\nfrom orchestrator.cli import main\n"
        "out, args = sys.argv[1], sys.argv[2:]\n"
        "try:\n    main(args)\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "open(out, 'w').write(json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n")


def imported(tmp_path: Path, args: list[str], env: dict[str, str] | None = None,
             cwd: Path | None = None) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules a fresh `orch ARGS` had imported when it ended, and the process."""
    out = tmp_path / "modules.json"
    r = subprocess.run([sys.executable, "-c", CODE, str(out), *args], capture_output=True,
                       text=True, timeout=180, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    assert out.exists(), r.stderr
    return set(json.loads(out.read_text())), r


def loaded(modules: set[str], *names: str) -> list[str]:
    """Which of `names` (packages or modules, with their submodules) are in `modules`."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


# What a plain issue's dispatch never uses, loaded where it is used: a follow-up
# (--followup), git.via: orch (the relay and orch's mirror), a split's plan and parts,
# the upgrade of records and messages an older orch wrote.
NOT_FOR_AN_ISSUE = ("orchestrator.lifecycle.followup", "orchestrator.job.relay",
                    "orchestrator.forge.mirror", "orchestrator.core.split",
                    "orchestrator.core.migrate")


@pytest.mark.parametrize("args", [["tasks", "--json"], ["tasks"], ["show", "nosuchid"]])
def test_task_listings_import_no_event_loop_and_no_forge(tmp_path, args):
    modules, r = imported(tmp_path, ["--state-dir", str(tmp_path / "state"), *args])
    assert r.returncode in (0, 2), r.stderr          # `show` of an unknown id: exit 2
    assert loaded(modules, "asyncio", "asyncssh", "github", "jinja2") == []
    if "--json" in args:
        assert loaded(modules, "rich") == []


def test_hosts_json_imports_no_rich_yaml_editor_templates_or_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))    # a cold cache
    inv = tmp_path / "hosts.yml"
    inv.write_text("hosts:\n  here:\n    connection: local\n"
                   f"    workspace_root: {tmp_path / 'ws'}\n    agent: /bin/true\n")
    seen = []
    for _ in range(2):
        modules, r = imported(tmp_path, ["--inventory", str(inv), "--state-dir",
                                         str(tmp_path / "state"), "hosts", "--json"])
        assert r.returncode == 0, r.stderr
        assert '"name": "here"' in r.stdout
        assert loaded(modules, "rich", "ruamel", "jinja2", "github", "tinydb", "difflib",
                      "orchestrator.store", "orchestrator.render.term",
                      "orchestrator.fleet.bootstrap") == []
        seen.append(modules)
    assert loaded(seen[0], "yaml") == ["yaml"]      # the first run read hosts.yml with libyaml
    assert loaded(seen[1], "yaml") == []            # the second one from orch's cache


def test_dispatch_json_imports_no_rich_nor_bootstrap_and_reads_the_playbook_once(
        make_world, tmp_path):
    w = make_world(hosts=1, tests={"command": "true", "max_fix_attempts": 0})
    w.env_extra["XDG_CACHE_HOME"] = str(tmp_path / "cache")      # a cold cache of its own
    seen = []
    for title in ("First dispatch", "Second dispatch"):
        n = w.issue(title, "orch-standin: write a.txt a\n")
        modules, r = imported(tmp_path, ["dispatch", f"{w.repo}#{n}", "--json"], env=w.env(),
                              cwd=w.root)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "succeeded", r.stdout
        assert loaded(modules, "rich", "orchestrator.render.term", "orchestrator.render.tasks",
                      "orchestrator.render.log", "orchestrator.fleet.bootstrap",
                      "orchestrator.fleet.checks", *NOT_FOR_AN_ISSUE) == []
        seen.append(modules)
    assert loaded(seen[0], "ruamel") == ["ruamel"]      # the first one parsed the playbook
    # the second one read it, orch.yml and hosts.yml from the cache
    assert loaded(seen[1], "ruamel", "yaml") == []
