"""`orch cron install|show|remove` against a fake crontab command (never the real one).

$ORCH_CRONTAB points at a small sh script that keeps the table in a file and behaves
like Debian's crontab: `-l` prints it (or "no crontab for USER", exit 1), `-` replaces
it from stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.ops import cron

FAKE_CRONTAB = """#!/bin/sh
f=${FAKE_CRONTAB_FILE:?}
echo "$*" >> "$f.calls"
case $1 in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$f" ;;
  *) echo "usage: crontab -l | crontab -" >&2; exit 1 ;;
esac
"""

# A user's table with the things that must survive untouched: env lines, comments,
# odd spacing, a tab, a percent sign, a non-UTF-8 byte, an orch-looking line that is
# not ours, and a blank line.
USER_TABLE = (b"# my crontab\n"
              b"MAILTO=me@example.com\n"
              b"SHELL=/bin/sh\n"
              b"\n"
              b"0  3 * * *\t/usr/local/bin/backup --fast   # nightly\n"
              b"*/10 * * * * date +\\%s >> /tmp/ticks\n"
              b"@reboot echo caf\xe9 > /tmp/boot\n"
              b"*/5 * * * * orch poll  # my own, by hand\n")


@pytest.fixture
def env(tmp_path):
    script = tmp_path / "fake-crontab"
    script.write_text(FAKE_CRONTAB)
    script.chmod(0o755)
    table = tmp_path / "crontab.txt"
    e = {k: v for k, v in os.environ.items()
         if k not in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME")}
    e.update(ORCH_CRONTAB=str(script), FAKE_CRONTAB_FILE=str(table), COLUMNS="200")
    return {"env": e, "table": table, "tmp": tmp_path, "script": script}


def orch(env: dict, *args: str, cwd: Path | None = None,
         extra_env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(env["env"], **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd or env["tmp"],
                          env=e, capture_output=True, text=True, timeout=60)


def ours(table: bytes) -> list[bytes]:
    return [ln for ln in table.splitlines() if ln.endswith(cron.MARKER.encode())]


def test_install_twice_keeps_one_line_and_every_user_line(env):
    env["table"].write_bytes(USER_TABLE)
    state = env["tmp"] / "state"
    p = orch(env, "--state-dir", "state", "cron", "install")
    assert p.returncode == 0, p.stderr
    assert "installed:" in p.stdout
    after = env["table"].read_bytes()
    assert after.startswith(USER_TABLE)                      # byte for byte, order kept
    [line] = ours(after)
    text = line.decode()
    assert text.startswith("*/5 * * * * /")                  # absolute executable
    assert f"--state-dir {state} poll >> {state}/poll.log 2>&1 # orch poll" in text

    p = orch(env, "--state-dir", "state", "cron", "install", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["changed"] is False and data["installed"] is True and data["up_to_date"]
    assert env["table"].read_bytes() == after                # nothing rewritten
    calls = Path(str(env["table"]) + ".calls").read_text().split("\n")
    assert calls.count("-") == 1                              # one write in two installs

    # A new interval replaces the line where it stands.
    env["table"].write_bytes(after + b"15 4 * * * /usr/bin/true\n")
    p = orch(env, "--state-dir", "state", "cron", "install", "--every", "120")
    assert p.returncode == 0 and "replaced" in p.stdout
    table = env["table"].read_bytes()
    assert table.startswith(USER_TABLE)
    assert table.endswith(b"15 4 * * * /usr/bin/true\n")
    [line] = ours(table)
    assert line.startswith(b"0 */2 * * * ")


def test_remove_takes_only_our_line(env):
    env["table"].write_bytes(USER_TABLE)
    assert orch(env, "cron", "install").returncode == 0
    p = orch(env, "cron", "remove", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["changed"] is True and data["installed"] is False
    assert len(data["removed"]) == 1 and data["removed"][0].endswith(cron.MARKER)
    assert env["table"].read_bytes() == USER_TABLE
    p = orch(env, "cron", "remove")
    assert p.returncode == 0 and "unchanged" in p.stdout
    assert env["table"].read_bytes() == USER_TABLE


def test_install_into_an_empty_crontab_and_remove_again(env):
    assert not env["table"].exists()                         # "no crontab for USER"
    assert orch(env, "cron", "install", "--every", "10").returncode == 0
    assert len(ours(env["table"].read_bytes())) == 1
    assert orch(env, "cron", "remove").returncode == 0
    assert env["table"].read_bytes() == b""


def test_show(env):
    p = orch(env, "--state-dir", "state", "cron", "show")
    assert p.returncode == 0, p.stderr
    assert "no orch poll line is installed" in p.stdout
    assert "[Timer]" in p.stdout and "OnUnitActiveSec=5min" in p.stdout
    assert "ExecStart=/" in p.stdout and f"append:{env['tmp']}/state/poll.log" in p.stdout
    assert not env["table"].exists()                         # show never writes

    assert orch(env, "--state-dir", "state", "cron", "install", "--every", "15").returncode == 0
    p = orch(env, "--state-dir", "state", "cron", "show", "--json")
    data = json.loads(p.stdout)
    assert data["installed"] and data["up_to_date"] and data["every"] == 15
    assert data["line"] == ours(env["table"].read_bytes())[0].decode()
    assert set(data["systemd"]) == {"orch-poll.service", "orch-poll.timer"}
    assert "OnUnitActiveSec=15min" in data["systemd"]["orch-poll.timer"]

    p = orch(env, "--state-dir", "elsewhere", "cron", "show")
    assert "installed:" in p.stdout and "differs" in p.stdout


def test_missing_crontab_exits_2_with_the_line_to_add(env):
    missing = {"ORCH_CRONTAB": str(env["tmp"] / "no" / "crontab")}
    for action in ("install", "show", "remove"):
        p = orch(env, "cron", action, extra_env=missing)
        assert p.returncode == 2, (action, p.stdout, p.stderr)
        assert "is not an executable" in p.stderr
        assert cron.MARKER in p.stdout

    # No $ORCH_CRONTAB and no crontab on PATH: the plain "not installed" message.
    bare = env["tmp"] / "bin"
    bare.mkdir()
    p = orch(env, "cron", "install", extra_env={"ORCH_CRONTAB": "", "PATH": str(bare)})
    assert p.returncode == 2
    assert "crontab is not installed" in p.stderr
    assert "the line to add by hand" in p.stdout and cron.MARKER in p.stdout
    p = orch(env, "cron", "show", "--json", extra_env={"ORCH_CRONTAB": "", "PATH": str(bare)})
    assert p.returncode == 2
    data = json.loads(p.stdout)
    assert data["crontab_available"] is False and data["expected"].endswith(cron.MARKER)
    assert not env["table"].exists()


def test_a_failing_crontab_changes_nothing(env):
    env["table"].write_bytes(USER_TABLE)
    broken = env["tmp"] / "broken-crontab"
    broken.write_text("#!/bin/sh\necho 'crontab: cannot open the spool' >&2\nexit 1\n")
    broken.chmod(0o755)
    p = orch(env, "cron", "install", extra_env={"ORCH_CRONTAB": str(broken)})
    assert p.returncode == 1
    assert "cannot open the spool" in p.stderr
    assert env["table"].read_bytes() == USER_TABLE


def test_pins_what_cron_could_not_find(env):
    tmp = env["tmp"]
    (tmp / "orch.yml").write_text("repos: []\n")
    (tmp / "inventory").mkdir()
    (tmp / "inventory" / "hosts.yml").write_text("hosts: {}\n")
    p = orch(env, "cron", "install", "--json",
             extra_env={"ORCH_HOME": str(tmp / "home state")})
    assert p.returncode == 0, p.stderr
    argv = json.loads(p.stdout)["command"]
    assert argv[argv.index("--config") + 1] == str(tmp / "orch.yml")
    assert argv[argv.index("--inventory") + 1] == str(tmp / "inventory" / "hosts.yml")
    assert argv[argv.index("--state-dir") + 1] == str(tmp / "home state")
    assert Path(argv[0]).is_absolute() and argv[-1] == "poll"

    # Elsewhere, with nothing given, nothing is pinned (cron finds the same defaults).
    other = tmp / "other"
    other.mkdir()
    p = orch(env, "cron", "show", "--json", cwd=other,
             extra_env={"HOME": str(tmp / "home")})
    argv = json.loads(p.stdout)["command"]
    assert argv[-1] == "poll" and "--config" not in argv and "--state-dir" not in argv


def test_the_line_runs_as_cron_would_run_it(env):
    """Cron turns `\\%` into `%` and hands the rest to sh: the pass runs and logs."""
    tmp = env["tmp"]
    (tmp / "orch.yml").write_text("repos: []\n")
    state = tmp / "st 100%"
    p = orch(env, "--config", "orch.yml", "--state-dir", str(state), "cron", "install")
    assert p.returncode == 0, p.stderr
    [line] = ours(env["table"].read_bytes())
    command = line.decode().split(" ", 5)[5].replace("\\%", "%")
    done = subprocess.run(["sh", "-c", command], cwd="/", env=env["env"], timeout=60)
    assert done.returncode == 0
    log = (state / "poll.log").read_text()
    assert "0 dispatched" in log


# --------------------------------------------------------------------------- pure parts

@pytest.mark.parametrize("every, fields", [
    (1, "*/1 * * * *"), (5, "*/5 * * * *"), (59, "*/59 * * * *"), (60, "0 * * * *"),
    (120, "0 */2 * * *"), (720, "0 */12 * * *"), (1440, "0 0 * * *")])
def test_schedule_round_trips(every, fields):
    assert cron.schedule(every) == fields
    assert cron.every_of(fields + " cmd") == every


@pytest.mark.parametrize("every", [0, 90, 150, 1000, 2880])
def test_schedule_refuses_what_cron_cannot_say(every):
    with pytest.raises(UsageError):
        cron.schedule(every)


def test_merge_is_byte_exact():
    line = "*/5 * * * * orch poll " + cron.MARKER
    old = "*/9 * * * * old " + cron.MARKER
    table = b"A=1\n" + old.encode() + b"\nB\t2  \n" + old.encode() + b"\n"
    assert cron.merge(table, line) == b"A=1\n" + line.encode() + b"\nB\t2  \n"
    assert cron.merge(table, None) == b"A=1\nB\t2  \n"
    assert cron.merge(b"x y", line) == b"x y\n" + line.encode() + b"\n"
    assert cron.merge(b"", None) == b""
    assert cron.managed_lines(table) == [old, old]


def test_job_command_quotes_and_escapes_percent(tmp_path):
    job = cron.PollJob(("/opt/my orch/bin/orch", "--state-dir", "/s/100%", "poll"), 5,
                       Path("/s/100%/poll.log"))
    assert job.command == ("'/opt/my orch/bin/orch' --state-dir /s/100\\% poll "
                           ">> /s/100\\%/poll.log 2>&1")
    units = cron.systemd_units(job)
    assert 'ExecStart="/opt/my orch/bin/orch" --state-dir /s/100%% poll' in \
        units["orch-poll.service"]
    assert "StandardOutput=append:/s/100%%/poll.log" in units["orch-poll.service"]
