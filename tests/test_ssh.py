"""The SSH transport and the Fleet against real OpenSSH servers on loopback (no mocks).

Timing assertions leave a margin: this may be a 2-core machine running other suites.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import time
from pathlib import Path

import pytest

from orchestrator.core.models import Host
from orchestrator.errors import HostUnreachable
from orchestrator.fleet.pool import Fleet
from orchestrator.transport import connect
from orchestrator.transport.ssh import SSHConnection

MARGIN = 1.5  # seconds allowed beyond a timeout


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def fake_agent(tmp_path_factory) -> str:
    """An executable that answers `--version` like Claude Code does."""
    path = tmp_path_factory.mktemp("agent") / "fake-claude"
    path.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "9.9.9 (Claude Code)"\n')
    path.chmod(0o755)
    return str(path)


async def _open(host: Host, settings) -> SSHConnection:
    conn = await connect(host, settings.ssh)
    assert isinstance(conn, SSHConnection)
    return conn


def _reason(coro) -> tuple[HostUnreachable, float]:
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as info:
        run(coro)
    return info.value, time.monotonic() - started


# -- probing the fleet -----------------------------------------------------------------

def test_probe_five_hosts_at_once(ssh_fleet, fake_agent):
    hosts = ssh_fleet.inventory(agent=fake_agent, specialties=("backend",), max_tasks=3)
    settings = ssh_fleet.settings()

    async def go():
        async with Fleet(hosts, settings) as fleet:
            started = time.monotonic()
            facts = await fleet.probe()
            return facts, time.monotonic() - started

    facts, elapsed = run(go())
    assert [f.name for f in facts] == ssh_fleet.names
    for f in facts:
        assert f.reachable and f.error is None, f
        assert f.load1 is not None and f.load1 >= 0
        assert f.cpus and f.cpus >= 1
        assert f.mem_total_mb and f.mem_total_mb > 0
        assert f.mem_available_mb is not None and 0 <= f.mem_available_mb <= f.mem_total_mb
        assert f.disk_free_mb and f.disk_free_mb > 0
        assert f.running_tasks == 0 and f.running_task_ids == []
        assert f.agent_version == "9.9.9 (Claude Code)"
        assert f.max_tasks == 3 and f.specialties == ["backend"]
    assert elapsed < 10, elapsed


def test_probe_counts_live_running_tasks_only(ssh_fleet, fake_agent, tmp_path):
    """A task counts when status says running AND its process group is alive."""
    import subprocess
    ws = tmp_path / "ws"
    live = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        for tid, state, pgid in (("aaaa1111", "running", live.pid), ("bbbb2222", "running", 999999),
                                 ("cccc3333", "succeeded", live.pid)):
            (ws / tid).mkdir(parents=True)
            (ws / tid / "status").write_text(f"state={state}\nstep=agent\npgid={pgid}")
        (ws / "junk").mkdir()
        host = ssh_fleet.inventory(["h1"], agent=fake_agent, workspace_root=str(ws))[0]

        async def go():
            async with Fleet([host], ssh_fleet.settings()) as fleet:
                return (await fleet.probe())[0]

        facts = run(go())
    finally:
        live.kill()
        live.wait()
    assert facts.running_tasks == 1 and facts.running_task_ids == ["aaaa1111"]
    assert any("bbbb2222" in n for n in facts.notes)


def test_probe_missing_agent_is_a_note_not_unreachable(ssh_fleet):
    host = ssh_fleet.inventory(["h2"], agent="/nonexistent/claude")[0]

    async def go():
        async with Fleet([host], ssh_fleet.settings()) as fleet:
            return (await fleet.probe())[0]

    facts = run(go())
    assert facts.reachable and facts.error is None
    assert facts.agent_version is None
    assert any("not found" in n for n in facts.notes)


def test_probe_through_local_connection(tmp_path, fake_agent):
    host = Host(name="local", address="localhost", connection="local", agent=fake_agent,
                workspace_root=str(tmp_path / "not" / "yet"))
    from orchestrator.config.settings import Settings

    async def go():
        async with Fleet([host], Settings()) as fleet:
            return (await fleet.probe())[0]

    facts = run(go())
    assert facts.reachable and facts.error is None
    assert facts.cpus and facts.cpus >= 1 and facts.disk_free_mb
    assert facts.agent_version == "9.9.9 (Claude Code)"
    assert not (tmp_path / "not").exists()  # the probe creates nothing


def test_stopped_host_is_refused_others_fine(make_ssh_fleet, fake_agent):
    fleet_ = make_ssh_fleet(3)
    hosts = fleet_.inventory(agent=fake_agent)
    settings = fleet_.settings()
    fleet_.stop("h2")

    async def go():
        async with Fleet(hosts, settings) as fleet:
            return await fleet.probe()

    facts = {f.name: f for f in run(go())}
    assert not facts["h2"].reachable and facts["h2"].error_kind == "refused"
    assert "refused" in facts["h2"].error
    assert facts["h1"].reachable and facts["h3"].reachable
    fleet_.start("h2")
    facts = {f.name: f for f in run(go())}
    assert all(f.reachable for f in facts.values())


def test_disabled_hosts_are_probed_and_marked(ssh_fleet, fake_agent):
    hosts = ssh_fleet.inventory(["h1", "h2"], agent=fake_agent)
    from dataclasses import replace
    hosts[1] = replace(hosts[1], enabled=False)

    async def go():
        async with Fleet(hosts, ssh_fleet.settings()) as fleet:
            return await fleet.probe()

    a, b = run(go())
    assert a.enabled and a.reachable
    assert not b.enabled and b.reachable and b.cpus


def test_hung_host_does_not_delay_the_others(make_ssh_fleet, fake_agent):
    fleet_ = make_ssh_fleet(3)
    timeout = 1.5
    hosts = fleet_.inventory(agent=fake_agent)
    settings = fleet_.settings(connect_timeout=timeout)
    fleet_.freeze("h3")
    try:
        async def go():
            async with Fleet(hosts, settings) as fleet:
                started = time.monotonic()
                facts = await fleet.probe()
                return facts, time.monotonic() - started

        facts, elapsed = run(go())
    finally:
        fleet_.thaw("h3")
    by = {f.name: f for f in facts}
    assert by["h3"].error_kind == "timeout" and not by["h3"].reachable
    assert by["h1"].reachable and by["h2"].reachable
    assert by["h1"].probe_seconds < timeout and by["h2"].probe_seconds < timeout
    assert elapsed < timeout + MARGIN, elapsed


def test_fleet_opens_one_connection_per_host(ssh_fleet):
    hosts = ssh_fleet.inventory(["h1"])
    hosts.append(Host(name="dead", address="127.0.0.1", port=1, workspace_root="/tmp/x"))

    async def go():
        async with Fleet(hosts, ssh_fleet.settings()) as fleet:
            conns = await asyncio.gather(*(fleet.connection("h1") for _ in range(10)))
            errors = await asyncio.gather(*(fleet.connection("dead") for _ in range(5)),
                                          return_exceptions=True)
            again = await fleet.connection("h1")
            await fleet.forget("h1")
            fresh = await fleet.connection("h1")
            return conns, errors, again, fresh

    conns, errors, again, fresh = run(go())
    assert all(c is conns[0] for c in conns) and again is conns[0]
    assert fresh is not conns[0]
    assert all(isinstance(e, HostUnreachable) and e.reason == "refused" for e in errors)
    assert len({id(e) for e in errors}) == 1  # one shared attempt, one failure


# -- host keys -------------------------------------------------------------------------

def test_unknown_host_key_is_refused(ssh_fleet, tmp_path):
    kh = ssh_fleet.write_known_hosts(tmp_path / "known_hosts", names=["h1"])
    settings = ssh_fleet.settings(known_hosts=str(kh))
    host = ssh_fleet.inventory(["h2"])[0]
    exc, _ = _reason(_open(host, settings))
    assert exc.reason == "hostkey-unknown"
    h2 = ssh_fleet.host("h2")
    assert f"host key for [{h2.address}]:{h2.port} is not in known_hosts {kh}" in exc.detail
    assert "orch trust h2" in exc.hint and f"ssh-keyscan -p {h2.port} {h2.address}" in exc.hint
    # h1 is listed: it works with the same file.
    run(_open_and_close(ssh_fleet.inventory(["h1"])[0], settings))


async def _open_and_close(host, settings):
    conn = await _open(host, settings)
    assert (await conn.run("echo ok")).stdout == "ok\n"
    await conn.close()


def test_missing_known_hosts_file_refuses_everything(ssh_fleet, tmp_path):
    settings = ssh_fleet.settings(known_hosts=str(tmp_path / "nope" / "known_hosts"))
    exc, _ = _reason(_open(ssh_fleet.inventory(["h1"])[0], settings))
    assert exc.reason == "hostkey-unknown"


def test_changed_host_key_is_refused(ssh_fleet, tmp_path):
    kh = ssh_fleet.write_known_hosts(tmp_path / "known_hosts", keys_from={"h2": "h1"})
    settings = ssh_fleet.settings(known_hosts=str(kh))
    exc, _ = _reason(_open(ssh_fleet.inventory(["h2"])[0], settings))
    assert exc.reason == "hostkey-changed"
    assert "CHANGED" in exc.detail and "orch trust --replace h2" in exc.hint


# -- failures to connect ---------------------------------------------------------------

def test_silent_port_times_out_within_connect_timeout():
    """A socket that listens but never speaks: TCP connects, the SSH banner never comes."""
    from orchestrator.config.settings import SSHSettings
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        port = srv.getsockname()[1]
        host = Host(name="silent", address="127.0.0.1", port=port)
        ssh = SSHSettings(known_hosts="/dev/null", config=None, connect_timeout=1.0)
        exc, elapsed = _reason(SSHConnection.open(host, ssh))
    assert exc.reason == "timeout", exc
    assert 0.9 <= elapsed < 1.0 + MARGIN, elapsed


def test_frozen_host_times_out(make_ssh_fleet):
    fleet_ = make_ssh_fleet(1)
    fleet_.freeze("h1")
    try:
        exc, elapsed = _reason(_open(fleet_.inventory()[0], fleet_.settings(connect_timeout=1.0)))
    finally:
        fleet_.thaw("h1")
    assert exc.reason == "timeout" and elapsed < 1.0 + MARGIN


def test_refused_port(ssh_fleet):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = Host(name="closed", address="127.0.0.1", port=port)
    exc, elapsed = _reason(_open(host, ssh_fleet.settings()))
    assert exc.reason == "refused" and elapsed < 2


def test_unknown_name_is_dns(ssh_fleet):
    host = Host(name="ghost", address="no-such-host.invalid", port=22)
    exc, _ = _reason(_open(host, ssh_fleet.settings(config=None, connect_timeout=3)))
    # .invalid never resolves; a resolver without network may only time out.
    assert exc.reason in ("dns", "timeout"), exc


def test_wrong_client_key_is_auth(ssh_fleet, tmp_path):
    import subprocess
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    settings = ssh_fleet.settings(client_keys=[str(key)], config=None)
    exc, _ = _reason(_open(ssh_fleet.inventory(["h1"])[0], settings))
    assert exc.reason == "auth"
    missing = ssh_fleet.settings(client_keys=[str(tmp_path / "nope")])
    exc, _ = _reason(_open(ssh_fleet.inventory(["h1"])[0], missing))
    assert exc.reason == "auth" and "does not exist" in exc.detail


def test_ssh_config_alias(ssh_fleet):
    """Address = alias only; HostName/Port/User/IdentityFile come from the ssh config."""
    host = ssh_fleet.inventory(["h3"], via_alias=True)[0]
    assert host.address == "h3" and host.port is None and host.user is None
    settings = ssh_fleet.settings(client_keys=[])

    async def go():
        conn = await _open(host, settings)
        try:
            return await conn.run("id -un; echo $SSH_CONNECTION")
        finally:
            await conn.close()

    result = run(go())
    user, ssh_connection = result.stdout.splitlines()
    h3 = ssh_fleet.host("h3")
    assert user == ssh_fleet.user
    assert ssh_connection.split()[2:] == [h3.address, str(h3.port)]
    # Without the config, the alias means nothing.
    exc, _ = _reason(_open(host, ssh_fleet.settings(config=None, connect_timeout=3)))
    assert exc.reason in ("dns", "timeout")


# -- sessions --------------------------------------------------------------------------

def _with_conn(fleet_, name, body, **ssh):
    async def go():
        conn = await _open(fleet_.inventory([name])[0], fleet_.settings(**ssh))
        try:
            return await body(conn)
        finally:
            await conn.close()
    return run(go())


def test_run_keeps_exit_status_stdout_stderr(ssh_fleet):
    async def body(conn):
        return (await conn.run("echo out; echo err >&2; exit 3"),
                await conn.run("kill -9 $$"),
                await conn.run("cat", input=""))

    r, killed, empty = _with_conn(ssh_fleet, "h1", body)
    assert (r.exit_status, r.stdout, r.stderr) == (3, "out\n", "err\n") and not r.ok
    assert killed.exit_status == 128 + 9
    assert empty.ok and empty.stdout == ""


def test_run_stdin_is_byte_exact_and_closed(ssh_fleet):
    text = "quotes ' \" `cmd` $HOME \\ \n" * 10000 + "é€\n"  # ~280 KB

    async def body(conn):
        return (await conn.run("cat", input=text),
                await conn.run("cat; echo done"))  # no input: stdin is at EOF, no hang

    echoed, no_input = _with_conn(ssh_fleet, "h1", body)
    assert echoed.stdout == text
    assert no_input.stdout == "done\n"


def test_run_timeout(ssh_fleet):
    async def body(conn):
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.run("sleep 5", timeout=0.5)
        took = time.monotonic() - started
        return took, await conn.run("echo still usable")

    took, after = _with_conn(ssh_fleet, "h1", body)
    assert took < 0.5 + MARGIN and after.stdout == "still usable\n"


def test_stream_delivers_lines_before_the_command_ends(ssh_fleet, tmp_path):
    """Causal, not timed: the command waits until the test has seen its first line (the
    test then creates a file the command waits for), so "one" must arrive while the command
    still runs; a stream that held lines back until the end would see "gave up"."""
    go = tmp_path / "go"
    tmp_path.chmod(0o777)           # the host's login user creates nothing, but must see it

    async def body(conn):
        seen = []
        cmd = (f"echo one; i=0; while [ ! -e {shlex.quote(str(go))} ] && [ $i -lt 600 ]; "
               f"do sleep 0.05; i=$((i + 1)); done; "
               f"[ -e {shlex.quote(str(go))} ] || echo 'gave up'; echo two >&2; echo three")
        async for line in conn.stream(cmd):
            seen.append(line)
            if line == "one":
                go.touch()
        return seen

    assert _with_conn(ssh_fleet, "h2", body) == ["one", "two", "three"]


def test_stream_with_input(ssh_fleet):
    async def body(conn):
        return [line async for line in conn.stream("cat", input="a\nb\nc")]

    assert _with_conn(ssh_fleet, "h2", body) == ["a", "b", "c"]


def test_twenty_concurrent_commands_on_one_connection(ssh_fleet):
    async def body(conn):
        return await asyncio.gather(*(conn.run(f"sleep 0.3; echo {i}") for i in range(20)))

    results = _with_conn(ssh_fleet, "h4", body)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(20)]
    assert all(r.ok for r in results)


def test_without_the_semaphore_sshd_refuses_sessions(ssh_fleet):
    """The control experiment: sshd's MaxSessions 10 is why max_sessions exists."""
    async def body(conn):
        return await asyncio.gather(*(conn.run("sleep 1") for _ in range(14)),
                                    return_exceptions=True)

    results = _with_conn(ssh_fleet, "h4", body, max_sessions=14)
    failed = [r for r in results if isinstance(r, HostUnreachable)]
    assert failed and all(e.reason == "other" and "MaxSessions" in e.hint for e in failed)


