"""Fleet.probe_one over a connection kept open: a host that hangs after the connection was
made (its sshd frozen) is reported within the probe's timeout. The channel open itself
never completes on such a link, so the bound must cover it, not only the command."""

from __future__ import annotations

import asyncio
import time

from orchestrator.fleet.pool import Fleet

TIMEOUT = 2.0
MARGIN = 2.0     # an upper bound for a loaded machine, not a speed claim


def test_probe_of_a_host_that_hangs_on_a_kept_link_ends_within_its_timeout(make_ssh_fleet):
    ssh = make_ssh_fleet(2)
    # No keepalive: only the probe's own bound can end the wait.
    settings = ssh.settings(connect_timeout=5, keepalive_interval=0)

    async def go():
        async with Fleet(ssh.inventory(), settings) as fleet:
            assert all(f.reachable for f in await fleet.probe())
            ssh.freeze("h1")
            try:
                began = time.monotonic()
                hung, ok = await asyncio.wait_for(asyncio.gather(
                    fleet.probe_one("h1", timeout=TIMEOUT), fleet.probe_one("h2", timeout=TIMEOUT)),
                    30)
                return hung, ok, time.monotonic() - began
            finally:
                ssh.thaw("h1")

    hung, ok, took = asyncio.run(go())
    assert ok.reachable and not ok.error
    assert not hung.reachable and hung.error_kind == "timeout", hung
    assert f"within {TIMEOUT:g}s" in (hung.error or "")
    assert took <= TIMEOUT + MARGIN, took
