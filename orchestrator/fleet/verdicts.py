"""bootstrap.json: each host's last `orch bootstrap` verdict, read by the scheduler.

Its own module so that a dispatch, which only asks which hosts failed (`failed_hosts`),
does not import the bootstrap runner and its checks (fleet/bootstrap.py writes the file,
under its lock, with `record_reports`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError

STATE_FILE = "bootstrap.json"


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path) -> dict[str, Any]:
    path = state_path(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"version": 1, "hosts": {}}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("hosts"), dict):
            raise ValueError("no `hosts` mapping")
    except ValueError as exc:
        raise UsageError(f"{path}: corrupted bootstrap state ({exc})",
                         hint=f"remove {path} and run `orch bootstrap` again") from None
    return data


def load_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    """host -> its last recorded bootstrap entry (for `orch hosts`, metrics, tests)."""
    return dict(read_state(Path(state_dir))["hosts"])


def failed_hosts(state_dir: Path) -> dict[str, str]:
    """host -> "bootstrap failed: <check>: <detail>" for hosts whose LAST bootstrap
    failed. Hosts never bootstrapped (or only ever unreachable) are not listed."""
    out: dict[str, str] = {}
    for name, entry in load_state(state_dir).items():
        if entry.get("ok") is not False:
            continue
        failed = entry.get("failed") or []
        if failed:
            first = failed[0]
            reason = f"bootstrap failed: {first.get('name')}: {first.get('detail') or 'failed'}"
            if len(failed) > 1:
                reason += f" (and {len(failed) - 1} more)"
        else:
            reason = f"bootstrap failed: {entry.get('error') or 'see `orch bootstrap ' + name + '`'}"
        out[name] = reason
    return out