def test_put_writes_atomically(ssh_fleet, tmp_path):
    target = tmp_path / "deep" / "dir" / "file.sh"

    async def body(conn):
        await conn.put(b"#!/bin/sh\necho hi\n", str(target), mode=0o700)
        await conn.put(b"second\n", str(target), mode=0o600)
        return await conn.run(f"ls -a {target.parent}")

    listing = _with_conn(ssh_fleet, "h5", body)
    assert target.read_bytes() == b"second\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert listing.stdout.split() == [".", "..", "file.sh"]  # no temporary left behind


# -- a link that drops -----------------------------------------------------------------

def test_dropped_link_during_stream_and_run(make_ssh_fleet):
    fleet_ = make_ssh_fleet(1)
    host = fleet_.inventory()[0]
    settings = fleet_.settings()

    async def go():
        conn = await _open(host, settings)
        lines = []
        with pytest.raises(HostUnreachable) as info:
            async for line in conn.stream("while :; do echo tick; sleep 0.1; done"):
                lines.append(line)
                if len(lines) == 3:
                    fleet_.stop("h1")  # kills the listener and this connection's sshd
        assert info.value.reason == "disconnected"
        with pytest.raises(HostUnreachable) as again:
            await conn.run("true")
        assert again.value.reason == "disconnected"
        await conn.close()

    run(go())
    fleet_.start("h1")

    async def during_run():
        conn = await _open(host, settings)
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, fleet_.stop, "h1")
        with pytest.raises(HostUnreachable) as info:
            await conn.run("sleep 10")
        assert info.value.reason == "disconnected"
        await conn.close()

    run(during_run())


