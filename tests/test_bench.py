"""A smoke run of `make bench` (bench/run.py --quick): every section runs end to end on a
real fleet and prints its rows. It asserts that the harness works and checks what it
measures (every host answered, every log line came once, each dispatch succeeded), never
how fast anything was: speed is the benchmark's to report, not a test's to assert."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)
def test_bench_quick_runs_every_section(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--no-save",
                        "--tools", "orch,floor,ssh", "--sizes", "300"],
                       capture_output=True, text=True, timeout=880, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    for row in ("orch hosts --json", "bare asyncssh (floor)", "ssh x N (parallel)",
                "first use (migration)", "orch demo", "orch poll (idle)", "orch tasks --json",
                "orch show OLD_ID", "orch metrics --no-probe", "orch dispatch (1 host",
                "hand-written: 1 ssh + PyGithub", "orch logs -f latency p99",
                "orch logs -f chatty agent, pipe", "the same, a terminal",
                "split: 3 parts on 3 hosts (make-span)", "the same 3 parts on 1 host, in turn",
                "orch poll, PostgreSQL", "orch dispatch, PostgreSQL"):
        assert row in out, row
    assert " failed" not in out.split("one dispatch")[0], out    # every row counted its runs
    assert "one dispatch, orch: 1 SSH connection(s)" in out
    assert "state writes:" in out and "GitHub requests" in out
