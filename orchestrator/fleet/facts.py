"""What a host looks like right now: one POSIX sh probe, one round trip, parsed into HostFacts.

Why one script: a cold probe is bound by round trips and key exchanges, so everything
(load, cpus, memory, disk, running orch tasks, agent version) comes back from a single
session. Why POSIX sh on stdin (`sh -s`): hosts promise sshd, coreutils and procps, not
python or bash, and the user's login shell (maybe fish or csh) only ever sees `sh -s`.

Running tasks follow docs/CONTRACTS.md: `<workspace_root>/*/status` with `state=running`
and a live process group. Note `kill -s 0 -- -PGID`: dash rejects `kill -0 -- -PGID`.

The parser is pure (`parse_probe`), so most tests need no SSH at all.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..config.settings import Settings
from ..core import agentpath, shell
from ..core.models import Host, HostFacts
from ..errors import HostUnreachable
from ..transport.base import Connection
from .agent_cache import Cached

BEGIN = "--orch-probe-v1--"
END = "--orch-probe-end--"
PROBE_COMMAND = "sh -s"
AGENT_VERSION_TIMEOUT = 8  # seconds, when the host has coreutils' `timeout`

_TASK_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_SCRIPT = r"""{
LC_ALL=C; export LC_ALL
ws=__WS__
cached=__CACHED_KEY__
nl='
'
__FIND_AGENT__
echo '__BEGIN__'
if [ -r /proc/loadavg ]; then
  read -r l1 _ < /proc/loadavg && echo "load1=$l1"
else
  l1=$(sysctl -n vm.loadavg 2>/dev/null | tr -d '{}' | awk '{print $1}')
  [ -n "$l1" ] && echo "load1=$l1"
fi
c=$(nproc 2>/dev/null)
[ -n "$c" ] || c=$(getconf _NPROCESSORS_ONLN 2>/dev/null \
    || grep -c '^processor' /proc/cpuinfo 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null)
echo "cpus=$c"
if [ -r /proc/meminfo ]; then
  while read -r k v rest; do
    case $k in
      MemTotal:) echo "mem_total_kb=$v" ;;
      MemAvailable:) echo "mem_available_kb=$v"; break ;;
    esac
  done < /proc/meminfo
else
  m=$(sysctl -n hw.memsize 2>/dev/null) && echo "mem_total_kb=$((m / 1024))"
fi
d=$ws
while [ ! -d "$d" ]; do
  p=$(dirname -- "$d"); [ "$p" = "$d" ] && break; d=$p
