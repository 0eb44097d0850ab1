"""Issue 8 item 6: text from outside never reaches the terminal as live escapes or markup.

A task's title and error, a host's agent version and error, a PR URL in an error message:
each may hold an OSC 8 hyperlink (`ESC ] 8 ;; URL BEL`), a screen clear (`ESC [ 2 J`),
rich markup (`[link=...]`) and bidi overrides. `orch tasks`, `orch show`, `orch retry`'s
error, the dispatch outcome and `orch hosts` print them inert: the markup literally, the
controls replaced.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from orchestrator.core.models import HostFacts
from orchestrator.core.text import clean
from orchestrator.store import Store

OSC_LINK = "\x1b]8;;https://evil\x07click me\x1b]8;;\x07"
CLEAR = "\x1b[2J"
MARKUP = "[link=https://evil]here[/link] [bold red]x[/]"
BIDI = "\u202eevil\u202c \u2066iso\u2069"
HOSTILE = f"{MARKUP} {OSC_LINK} {CLEAR} {BIDI}"


def _inert(out: str) -> None:
    """No escape sequence that came from the hostile text, the markup shown as written."""
    assert "\x1b]8;" not in out, "an OSC 8 hyperlink reached the terminal"
    assert "\x1b[2J" not in out, "a screen clear reached the terminal"
    assert "https://evil\x07" not in out
    assert "[link=https://evil]here[/link]" in out, "rich markup was parsed"
    for ch in "\u202e\u202c\u2066\u2069\x07":
        assert ch not in out, f"control {ch!r} reached the terminal"


def _orch(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    # A terminal that rich styles for (colours, hyperlinks): what an operator sees.
    env.update(FORCE_COLOR="1", COLUMNS="250", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(state), *args],
                          capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def _hostile_task(state: Path, status: str = "failed"):
    store = Store(state)
    t = store.create("octo/app", 7, f"Fix it {HOSTILE}", "backend")
    t = store.start(t.id, host="h1", branch="orch/7-fix-it", workspace="~/w/x")
    if status == "failed":
        return store.fail(t.id, f"tests failed: {HOSTILE}")
    return store.succeed(t.id, pr_url=f"https://github.test/pr/1 {HOSTILE}")


def test_clean_replaces_controls_and_bidi_keeps_text():
    assert clean("a\x1b[2Jb\tc\r\n") == "a\ufffd[2Jb    c\n"
    assert clean("\u202egnp.exe\u202c") == "\ufffdgnp.exe\ufffd"
    assert clean("\x9b31m") == "\ufffd31m"           # C1 CSI
    assert clean("plain [b]x[/b] é 中") == "plain [b]x[/b] é 中"


def test_tasks_table_and_show_print_hostile_title_and_error_inert(tmp_path):
    task = _hostile_task(tmp_path)
    listed = _orch(tmp_path, "tasks")
    assert listed.returncode == 0, listed.stderr
    assert task.id in listed.stdout
    _inert(listed.stdout)
    shown = _orch(tmp_path, "show", task.id)
    assert shown.returncode == 0, shown.stderr
    _inert(shown.stdout)
    assert "tests failed:" in shown.stdout


def test_error_messages_print_stored_text_inert(tmp_path):
    task = _hostile_task(tmp_path, status="succeeded")
    r = _orch(tmp_path, "retry", task.id)
    assert r.returncode == 2
    assert r.stderr.startswith("orch: task ")
    _inert(r.stderr)


def test_dispatch_outcome_prints_the_error_inert(tmp_path, monkeypatch):
    from orchestrator.render import tasks as render
    task = _hostile_task(tmp_path)
    buf = io.StringIO()
    monkeypatch.setattr(render, "console",
                        Console(file=buf, force_terminal=True, color_system="truecolor", width=250))
    render.outcome(task)
    _inert(buf.getvalue())
    assert "failed" in buf.getvalue()


def test_hosts_table_prints_a_hostile_agent_version_from_a_real_host_inert(make_ssh_fleet, tmp_path,
                                                                          monkeypatch):
    import asyncio

    from orchestrator.fleet.pool import Fleet
    from orchestrator.render import hosts as render
    fleet = make_ssh_fleet(1)
    agent = tmp_path / "fake-agent"
    agent.write_text("#!/bin/sh\nprintf '%s\\n' " + _sh_quote(f"2.0 {HOSTILE}") + "\n")
    agent.chmod(0o755)
    hosts = fleet.inventory(agent=str(agent))

    async def probe():
        async with Fleet(hosts, fleet.settings()) as f:
            return await f.probe()
    facts = asyncio.run(probe())
    assert facts[0].reachable, facts[0].error
    assert "evil" in (facts[0].agent_version or ""), facts[0]
    facts.append(HostFacts(name="h-bad", address="10.0.0.9", reachable=False,
                           error=f"refused: {HOSTILE}", error_kind="refused"))
    buf = io.StringIO()
    monkeypatch.setattr(render, "console",
                        Console(file=buf, force_terminal=True, color_system="truecolor", width=250))
    render.hosts_table(facts)
    _inert(buf.getvalue())


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"
