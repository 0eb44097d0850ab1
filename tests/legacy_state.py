"""A state.json as the previous orch version kept it: every task in the TinyDB file.

    python -m tests.legacy_state STATE_DIR 20000      # what bench/store.py runs

N finished, reported (finalized) tasks spread over the year before now, cloned from the
records in tests/data/state-legacy.json.gz (written by orch before the archive existed),
with fresh ids, issues spread over 5 repositories (a few tasks per issue), and their
timestamps moved. The file is written in that version's exact format (TinyDB tables,
`json.dumps(indent=1, sort_keys=True, ensure_ascii=False)`, mode 0600), so the first orch
command on it performs the real migration. Deterministic for a given N and `--seed`.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

LEGACY = Path(__file__).resolve().parent / "data" / "state-legacy.json.gz"
REPOS = ("octo/app", "octo/api", "octo/web", "octo/infra", "octo/docs")


def legacy_records() -> list[dict]:
    """Every record of the legacy file, in record order (live, lost and unreported too)."""
    data = json.loads(gzip.decompress(LEGACY.read_bytes()))
    return [data["tasks"][k] for k in sorted(data["tasks"], key=int)]


def templates() -> list[dict]:
    """The finished, finalized records of the legacy file: what a year is made of."""
    return [t for t in legacy_records()
            if t["status"] in ("succeeded", "failed", "cancelled") and t["finalized"]]


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def finished_tasks(n: int, seed: int = 1, now: datetime | None = None) -> list[dict]:
    """N task records, oldest first, finished over the 365 days before `now`."""
    rnd = random.Random(seed)
    now = now or datetime.now(UTC)
    pool = templates()
    ids: set[str] = set()
    out = []
    for k in range(n):
        t = copy.deepcopy(pool[k % len(pool)])
        while True:
            tid = f"{rnd.getrandbits(32):08x}"
            if tid not in ids:
                ids.add(tid)
                break
        finished = now - timedelta(days=365) * (1 - k / max(1, n)) - timedelta(hours=1)
        started = finished - timedelta(seconds=rnd.randint(60, 3600))
        created = started - timedelta(seconds=rnd.randint(1, 30))
        t.update(id=tid, repo=REPOS[k % len(REPOS)], issue=1 + (k // len(REPOS)) // 3,
                 created_at=_iso(created), started_at=_iso(started), finished_at=_iso(finished),
                 workspace=f"~/orch-work/{tid}", log_path=f"/state/logs/{tid}.log")
        stamps = [created, started] + [finished] * max(0, len(t["history"]) - 2)
        for entry, at in zip(t["history"], stamps, strict=False):
            entry["at"] = _iso(at)
        out.append(t)
    return out


def year_of_state(n: int, seed: int = 1) -> list[dict]:
    """N finished tasks of a year, then every record of the legacy file as it was written
    (a live task, a lost one, tasks not yet reported, ...): a whole previous-version state."""
    real = legacy_records()
    taken = {t["id"] for t in real}
    return [t for t in finished_tasks(n, seed) if t["id"] not in taken] + real


def write_legacy(state_dir: Path, tasks: list[dict]) -> Path:
    """state_dir/state.json holding `tasks`, as the previous version wrote it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "state.json"
    text = json.dumps({"tasks": {str(i): t for i, t in enumerate(tasks, 1)}},
                      indent=1, sort_keys=True, ensure_ascii=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_dir", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    path = write_legacy(a.state_dir, finished_tasks(a.n, a.seed))
    print(f"{path}: {a.n} finished tasks, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
