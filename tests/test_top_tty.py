"""The interactive `orch top` under a real pseudo-terminal (pexpect): keys select, show the
log, cancel after a y/n; `q`, Ctrl-C and an error each leave the terminal as it was
(`stty -a` before and after the same; the alternate screen left, the cursor shown)."""

from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pytest

from orchestrator.store import Store
from tests.helpers_top import job_status, running_in_tests_step, wait_until

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
ALT_ON, ALT_OFF = "\x1b[?1049h", "\x1b[?1049l"
CURSOR_OFF, CURSOR_ON = "\x1b[?25l", "\x1b[?25h"


class Term:
    """A bash on a pseudo-terminal running `orch top` between two `stty -a`."""

    def __init__(self, w, tmp: Path, rows: int = 45, cols: int = 180) -> None:
        env = w.env()
        env.pop("COLUMNS", None)          # the terminal's own size drives the view
        env.update(TERM="xterm-256color", PS1="$ ")
        self.tmp = tmp
        self.out = io.StringIO()
        self.child = pexpect.spawn("/bin/bash", ["--norc", "--noprofile"], env=env,
                                   cwd=str(w.root), dimensions=(rows, cols), encoding="utf-8",
                                   codec_errors="replace", timeout=60)
        self.child.logfile_read = self.out
        self.mark = 0

    def start_top(self) -> None:
        self.child.sendline(f"stty -a > {self.tmp}/before; {sys.executable} -m orchestrator top "
                            f"--interval 0.5; echo TOP-EXIT=$?; stty -a > {self.tmp}/after")
        self.wait_for("orch top ·")

    def screen_since_mark(self) -> str:
        return ANSI.sub("", self.out.getvalue()[self.mark:])

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        """Read until `needle` shows (escape sequences stripped) after the last mark."""
        end = time.monotonic() + timeout
        while needle not in self.screen_since_mark():
            if time.monotonic() > end:
                raise AssertionError(f"{needle!r} never showed; the screen ended with:\n"
                                     + self.screen_since_mark()[-3000:])
            try:
                self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                pass

    def key(self, key: str, expect: str | None = None) -> None:
        self.mark = len(self.out.getvalue())
        self.child.send(key)
        if expect is not None:
            self.wait_for(expect)

    def exit_code(self) -> int:
        self.child.expect(r"TOP-EXIT=(\d+)")
        code = int(self.child.match.group(1))
        self.child.sendline("echo STTY-DONE")
        self.child.expect("STTY-DONE\r?\n")
        self.child.sendline("exit")
        self.child.expect(pexpect.EOF)
        return code

    def assert_terminal_restored(self) -> None:
        before = (self.tmp / "before").read_text()
        after = (self.tmp / "after").read_text()
        assert before == after, f"stty -a before:\n{before}\nafter:\n{after}"
        raw = self.out.getvalue()
        assert ALT_ON in raw, "the view used the alternate screen"
        assert raw.rfind(ALT_OFF) > raw.rfind(ALT_ON), "the alternate screen was left"
        assert raw.rfind(CURSOR_ON) > raw.rfind(CURSOR_OFF), "the cursor is shown again"


def test_keys_select_show_the_log_cancel_after_asking_and_q_restores_the_terminal(
        make_world, tmp_path):
    w = make_world(hosts=2, tests={"command": "sleep 120"})
    old = w.issue("An old one", "orch-standin: sleep-forever\n")
    finished = w.orch_json("dispatch", f"{w.repo}#{old}", "--detach")
    assert w.orch_json("cancel", finished["task_id"])["status"] == "cancelled"
    running = running_in_tests_step(w, turns=2)

    term = Term(w, tmp_path)
    term.start_top()
    term.wait_for(f"log of {running['task_id']}")       # the first row is selected
    for name in w.fleet.names:
        term.wait_for(name)
    term.key("j", expect=f"log of {finished['task_id']}")
    term.key("\x1b[A", expect=f"log of {running['task_id']}")   # arrow up
    term.key("\x1b[B", expect=f"log of {finished['task_id']}")  # arrow down
    term.key("c", expect="nothing to cancel")                    # a finished task
    term.key("k", expect=f"log of {running['task_id']}")

    term.key("c", expect="cancel task")
    term.key("n", expect="not cancelled")
    assert Store(w.state_dir).get(running["task_id"]).status == "running"

    term.key("l", expect=f"following on {running['host']}")
    term.wait_for("tests running")                  # the job's log, as `orch logs` shows it
    term.key("q", expect="q quit")                  # back to the table

    term.key("c", expect="cancel task")
    term.key("y", expect=f"task {running['task_id']} cancelled")
    assert Store(w.state_dir).get(running["task_id"]).status == "cancelled"
    wait_until(lambda: job_status(running["workspace"]).get("state") == "cancelled", 30,
               "the job's own status to say cancelled")
    with pytest.raises(ProcessLookupError):          # the job's process group is gone
        os.killpg(int(job_status(running["workspace"])["pgid"]), 0)

    term.key("q")
    assert term.exit_code() == 0
    term.assert_terminal_restored()


def _top_on_one_host(make_world, tmp_path) -> tuple[object, Term]:
    w = make_world(hosts=1)
    term = Term(w, tmp_path)
    term.start_top()
    term.wait_for("h1")
    return w, term


def test_ctrl_c_quits_and_restores_the_terminal(make_world, tmp_path):
    _, term = _top_on_one_host(make_world, tmp_path)
    term.key("\x03")
    assert term.exit_code() == 130
    term.assert_terminal_restored()


def test_an_error_ends_the_view_with_its_message_and_restores_the_terminal(make_world, tmp_path):
    w, term = _top_on_one_host(make_world, tmp_path)
    term.mark = len(term.out.getvalue())
    (w.state_dir / "state.json").write_text("{ this is not json")
    term.wait_for("orch: ")
    assert term.exit_code() == 2
    assert "state.json" in term.screen_since_mark()
    term.assert_terminal_restored()