def test_keepalive_detects_a_silent_cut(make_ssh_fleet):
    """A host that stops answering (SIGSTOP, like a pulled cable) is found out by
    keepalives within interval * (count_max + 1), not after a TCP timeout."""
    fleet_ = make_ssh_fleet(1)
    settings = fleet_.settings(keepalive_interval=0.5, keepalive_count_max=2)

    async def go():
        conn = await _open(fleet_.inventory()[0], settings)
        fleet_.freeze("h1")
        started = time.monotonic()
        try:
            with pytest.raises(HostUnreachable) as info:
                await conn.run("sleep 30")
        finally:
            fleet_.thaw("h1")
        await conn.close()
        return info.value, time.monotonic() - started

    exc, elapsed = run(go())
    assert exc.reason == "disconnected"
    assert elapsed < 0.5 * 3 + MARGIN, elapsed


def test_fixture_restart_keeps_key_and_port(make_ssh_fleet):
    fleet_ = make_ssh_fleet(1)
    before = (fleet_.host("h1").port, fleet_.host("h1").host_key_line)
    pid = fleet_.host("h1").pid
    fleet_.stop("h1")
    assert not fleet_.is_running("h1")
    fleet_.start("h1")
    assert (fleet_.host("h1").port, fleet_.host("h1").host_key_line) == before
    assert fleet_.host("h1").pid != pid
    run(_open_and_close(fleet_.inventory()[0], fleet_.settings()))
    assert os.path.exists(fleet_.known_hosts) and Path(fleet_.ssh_config).read_text()