done
[ -d "$ws" ] && echo "workspace_exists=1" || echo "workspace_exists=0"
out=$(df -Pk -- "$d" 2>/dev/null)
case $out in
  *"$nl"*) set -f
           # shellcheck disable=SC2086  # split df's second line into its fields (no globbing)
           set -- ${out#*"$nl"}; set +f
           [ $# -ge 4 ] && echo "disk_free_kb=$4" ;;
esac
for s in "$ws"/*/status; do
  [ -f "$s" ] || continue
  state=; pgid=
  while IFS='=' read -r k v || [ -n "$k" ]; do
    case $k in state) state=$v ;; pgid) pgid=$v ;; esac
  done < "$s"
  [ "$state" = running ] || continue
  case $pgid in ''|*[!0-9]*) continue ;; esac
  t=${s%/status}; t=${t##*/}
  if kill -s 0 -- "-$pgid" 2>/dev/null; then echo "task=$t"; else echo "stale_task=$t"; fi
done
__AGENT_WORDS__
if orch_find_agent "$1"; then
  shift
  printf 'agent_path=%s\n' "$AGENT_PATH"
  printf 'agent_found_by=%s\n' "$AGENT_FOUND_BY"
  # What identifies the installed binary (symlinks followed: the native installer
  # updates by pointing ~/.local/bin/claude at a new file): --version only when it changed.
  k=$(stat -L -c '%s:%Y:%i' -- "$AGENT_PATH" 2>/dev/null) && k="$AGENT_PATH:$k" || k=
  printf 'agent_key=%s\n' "$k"
  if [ -n "$k" ] && [ "$k" = "$cached" ]; then
    echo "agent_cached=1"
  else
    if command -v timeout >/dev/null 2>&1; then
      v=$(timeout __AGENT_TIMEOUT__ "$AGENT_PATH" "$@" --version 2>&1 < /dev/null)
    else
      v=$("$AGENT_PATH" "$@" --version 2>&1 < /dev/null)
    fi
    echo "agent_rc=$?"
    printf 'agent_version=%s\n' "${v%%"$nl"*}"
  fi
else
  echo "agent_missing=1"
  printf 'agent_looked=%s\n' "$AGENT_LOOKED"
fi
echo '__END__'
} < /dev/null
"""


def agent_of(host: Host, settings: Settings) -> str:
    """The agent command in force for `host`: its own `agent:`, else agent.command."""
    return host.agent or settings.agent.command


def probe_script(host: Host, settings: Settings, cached_key: str | None = None) -> str:
    """The probe for one host; workspace_root, the agent's words and the cached key reach
    sh only quoted. `cached_key` is the agent_key of the last probe whose version orch
    still has (fleet/agent_cache.py): the same key means the same binary, no --version."""
    return (_SCRIPT.replace("__WS__", shell.path(host.workspace_root))
            .replace("__CACHED_KEY__", shell.quote(cached_key or ""))
            .replace("__FIND_AGENT__", agentpath.FIND_AGENT_SH)
            .replace("__AGENT_WORDS__", agentpath.set_words_sh(agent_of(host, settings)))
            .replace("__AGENT_TIMEOUT__", str(AGENT_VERSION_TIMEOUT))
            .replace("__BEGIN__", BEGIN).replace("__END__", END))


def _base(host: Host) -> HostFacts:
    return HostFacts(name=host.name, address=host.address, reachable=True,
                     specialties=list(host.specialties), max_tasks=host.max_tasks,
                     enabled=host.enabled)


def _int(value: str | None) -> int | None:
    try:
        return int(value.strip()) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value.strip().replace(",", ".")) if value is not None else None
    except ValueError:
        return None


def parse_probe(output: str, host: Host, agent: str = "claude") -> HostFacts:
    """Probe output -> HostFacts. Pure. Lines outside the markers (login noise) are
    ignored; a missing marker means the probe did not run (error_kind "probe")."""
    facts = _base(host)
    lines = output.splitlines()
    if BEGIN not in lines:
        first = next((ln for ln in lines if ln.strip()), "")
        facts.error_kind = "probe"
        facts.error = "the probe script did not run" + (f": {first[:200]}" if first else "")
        return facts
    body = lines[lines.index(BEGIN) + 1:]
    complete = END in body
    if complete:
        body = body[:body.index(END)]
    values: dict[str, str] = {}
    tasks: list[str] = []
    stale: list[str] = []
    for line in body:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "task":
            if _TASK_ID.match(value):
                tasks.append(value)
        elif key == "stale_task":
            if _TASK_ID.match(value):
                stale.append(value)
        else:
            values.setdefault(key, value)
    facts.load1 = _float(values.get("load1"))
    facts.cpus = _int(values.get("cpus")) or None
    kb = _int(values.get("mem_total_kb"))
    facts.mem_total_mb = kb // 1024 if kb is not None else None
    kb = _int(values.get("mem_available_kb"))
    facts.mem_available_mb = kb // 1024 if kb is not None else None
    kb = _int(values.get("disk_free_kb"))
    facts.disk_free_mb = kb // 1024 if kb is not None else None
    facts.running_task_ids = tasks
    facts.running_tasks = len(tasks)
    notes = facts.notes
    if values.get("workspace_exists") == "0":
        notes.append(f"workspace_root {host.workspace_root} does not exist yet")
    if stale:
        notes.append("status says running but the process group is gone: " + ", ".join(stale))
    if values.get("agent_missing") == "1":
        looked = values.get("agent_looked", "") or values.get("path", "")
        looked = looked if len(looked) <= 400 else looked[:397] + "..."
        notes.append(f"agent {agent!r} not found (looked in: {looked})")
    facts.agent_path = values.get("agent_path") or None
    facts.agent_key = values.get("agent_key") or None
    found_by = values.get("agent_found_by", "")
    if facts.agent_path and found_by not in ("", "path", "PATH"):
        notes.append(f"agent {agent!r} is {facts.agent_path} (not on the SSH session's PATH; "
                     f"found in {'npm prefix -g' if found_by == 'npm' else found_by})")
    if values.get("agent_cached") == "1":
        facts.agent_version_cached = True    # the caller fills in the version it has
    elif "agent_rc" in values:
        rc = _int(values["agent_rc"])
        text = values.get("agent_version", "").strip()
        if rc == 0 and text:
            facts.agent_version = text
        elif rc == 124:
            notes.append(f"`{agent} --version` did not answer within {AGENT_VERSION_TIMEOUT}s")
        else:
            notes.append(f"`{agent} --version` failed (exit {rc}): {text[:200]}")
    if not complete:
        facts.error_kind = "probe"
        facts.error = "the probe script stopped before its end"
    return facts


# docs/SPEC.md fixes these keys (in this order); the rest of HostFacts follows as extras.
# The shape lives here, not in render/, so that `orch hosts --json` never imports rich.
JSON_KEYS = ("name", "address", "reachable", "specialties", "load1", "cpus",
             "running_tasks", "max_tasks", "agent_version", "error")


def hosts_json(facts: list[HostFacts]) -> list[dict[str, Any]]:
    """`orch hosts --json`: one object per host, docs/SPEC.md's keys first."""
    out = []
    for f in facts:
        data = f.to_json()
        row = {k: data.pop(k) for k in JSON_KEYS}
        row.update(data)
        out.append(row)
    return out


