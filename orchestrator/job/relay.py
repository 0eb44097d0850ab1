"""git.via: orch: git objects between orch's central mirror and a host's mirror, over the
host's own SSH connection, so that the host never talks to the forge.

Before a job, `send_base` brings the host's mirror (<workspace_root>/.mirrors/..., the one
the job clones from in either mode) up to the forge's branches: it asks the host which
commits its mirror has, sends a git bundle of only what it lacks on the job starter's
channel (stdin), and sets the branches and HEAD. The job then clones from that mirror
and pushes its branch back into it (playbooks/dispatch.yml, GIT_VIA=orch). After the job,
`bring_back` has the host bundle the branch against what orch already has, checks that
its tip is the commit the job's status names, stores it in the central mirror and
pushes it to the forge with orch's token (forge/mirror.py).

Why bundles on the existing channel, not `git push` over ssh or an `ext::` remote: the
connection is asyncssh's, inside orch (a second OpenSSH login per job would need its own
keys, known_hosts and ProxyJump handling, and the job's host login stays one
connection); a bundle is one file git writes and reads itself, incremental when built
against what the other side has, and needs nothing on the host but git and sh. Coming
back it travels base64-encoded, because a command's output reaches orch as text.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from ..config.settings import Settings
from ..core import shell
from ..errors import WorkError
from ..forge.mirror import CentralMirror, DeliveryRefused
from ..transport.base import Connection
from .playbook import mirror_path

_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# A branch ref the forge may hold, safe on an update-ref line and in a quoted heredoc:
# git's own rules forbid spaces and control characters; this refuses them again.
_REF = re.compile(r"refs/heads/[^\s\x00-\x1f\x7f~^:?*\[\\]+")
MAX_BUNDLE_BYTES = 512 * 1024 * 1024     # what a host may send back for one branch

__all__ = ["DeliveryRefused", "MAX_BUNDLE_BYTES", "bring_back", "mirrors", "send_base"]


def _lock(mirror_sh: str) -> str:
    """Take the host mirror's lock (the job's clone holds it too: one writer at a time)."""
    return (f"m={mirror_sh}\n"
            'exec 9> "$m.lock"\n'
            "if command -v flock > /dev/null 2>&1; then\n"
            '  flock -w 900 9 || { echo "orch: timed out waiting for the mirror lock" >&2; exit 7; }\n'
            "fi\n")


async def send_base(conn: Connection, central: CentralMirror, host_mirror: str, *,
                    branch: str, task_id: str) -> None:
    """Update the central mirror from the forge (noting where it has `branch`, the lease
    of task `task_id`'s push), then the host's mirror from it: two round trips, the
    second carrying only the objects the host lacks."""
    await central.update(branch, task_id)
    m = shell.path(host_mirror)
    ask = (f"m={m}\n"
           'mkdir -p "$(dirname "$m")" || exit 3\n'
           '[ -d "$m/objects" ] || git init --quiet --bare "$m" || exit 3\n'
           "git -C \"$m\" for-each-ref --format='%(objectname)'\n")
    have = await conn.run(ask)
    if not have.ok:
        raise WorkError(f"{conn.host.name}: cannot prepare the mirror {host_mirror}: "
                        f"{have.stderr.strip() or f'exit {have.exit_status}'}")
    heads, head, data = await central.bundle_for([w for w in have.stdout.split() if _SHA.fullmatch(w)])
    updates = "".join(f"update {ref} {sha}\n" for ref, sha in sorted(heads.items())
                      if _REF.fullmatch(ref) and _SHA.fullmatch(sha))
    script = _lock(m) + 'cd "$m" || exit 3\n'
    if data:
        script += ('t="$m/relay.$$.bundle"\n'
                   'cat > "$t" || { rm -f "$t"; exit 5; }\n'
                   'git bundle unbundle "$t" > /dev/null || { rm -f "$t"; exit 5; }\n'
                   'rm -f "$t"\n')
    if updates:
        script += f"git update-ref --stdin <<'ORCH_REFS' || exit 6\n{updates}ORCH_REFS\n"
    if head and _REF.fullmatch(head):
        script += f"git symbolic-ref HEAD {shell.quote(head)} || exit 6\n"
    done = await conn.run(script, input=data if data else None)
    if not done.ok:
        raise WorkError(f"{conn.host.name}: could not send {central.repo} to its mirror "
                        f"{host_mirror}: {done.stderr.strip() or f'exit {done.exit_status}'}")


async def bring_back(conn: Connection, central: CentralMirror, host_mirror: str,
                     branch: str, commit: str, *, task_id: str) -> None:
    """Fetch `branch` (the job pushed it into the host's mirror) at `commit` into the
    central mirror and push it to the forge, leased on where the forge had it when the
    job started (send_base). Idempotent: a branch the central mirror already holds at
    `commit` is not fetched again, nor pushed when the forge has it already."""
    if not _SHA.fullmatch(commit or "") or not _REF.fullmatch(f"refs/heads/{branch}"):
        raise DeliveryRefused(f"{conn.host.name}: no commit to bring back for {branch!r}")
    heads = await central.branches()
    if heads.get(f"refs/heads/{branch}") != commit:    # else: fetched by an earlier finalize
        known = sorted(set(heads.values()))
        not_lines = "".join(f"  {s}\n" for s in known if _SHA.fullmatch(s))
        script = (_lock(shell.path(host_mirror)) +
                  f"b={shell.quote('refs/heads/' + branch)}; want={shell.quote(commit)}\n"
                  'tip=$(git -C "$m" rev-parse -q --verify "$b^{commit}") '
                  '|| { echo "orch: the host mirror has no $b" >&2; exit 4; }\n'
                  '[ "$tip" = "$want" ] || { echo "orch: $b is at $tip, not $want" >&2; exit 4; }\n'
                  "{ echo \"$b\"\n"
                  "  while read -r s; do\n"
                  '    git -C "$m" cat-file -e "$s^{commit}" 2>/dev/null && echo "^$s"\n'
                  "  done <<'ORCH_KNOWN'\n"
                  f"{not_lines}ORCH_KNOWN\n"
                  '} | git -C "$m" bundle create --quiet - --stdin | base64 || exit 5\n')
        got = await conn.run(script)
        if not got.ok:
            # exit 4: the host's mirror has not the branch the job's status names
            kind = DeliveryRefused if got.exit_status == 4 else WorkError
            raise kind(f"{conn.host.name}: could not fetch {branch} back from "
                            f"{host_mirror}: {got.stderr.strip() or f'exit {got.exit_status}'}")
        if len(got.stdout) > MAX_BUNDLE_BYTES * 4 // 3 + 1024:
            raise DeliveryRefused(f"{conn.host.name}: the branch {branch} is over "
                            f"{MAX_BUNDLE_BYTES >> 20} MiB: not delivered")
        await central.take(base64.b64decode(got.stdout), branch, commit)
    await central.push(branch, task_id, commit)


def mirrors(state_dir: Path, settings: Settings, repo: str, workspace: str,
            clone_url: str) -> tuple[CentralMirror, str]:
    """The two ends for a task of `repo` in `workspace`: the central mirror under
    `state_dir` (fetched from `clone_url` with orch's token, github.token_env) and the
    host's mirror the job clones from (playbook.mirror_path)."""
    return (CentralMirror(state_dir, repo, clone_url, settings.github.token_env),
            mirror_path(workspace, clone_url))
