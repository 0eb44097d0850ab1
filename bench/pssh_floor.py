"""parallel-ssh (the library, libssh2) doing the fan-out: `cat /proc/loadavg` on every host.

    bench/.venv-pssh/bin/python bench/pssh_floor.py TARGETS.json   (asyncssh_floor's file)

parallel-ssh's clients have no known_hosts check: this row verifies no host key (the
others all do), which it is labelled with.
"""

import json
import sys

from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig


def main(path: str) -> int:
    with open(path) as fh:
        cfg = json.load(fh)
    hosts = [a for _n, a, _p in cfg["hosts"]]
    config = [HostConfig(port=p, user=cfg["user"], private_key=cfg["client_key"],
                         allow_agent=False, identity_auth=False) for _n, _a, p in cfg["hosts"]]
    client = ParallelSSHClient(hosts, host_config=config, pool_size=len(hosts), timeout=10,
                               num_retries=1)
    output = client.run_command("cat /proc/loadavg", stop_on_errors=False)
    client.join(output)
    failed = 0
    for (name, _a, _p), out in zip(cfg["hosts"], output, strict=False):
        if out.exception is not None:
            failed += 1
            print(f"{name} FAILED {out.exception!r}")
        else:
            print(name, " ".join(out.stdout))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