def test_fleet_replaces_a_dropped_connection(make_ssh_fleet):
    fleet_ = make_ssh_fleet(1)

    async def go():
        async with Fleet(fleet_.inventory(), fleet_.settings()) as fleet:
            first = await fleet.connection("h1")
            fleet_.stop("h1")
            with pytest.raises(HostUnreachable):
                await first.run("true")
            fleet_.start("h1")
            second = await fleet.connection("h1")
            assert second is not first
            assert (await second.run("echo back")).stdout == "back\n"

    run(go())


def test_proxyjump_from_ssh_config(make_ssh_fleet, tmp_path):
    """`ProxyJump` in the ssh config: reach h2 through h1 (sshd allows TCP forwarding)."""
    fleet_ = make_ssh_fleet(2)
    h2 = fleet_.host("h2")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"""\
Host behind-h1
    HostName {h2.address}
    Port {h2.port}
    User {fleet_.user}
    IdentityFile {fleet_.client_key}
    ProxyJump h1

""" + fleet_.ssh_config.read_text())
    host = Host(name="jumped", address="behind-h1", workspace_root="/tmp/x")
    settings = fleet_.settings(config=str(cfg), client_keys=[], connect_timeout=3)

    async def go():
        conn = await _open(host, settings)
        try:
            return (await conn.run("echo $SSH_CONNECTION")).stdout.split()
        finally:
            await conn.close()

    _, _, server_addr, server_port = run(go())
    assert (server_addr, server_port) == (h2.address, str(h2.port))
    fleet_.stop("h1")  # the jump host is gone: h2 itself is fine, the hop is not
    run(_open_and_close(fleet_.inventory(["h2"])[0], fleet_.settings()))
    exc, _ = _reason(go())
    assert exc.reason == "refused"
