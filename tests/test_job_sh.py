"""The library of job.sh (the prelude of playbooks/dispatch.yml), driven directly under dash.

Each test renders the real job.sh, replaces its last line (`orch_main "$@"`) by a few
lines that call the functions under test, and runs it with dash, the /bin/sh of Debian
hosts. No host, no agent: the functions are what is tested.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.job.playbook import JobSpec, render_job

DASH = shutil.which("dash")
pytestmark = pytest.mark.skipif(DASH is None, reason="dash is the hosts' /bin/sh; not installed")


def job_library(ws: Path, **spec_values) -> str:
    """job.sh without its call to orch_main, its workspace at `ws`."""
    values = dict(task_id="t1", workspace=str(ws), clone_url="u", branch="b", commit_message="m")
    values.update(spec_values)
    script = render_job(JobSpec(**values))
    assert script.rstrip().endswith('orch_main "$@"')
    return script.rstrip()[:-len('orch_main "$@"')]


def run_dash(script: str, *, timeout: float = 60, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DASH, "-c", script], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def group_members(pgid: int) -> list[str]:
    """The live processes of a process group (zombies are dead: this VM's init reaps lazily)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)], capture_output=True,
                         text=True)
    return [line.strip() for line in out.stdout.splitlines()
            if line.strip() and not line.split()[1].startswith("Z")]


# --------------------------------------------------------------------------- the watchdog


@pytest.mark.integration      # a thousand job runs' worth of processes: not the fast tier
def test_a_guarded_command_that_exits_at_once_never_waits_for_the_watchdog(tmp_path):
    """Issue 16 item 1: the stop of the watchdog must not depend on a trap it may not have
    installed yet. Under the job's own TERM trap (as in a real job), 1000 guarded runs of
    `true` each end well within a second; before the fix one in a few dozen lost the
    stop and hung for the whole limit (here 30 s, the test's `tests.timeout`)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    harness = """
LOG="$WS/job.log"; : > "$LOG"
trap 'on_signal TERM' TERM
i=0
while [ "$i" -lt 1000 ]; do
  t0=$(date +%s%N)
  guarded tests 30 1 /dev/null true
  t1=$(date +%s%N)
  [ "$GUARD_RC" -eq 0 ] || { echo "run $i: rc $GUARD_RC"; exit 1; }
  if [ $((t1 - t0)) -ge 1000000000 ]; then echo "run $i took $(((t1 - t0) / 1000000)) ms"; exit 1; fi
  i=$((i + 1))
done
trap - TERM
echo "all $i fast"
"""
    proc = subprocess.Popen([DASH, "-c", job_library(ws) + harness], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    left = group_members(proc.pid)      # right away: an orphaned `sleep 1` would still be there
    assert out.strip().endswith("all 1000 fast"), out[-2000:] + err[-2000:]
    assert not (ws / "status").exists(), "no signal reached the job: it must not have finished"
    assert left == [], f"the stopped watchdogs left processes in the job's group: {left}"


# --------------------------------------------------------------------------- JSON as JSON

RESULT_COMPACT = ('{"type":"result","subtype":"success","is_error":false,"num_turns":3,'
                  '"total_cost_usd":0.0126,"result":"done: \\"quoted\\" \\\\ \\u00e9\\ud83d\\ude00 ok"}')
RESULT_SPACED = ('{ "type" : "result", "subtype": "success", "is_error" : false, "num_turns" : 3 ,'
                 ' "total_cost_usd": 0.0126, "result": "done: \\"quoted\\" \\\\ \\u00e9\\ud83d\\ude00 ok" }')
RESULT_REORDERED = ('{"result":"done: \\"quoted\\" \\\\ \\u00e9\\ud83d\\ude00 ok","usage":{"type":"x",'
                    '"num_turns":99},"total_cost_usd":1.26e-2,"num_turns":3,"is_error":false,'
                    '"subtype":"success","type":"result"}\r')
RESULT_TEXT = 'done: "quoted" \\ \u00e9\U0001F600 ok'

NOT_RESULTS = [
    # the pattern inside a string value (escaped there), at the top level and nested
    '{"type":"assistant","message":{"content":[{"type":"text","text":"{\\"type\\":\\"result\\"}"}]}}',
    '{"type":"user","note":"\\"type\\":\\"result\\",\\"is_error\\":false"}',
    # a nested object whose type is result
    '{"type":"assistant","message":{"type":"result","is_error":false}}',
    '{"message":{"type":"result"},"type":"system"}',
    # not one complete JSON object
    '{"type":"result","is_error":false,"num_turns":3,',
    '{"type":"result","is_error":false} {"type":"user"}',
    '{"type":"result","is_error":nope}',
    '["type","result"]',
    'plain text "type":"result"',
    '::orch:: note "type": "result"',
    '{"type":"result\\u0000x"}',
    '{"type":["result"]}',
]


def sh_lines(script_tail: str, tmp_path: Path, *, stdin_lines: list[str] | None = None) -> list[str]:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    feed = tmp_path / "feed.txt"
    feed.write_bytes(("\n".join(stdin_lines or []) + "\n").encode("utf-8"))
    proc = run_dash(job_library(ws) + f"\nFEED={shlex.quote(str(feed))}\n" + script_tail)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


@pytest.mark.parametrize("line", [RESULT_COMPACT, RESULT_SPACED, RESULT_REORDERED],
                         ids=["compact", "spaced", "reordered"])
def test_the_result_event_is_read_whatever_its_whitespace_and_key_order(tmp_path, line):
    out = sh_lines(f"""l={shlex.quote(line)}