def unreachable(host: Host, exc: HostUnreachable, seconds: float | None = None) -> HostFacts:
    """HostFacts for a host that could not be reached."""
    facts = _base(host)
    facts.reachable = False
    facts.error_kind = exc.reason
    facts.error = exc.detail + (f" (hint: {exc.hint})" if exc.hint else "")
    facts.probe_seconds = seconds
    return facts


async def probe(conn: Connection, host: Host, settings: Settings, *,
                timeout: float | None = None, cached: Cached | None = None) -> HostFacts:
    """Run the probe on an open connection. HostUnreachable propagates (the link
    dropped); a probe that fails or outlasts `timeout` is reported in the facts.

    `cached`: what the version cache has for this host (fleet/agent_cache.py); when the
    host's agent binary is unchanged its version is taken from there, no --version run.
    """
    started = time.monotonic()
    try:
        result = await conn.run(PROBE_COMMAND, timeout=timeout,
                                input=probe_script(host, settings, cached.key if cached else None))
    except TimeoutError:
        facts = _base(host)
        facts.error_kind = "probe"
        facts.error = f"the probe did not finish within {timeout:g}s"
        facts.probe_seconds = time.monotonic() - started
        return facts
    facts = parse_probe(result.stdout, host, agent_of(host, settings))
    if facts.agent_version_cached:
        if cached is not None and facts.agent_key == cached.key:
            facts.agent_version = cached.version
        else:   # cannot happen unless the host echoes a key it was not given
            facts.agent_version_cached = False
            facts.notes.append("the agent's version is not known (the probe skipped --version)")
    if facts.error and result.stderr.strip():
        facts.error += f" (exit {result.exit_status}: {result.stderr.strip()[:300]})"
    facts.probe_seconds = time.monotonic() - started
    return facts
