"""The floor of the fan-out benchmark: a bare asyncssh script, timed as a whole process.

It connects to every host at once (host keys verified against KNOWN_HOSTS, the client
key only), runs `cat /proc/loadavg` once per host, prints one line per host and exits.
Nothing else: no config file, no inventory, no ssh_config parsing, no probe script.
asyncssh's default algorithms, exactly as orch gets them.

    python bench/asyncssh_floor.py TARGETS.json

TARGETS.json: {"known_hosts": PATH, "client_key": PATH, "user": NAME,
               "hosts": [[NAME, ADDRESS, PORT], ...],
               "command": "sh -s", "inputs": {NAME: SCRIPT}}   (optional: the diagnostic
               "floor + orch's probe script", the same remote work as `orch hosts`)
Exit 1 if any host failed. With --kex, asyncssh's debug log (the negotiated algorithms) goes to stderr.
"""

import asyncio
import json
import sys

import asyncssh


async def one(name, address, port, cfg):
    async with asyncssh.connect(address, port, username=cfg["user"],
                                known_hosts=cfg["known_hosts"],
                                client_keys=[cfg["client_key"]], config=[],
                                connect_timeout=10) as conn:
        if "command" in cfg:
            result = await conn.run(cfg["command"], input=cfg["inputs"][name], check=True)
        else:
            result = await conn.run("cat /proc/loadavg", check=True)
        return f"{name} {result.stdout.strip()}"


async def main(cfg):
    results = await asyncio.gather(*(one(n, a, p, cfg) for n, a, p in cfg["hosts"]),
                                   return_exceptions=True)
    failed = 0
    for (name, _a, _p), r in zip(cfg["hosts"], results, strict=False):
        if isinstance(r, BaseException):
            failed += 1
            print(f"{name} FAILED {type(r).__name__}: {r}")
        else:
            print(r)
    return 1 if failed else 0


if __name__ == "__main__":
    if "--kex" in sys.argv[2:]:  # asyncssh logs the negotiated algorithms at debug level 2
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        asyncssh.set_log_level(logging.DEBUG)
        asyncssh.set_debug_level(2)
    with open(sys.argv[1]) as f:
        config = json.load(f)
    sys.exit(asyncio.run(main(config)))