json_count result < "$FEED"; json_lines result < "$FEED" | wc -l
for k in type subtype is_error num_turns total_cost_usd result usage missing; do
  v=$(json_field "$k" "$l") && printf '%s=%s\\n' "$k" "$v" || printf '%s absent\\n' "$k"
done
""", tmp_path, stdin_lines=[line, *NOT_RESULTS])
    assert out[0] == "1" and out[1].strip() == "1"
    fields = dict(x.split("=", 1) for x in out[2:] if "=" in x)
    assert fields["type"] == "result" and fields["subtype"] == "success"
    assert fields["is_error"] == "false" and fields["num_turns"] == "3"
    assert float(fields["total_cost_usd"]) == 0.0126
    assert fields["result"] == RESULT_TEXT
    assert "missing absent" in out
    if line is RESULT_REORDERED:
        assert fields["usage"] == '{"type":"x","num_turns":99}'      # as JSON text


def test_lookalikes_are_not_results(tmp_path):
    out = sh_lines('json_count result < "$FEED"; json_count user < "$FEED"\n'
                   'json_lines result < "$FEED"', tmp_path, stdin_lines=NOT_RESULTS)
    assert out[0] == "0", out
    assert out[1] == "1"          # the one well-formed user event
    assert out[2:] == []


def test_the_last_result_and_its_fields_in_one_run(tmp_path):
    """json_last: what the agent run reads of its result (the last result event among the
    lookalikes, then its fields, a missing one left out) in one grep and one awk run;
    nothing at all without a result event."""
    later = ('{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":9,'
             '"usage":{"num_turns":1}}')
    out = sh_lines('json_last result "num_turns total_cost_usd is_error subtype" < "$FEED"; echo end',
                   tmp_path, stdin_lines=[RESULT_SPACED, *NOT_RESULTS, later, NOT_RESULTS[0]])
    assert out == [f"line={later}", "num_turns=9", "is_error=true", "subtype=error_max_turns", "end"]
    out = sh_lines('json_last result "num_turns" < "$FEED"; echo end', tmp_path,
                   stdin_lines=NOT_RESULTS)
    assert out == ["end"]


def test_fields_of_odd_but_valid_json(tmp_path):
    cases = {
        '{"a":1,"a":2}': ("a", "2"),                         # the last of a duplicate key
        '{"a":{"b":[1,{"c":"}"}]},"d":"x"}': ("d", "x"),     # a brace inside a nested string
        '{"a":"line\\nbreak\\ttab"}': ("a", "line break tab"),
        '{"a":-1.5e+3}': ("a", "-1.5e+3"),
        '{"a":null}': ("a", "null"),
        '  {"a":"\\/x"}  ': ("a", "/x"),
        '{"k":"v","a":[]}': ("a", "[]"),
    }
    script = "".join(f"json_field {shlex.quote(k)} {shlex.quote(line)}; echo \"rc=$?\"\n"
                     for line, (k, _) in cases.items())
    out = sh_lines(script, tmp_path)
    got = [(out[i], out[i + 1]) for i in range(0, len(out), 2)]
    assert got == [(v, "rc=0") for _, v in cases.values()]
    bad = sh_lines("json_field a '{\"a\":01}'; echo \"rc=$?\"; json_field a '{\"a\" 1}'; echo \"rc=$?\"",
                   tmp_path)
    assert bad == ["rc=1", "rc=1"]


# --------------------------------------------------------------------------- job.log's newline

# The library with the job's own log set-up (log_open, as orch_main does) and `tail`
# counted: a function of that name shadows the command for every call the job makes.
LOG_HARNESS = """
LOG="$WS/job.log"; : > "$LOG"
tail() { echo "$*" >> "$WS/tail.calls"; command tail "$@"; }
log_open
"""


def log_run(tmp_path: Path, script: str, *, proc: bool = True) -> tuple[str, list[str], str]:
    """job.log, the tail calls the job made, and what the script printed on stderr (the
    script's own fd 2 is kept as fd 3: log_open sends 1 and 2 to the log)."""
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    harness = LOG_HARNESS if proc else LOG_HARNESS + "LOG_FD=\n"   # as without /proc
    full = job_library(ws) + "exec 3>&2\n" + harness + script
    out = subprocess.run([DASH, "-c", full], capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    calls = ws / "tail.calls"
    return ((ws / "job.log").read_bytes().decode(), calls.read_text().splitlines() if calls.exists() else [],
            out.stderr.decode())


def test_markers_after_the_jobs_own_lines_read_nothing(tmp_path):
    """The job's own lines, one after the other: the log's offset says it still ends with
    the last one's newline, so no `tail -c 1` is run; the sizes it gives are the file's."""
    log, calls, err = log_run(tmp_path, """
mark step one; mark note "two words"; mark note 'é and more'
log_size_to; echo "size=$LS" >&3
""")
    assert log == "::orch:: step one\n::orch:: note two words\n::orch:: note é and more\n"
    assert calls == []
    assert err.strip() == f"size={len(log.encode())}"


def test_a_marker_after_output_left_mid_line_starts_a_line(tmp_path):
    """Output through the job's stdout (git, the agent, the tests write there) moves the
    offset: the last byte is read, and a newline added where the output left none."""
    log, calls, err = log_run(tmp_path, """
mark step one
printf 'partial'
mark note two
printf 'whole line\\n'
mark note three
printf 'through stderr' >&2
mark note four
log_size_to; echo "size=$LS" >&3
""")
    assert log == ("::orch:: step one\npartial\n::orch:: note two\nwhole line\n"
                   "::orch:: note three\nthrough stderr\n::orch:: note four\n")
    assert calls == ["-c 1 " + str(tmp_path / "ws" / "job.log")] * 3
    assert err.strip() == f"size={len(log.encode())}"


def test_a_guarded_run_writing_through_a_file_of_its_own_is_read_after(tmp_path):
    """A run (the agent, the tests) that opens job.log anew writes past fd 8's offset without
    moving it: after every guarded run the last byte is read for real, and the offset the job
    trusts afterwards is the file's size again."""
    log, calls, err = log_run(tmp_path, """
mark tests running
guarded tests 30 1 /dev/null sh -c 'printf "by name" >> "$0"' "$LOG"
mark note after
log_size_to; echo "size=$LS" >&3
""")
    assert log == "::orch:: tests running\nby name\n::orch:: note after\n"
    assert err.strip() == f"size={len(log.encode())}"


def test_a_line_written_by_name_between_two_markers_is_noticed_at_the_next(tmp_path):
    """Outside a guarded run, a whole line written through another open file of job.log
    (here the job's own `>>`) leaves fd 8's offset behind the file's end: the job's next
    line shows it (its offset moved by more than its length), and from then on the last
    byte is read again and the size counted (wc), not taken from the offset."""
    log, calls, err = log_run(tmp_path, """
mark step one
echo 'another writer' >> "$LOG"
mark note two
log_size_to; echo "size=$LS" >&3
""")
    assert log == "::orch:: step one\nanother writer\n::orch:: note two\n"
    assert err.strip() == f"size={len(log.encode())}"


def test_a_file_copied_into_the_log_ends_with_a_newline_and_reads_nothing(tmp_path):
    """log_file (push.out): the file's lines as they are (spaces, backslashes, a CR), its
    last one given the newline it lacked, and the next marker needs no last byte read."""
    (tmp_path / "push.out").write_bytes(b"To origin\n  \\ back\\slash \r\n\nno newline")
    log, calls, _ = log_run(tmp_path, f"""
mark step push
log_file {shlex.quote(str(tmp_path / "push.out"))}
mark step report
""")
    assert log == ("::orch:: step push\nTo origin\n  \\ back\\slash \r\n\nno newline\n"
                   "::orch:: step report\n")
    assert calls == []


def test_without_proc_every_marker_reads_the_last_byte(tmp_path):
    """No /proc (LOG_FD empty): the old rule, the last byte read before each line."""
    log, calls, err = log_run(tmp_path, """
mark step one; printf 'partial'; mark note two
log_size_to; echo "size=$LS" >&3
""", proc=False)
    assert log == "::orch:: step one\npartial\n::orch:: note two\n"
    assert calls == ["-c 1 " + str(tmp_path / "ws" / "job.log")]   # the empty log is not read
    assert err.strip() == f"size={len(log.encode())}"
