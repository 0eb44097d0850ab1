"""The local forge: Markdown issues in, JSON "pull requests" out, all on this machine.

Why: the embedded default (`orch demo`, a first try without GitHub) needs the whole
pipeline - intake, permission check, PR, comment, labels - with nothing but files.

Layout under `state_dir`::

    issues/*.md                    the issues (written by you, or by create_issue/register)
    pulls/<repo>-<branch>.json     one "pull request" record per (repo, head branch)
    forge/<repo>-<number>.json     what orch did on an issue: comments and label changes

An issue file is Markdown with YAML front matter; the body is the Markdown after it::

    ---
    title: Add a /health endpoint     # required
    labels: [orch, backend]           # optional, a list or one string
    author: alice                     # optional; default: the local user
    number: 7                         # optional; see below
    repo: ../app                      # optional; a path (relative to this file) or URL
    state: open                       # optional: open | closed
    created_at: 2024-05-01T10:00:00Z  # optional; default: the file's modification time
    ---
    The body, as the agent will read it.

A file without front matter is accepted when its first line is a "# Title" heading.

The issue number is, in order: front matter `number`; the leading digits of the file name
(`12-add-health.md` -> 12); else a stable number derived from the file name alone
(CRC-32 of the name, folded into 100000..999999), so it survives edits and restarts.
An issue without `repo:` belongs to whichever repository it is asked for (handy when
there is just one); two issue files of one repository may not share a number.

A repository is a local git repository path (kept absolute) or a git URL; its clone URL
is itself. The local user owns everything, so every author is "admin", and the labels of
an issue file were put there by its author. The only comments are orch's own (they never
reach the prompt). A "pull request"
is a JSON record (title, body, branch, base, commit, repo) and its URL is the file://
URI of that record. Malformed front matter is a ConfigError naming the file and line.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from ..atomic import replace_file
from ..config.settings import PullRequestSettings
from ..core.models import Comment, Issue, IssueEvent, PullRequest, Remark
from ..core.shell import slug
from ..errors import ConfigError, UsageError, WorkError
from ..private import FILE_MODE, private_dir
from .base import COMMENTS_SCANNED, IssueNotFound, head_branch

KEYS = ("title", "labels", "author", "number", "repo", "state", "created_at")
ORCH_LOGIN = "orch"            # the author of the comments orch writes here
_URLISH = re.compile(r"^[a-z][a-z0-9+.-]*://|^[^/\s]+@[^/\s]+:")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "local"


def normalize_repo(repo: str, base: Path | None = None) -> str:
    """A git URL unchanged; a path made absolute (relative to `base`, else the cwd)."""
    text = str(repo).strip()
    if not text:
        raise UsageError("empty repository", hint="give a local git repository path or a git URL")
    if _URLISH.match(text):
        return text
    p = Path(text).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p.resolve())


def repo_key(repo: str) -> str:
    """A file-name-safe, collision-free key for a repository: <basename>-<hash8>."""
    name = slug(re.sub(r"\.git$", "", repo.rstrip("/").rsplit("/", 1)[-1]), 24)
    return f"{name}-{hashlib.sha1(repo.encode()).hexdigest()[:8]}"


def derived_number(file_name: str) -> int:
    """The stable number of an issue file that names none (see the module docstring)."""
    m = re.match(r"(\d+)", file_name)
    if m and int(m.group(1)) > 0:
        return int(m.group(1))
    return 100000 + zlib.crc32(file_name.encode()) % 900000


@dataclass(frozen=True)
class IssueFile:
    """One parsed issue file; `repo` is normalized, None when the file names none."""

    path: Path
    title: str
    body: str
    labels: tuple[str, ...]
    author: str
    number: int
    repo: str | None
    state: str
    created_at: str
    numbered: bool = True    # False: the number was derived from the file name's CRC


def parse_issue_file(path: str | Path) -> IssueFile:
    """Read an issue file; malformed front matter is a ConfigError with file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the issue file: {exc}") from exc
    lines = text.splitlines(keepends=True)
    data: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    if lines and lines[0].rstrip("\r\n") == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r\n") in ("---", "...")),
                   None)
        if end is None:
            raise ConfigError(str(path), "front matter opened with --- is never closed", line=1,
                              hint="end the front matter with a line holding only ---")
        data, key_lines = _load_front_matter(path, "".join(lines[1:end]))
        body = "".join(lines[end + 1:])
    else:
        first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
        if first is None or not lines[first].startswith("# "):
            raise ConfigError(str(path), "no front matter and no '# Title' first line", line=1,
                              hint="start the file with ---, title: ..., ---")
        data = {"title": lines[first][2:].strip()}
        key_lines = {"title": first + 1}
        body = "".join(lines[first + 1:])

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(str(path), msg, line=key_lines.get(key, 1), key=key)

    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise bad(str(unknown[0]), f"unknown key (known: {', '.join(KEYS)})")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise bad("title", "a non-empty title is required")
    labels = data.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or not all(isinstance(x, (str, int)) and str(x).strip()
                                               for x in labels):
        raise bad("labels", "expected a list of label names")
    author = data.get("author") or _local_user()
    if not isinstance(author, str):
        raise bad("author", "expected a user name")
    number = data.get("number")
    numbered = number is not None or bool(re.match(r"0*[1-9]", path.name))
    if number is None:
        number = derived_number(path.name)
    elif isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise bad("number", f"expected a positive integer, got {number!r}")
    repo = data.get("repo")
    if repo is not None:
        if not isinstance(repo, str) or not repo.strip():
            raise bad("repo", "expected a repository path or URL")
        repo = normalize_repo(repo, base=path.parent.resolve())
    state = data.get("state") or "open"
    if state not in ("open", "closed"):
        raise bad("state", f"expected open or closed, got {state!r}")
    created = data.get("created_at")
    if created is None:
        created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    if isinstance(created, date) and not isinstance(created, datetime):
        created = datetime(created.year, created.month, created.day, tzinfo=UTC)
    if isinstance(created, datetime):
        created = (created if created.tzinfo else created.replace(tzinfo=UTC)) \
            .astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return IssueFile(path=path.resolve(), title=title.strip(), body=body.strip("\n"),
                     labels=tuple(dict.fromkeys(str(x).strip() for x in labels)),
                     author=author, number=number, repo=repo, state=state,
                     created_at=str(created), numbered=numbered)


def _load_front_matter(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    """YAML front matter -> (mapping, key -> file line). Front matter starts on line 2."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), f"bad front matter: {problem}",
                          line=(mark.line + 2) if mark is not None else 2) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(str(path), "front matter must be a mapping (key: value lines)", line=2)
    lines = {str(k.value): k.start_mark.line + 2 for k, _ in node.value}
    return {str(k): v for k, v in data.items()}, lines


def _write_json(path: Path, data: Any) -> None:
    """Atomic replace: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=FILE_MODE)


def _write_text(path: Path, text: str) -> None:
    """An issue file, replaced atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text, mode=FILE_MODE)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ConfigError(str(path), f"not valid JSON ({exc})",
                          hint="orch wrote this file; remove it to start over") from None


def _git(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


class LocalForge:
    """The Forge protocol on files under `state_dir` (see the module docstring)."""

    kind = "local"

    def __init__(self, state_dir: str | Path, issues_dir: str | Path | None = None,
                 pr: PullRequestSettings | None = None) -> None:
        self.pr = pr or PullRequestSettings()
        self.state_dir = Path(state_dir).expanduser()
        self.issues_dir = Path(issues_dir).expanduser() if issues_dir else self.state_dir / "issues"
        self.pulls_dir = self.state_dir / "pulls"
        self.activity_dir = self.state_dir / "forge"
        private_dir(self.state_dir)
        self._lock = FileLock(str(self.state_dir / "forge.lock"), timeout=30, mode=FILE_MODE)

    def __repr__(self) -> str:
        return f"LocalForge({str(self.state_dir)!r})"

    # -- issues ------------------------------------------------------------------------

    def _files(self) -> Iterator[IssueFile]:
        if self.issues_dir.is_dir():
            for p in sorted(self.issues_dir.glob("*.md")):
                yield parse_issue_file(p)

    def _issue_files(self, repo: str) -> dict[int, IssueFile]:
        """The issue files of `repo` by number; two files with one number is an error."""
        found: dict[int, IssueFile] = {}
        for f in self._files():
            if f.repo is not None and f.repo != repo:
                continue
            if f.number in found:
                raise ConfigError(str(f.path), f"issue number {f.number} is already used by "
                                  f"{found[f.number].path}", key="number",
                                  hint="give one of them another `number:` in its front matter")
            found[f.number] = f
        return found

    def _check_repo(self, repo: str) -> str:
        norm = normalize_repo(repo)
        if not _URLISH.match(norm) and not Path(norm).is_dir():
            raise IssueNotFound(f"repository {norm} not found (no such directory)",
                             hint="give the path of a local git repository, or a git URL")
        return norm

    def _to_issue(self, repo: str, f: IssueFile, with_comments: bool) -> Issue:
        act = self.activity(repo, f.number)
        labels = [x for x in f.labels if x not in act["labels_removed"]]
        labels += [x for x in act["labels_added"] if x not in labels]
        comments = tuple(Comment(body=c["body"], author=ORCH_LOGIN,
                                 created_at=str(c.get("created_at") or ""))
                         for c in act["comments"][-COMMENTS_SCANNED:]) if with_comments else ()
        events = tuple(IssueEvent("labeled", f.author, f.created_at, x) for x in f.labels)
        return Issue(repo=repo, number=f.number, title=f.title, body=f.body,
                     labels=tuple(labels), author=f.author, state=f.state,
                     is_pull_request=False, clone_url=repo, comments=comments,
                     created_at=f.created_at, url=f.path.as_uri(), events=events)

    def get_issue(self, repo: str, number: int) -> Issue:
        repo = self._check_repo(repo)
        f = self._issue_files(repo).get(int(number))
        if f is None:
            raise IssueNotFound(f"no local issue #{number} for {repo} in {self.issues_dir}",
                             hint="write it as a Markdown file there (front matter: title, "
                                  "labels, number), or dispatch the file with --repo")
        return self._to_issue(repo, f, with_comments=True)

    def author_permission(self, repo: str, login: str) -> str:
        return "admin"                       # the local user owns the local repositories

    def login(self) -> str:
        return ORCH_LOGIN

    def list_open_issues(self, repo: str, label: str) -> list[Issue]:
        repo = self._check_repo(repo)
        issues = [self._to_issue(repo, f, with_comments=False)
                  for f in self._issue_files(repo).values() if f.state == "open"]
        return sorted((i for i in issues if label in i.labels),
                      key=lambda i: (i.created_at, i.number))

    def create_issue(self, repo: str, title: str, body: str = "", *, labels: list[str] | tuple = (),
                     author: str | None = None) -> Issue:
        """Write a new issue file (next free number) and return the issue."""
        repo = self._check_repo(repo)
        with self._lock:
            used = {f.number for f in self._files()}
            number = max([0, *(n for n in used if n < 100000)]) + 1
            path = self.issues_dir / f"{number:04d}-{slug(title, 40)}.md"
            front = {"title": title, "labels": list(labels), "author": author or _local_user(),
                     "number": number, "repo": repo, "created_at": _now()}
            _write_text(path, "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
                        + "---\n" + body.rstrip("\n") + "\n")
        return self.get_issue(repo, number)

    def register(self, ref: str | Path, repo: str | None = None) -> tuple[str, int]:
        """What `orch dispatch` is given -> (repo, number) that get_issue will find.

        - a Markdown file: parsed (errors name its line), then copied into issues_dir (with
          its repo and number written into the front matter) unless it lives there already;
          `repo` wins over the file's `repo:`, one of the two is required;
        - "PATH#N": an issue already in issues_dir; a bare "N" with `repo`.
        """
        text = str(ref)
        p = Path(text).expanduser()
        if p.is_file():
            f = parse_issue_file(p)
            target = self._check_repo(repo) if repo else f.repo
            if target is None:
                raise UsageError(f"{p}: which repository is this issue for?",
                                 hint="pass --repo PATH, or add `repo:` to its front matter")
            target = self._check_repo(target)
            number = f.number
            if p.resolve().parent != self.issues_dir.resolve() or f.repo != target:
                number = self._import(f, target)
            self.get_issue(target, number)             # fails loudly on a number clash
            return target, number
        m = re.fullmatch(r"(?:(.+)#)?(\d+)", text.strip())
        if m and (m.group(1) or repo) and int(m.group(2)) > 0:
            target = self._check_repo(m.group(1) or repo or "")
            self.get_issue(target, int(m.group(2)))
            return target, int(m.group(2))
        raise UsageError(f"{text!r} is not a local issue",
                         hint="give a Markdown issue file (with --repo PATH), or PATH#N")

    def _import(self, f: IssueFile, repo: str) -> int:
        """Copy an issue file into issues_dir, pinning its repo and number; returns the number.

        Importing the same issue again (same title and body) replaces the earlier copy and
        keeps its number. Otherwise the file's own number is kept when it has one and it is
        free; else (no number, or taken) the issue gets the next free number.
        """
        with self._lock:
            taken = {g.number: g for g in self._files()
                     if (g.repo is None or g.repo == repo) and g.path != f.path}
            same = next((g for g in taken.values() if (g.title, g.body) == (f.title, f.body)),
                        None)
            if same is not None:
                number = same.number
                same.path.unlink(missing_ok=True)
            elif f.numbered and f.number not in taken:
                number = f.number
            else:
                number = max([0, *(n for n in taken if n < 100000)]) + 1
            front = {"title": f.title, "labels": list(f.labels), "author": f.author,
                     "number": number, "repo": repo, "state": f.state,
                     "created_at": f.created_at}
            dest = self.issues_dir / f"{number:04d}-{slug(f.title, 40)}.md"
            if dest.exists() and dest.resolve() != f.path:
                # Another repository's issue with this number and title: never overwrite it.
                digest = hashlib.sha1(repo.encode()).hexdigest()[:8]
                dest = dest.with_name(f"{number:04d}-{slug(f.title, 40)}-{digest}.md")
            _write_text(dest, "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
                        + "---\n" + f.body + "\n")
            if f.path.parent == self.issues_dir.resolve() and f.path != dest.resolve():
                f.path.unlink(missing_ok=True)      # re-pinned in place under a new name
        return number

    # -- repositories ------------------------------------------------------------------

    def clone_url(self, repo: str) -> str:
        return self._check_repo(repo)

    def default_branch(self, repo: str) -> str:
        """What HEAD points to in the repository (bare or not), else "main"."""
        repo = self._check_repo(repo)
        try:
            out = _git(["ls-remote", "--symref", repo, "HEAD"])
        except (OSError, subprocess.TimeoutExpired):
            return "main"
        m = re.search(r"^ref: refs/heads/(\S+)\s+HEAD$", out.stdout, re.M)
        return m.group(1) if m else "main"

    def _commit(self, repo: str, branch: str) -> str | None:
        try:
            out = _git(["ls-remote", repo, f"refs/heads/{branch}"])
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkError(f"cannot read {repo}: {exc}") from exc
        if out.returncode != 0:
            detail = (out.stderr.strip().splitlines() or [f"git exited {out.returncode}"])[-1]
            raise WorkError(f"cannot read {repo}: {detail}")
        line = out.stdout.strip().splitlines()
        return line[0].split()[0] if line else None

    # -- pull requests -----------------------------------------------------------------

    def _pull_path(self, repo: str, branch: str) -> Path:
        digest = hashlib.sha1(branch.encode()).hexdigest()[:8]
        return self.pulls_dir / f"{repo_key(repo)}-{slug(branch, 40)}-{digest}.json"

    def find_pull_request(self, repo: str, head: str) -> str | None:
        path = self._pull_path(self._check_repo(repo), head_branch(head))
        return path.resolve().as_uri() if path.is_file() else None

    def pull_request(self, repo: str, head: str) -> dict[str, Any] | None:
        """The record behind a local PR URL (for `orch show` and tests)."""
        data = _read_json(self._pull_path(self._check_repo(repo), head_branch(head)))
        return data if isinstance(data, dict) else None

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        """Record the PR; like GitHub, the branch must exist in the repository. pr.* (draft,
        reviewers, labels) is recorded with it: nobody reviews here."""
        repo = self._check_repo(repo)
        branch = head_branch(head)
        path = self._pull_path(repo, branch)
        with self._lock:
            if path.is_file():
                return path.resolve().as_uri()
            commit = self._commit(repo, branch)
            if commit is None:
                raise WorkError(f"cannot open a pull request: branch {branch} is not in {repo}",
                                hint="the job pushes it before the PR is opened; was the push lost?")
            url = path.resolve().as_uri()
            _write_json(path, {"repo": repo, "branch": branch, "base": base, "title": title,
                               "body": body, "commit": commit, "created_at": _now(),
                               "state": "open", "url": url, "draft": self.pr.draft,
                               "reviewers": list(self.pr.reviewers),
                               "labels": list(self.pr.labels)})
        return url

    # -- the conversation: none here -------------------------------------------------------
    # Local issues are Markdown files and local "pull requests" JSON records: nobody comments
    # on them, so a command scan finds nothing and a follow-up cannot be asked for here.

    def remarks_since(self, repo: str, since: str) -> list[Remark]:
        return []

    def open_pulls(self, repo: str) -> list[PullRequest]:
        return []

    def _no_conversation(self) -> UsageError:
        return UsageError("the local forge has no pull request conversations (reviews, "
                          "comments, follow-ups)",
                          hint="follow-ups and @orch commands need a GitHub repository")

    def get_pull(self, repo: str, number: int) -> PullRequest:
        raise self._no_conversation()

    def reviews(self, repo: str, number: int) -> list[Remark]:
        raise self._no_conversation()

    def review_comments(self, repo: str, number: int, review_id: int | None = None) -> list[Remark]:
        raise self._no_conversation()

    def react(self, repo: str, remark: Remark, content: str) -> None:
        raise self._no_conversation()

    def reply(self, repo: str, remark: Remark, body: str) -> int:
        raise self._no_conversation()

    def edit_pull_body(self, repo: str, number: int, body: str) -> None:
        raise self._no_conversation()

    # -- comments and labels -----------------------------------------------------------

    def _activity_path(self, repo: str, number: int) -> Path:
        return self.activity_dir / f"{repo_key(repo)}-{int(number)}.json"

    def activity(self, repo: str, number: int) -> dict[str, Any]:
        """What orch did on an issue: comments (id, body, times) and label changes."""
        repo = normalize_repo(repo)
        data = _read_json(self._activity_path(repo, number))
        base = {"repo": repo, "number": int(number), "comments": [], "labels_added": [],
                "labels_removed": []}
        if isinstance(data, dict):
            base.update({k: data[k] for k in base if k in data})
        return base

    def _update(self, repo: str, number: int, change: Any) -> Any:
        with self._lock:
            act = self.activity(repo, number)
            result = change(act)
            _write_json(self._activity_path(repo, number), act)
        return result

    def upsert_comment(self, repo: str, number: int, body: str, comment_id: int | None) -> int:
        repo = self._check_repo(repo)
        self.get_issue(repo, number)

        def change(act: dict[str, Any]) -> int:
            for c in act["comments"]:
                if comment_id is not None and c["id"] == comment_id:
                    c.update(body=body, updated_at=_now())
                    return int(c["id"])
            last = act["comments"][-1] if act["comments"] else None
            if last is not None and last["body"] == body:
                return int(last["id"])           # same as GithubForge: no duplicate on re-run
            cid = max([0, *(c["id"] for c in act["comments"])]) + 1
            act["comments"].append({"id": cid, "body": body, "created_at": _now(),
                                    "updated_at": _now()})
            return cid

        return self._update(repo, number, change)

    def set_labels(self, repo: str, number: int, add: list[str], remove: list[str]) -> None:
        repo = self._check_repo(repo)
        self.get_issue(repo, number)
        add = list(dict.fromkeys(add))
        remove = [x for x in dict.fromkeys(remove) if x not in add]

        def change(act: dict[str, Any]) -> None:
            for x in add:
                if x in act["labels_removed"]:
                    act["labels_removed"].remove(x)
                if x not in act["labels_added"]:
                    act["labels_added"].append(x)
            for x in remove:
                if x in act["labels_added"]:
                    act["labels_added"].remove(x)
                if x not in act["labels_removed"]:
                    act["labels_removed"].append(x)

        self._update(repo, number, change)

    # -- for `orch show` ---------------------------------------------------------------

    def describe(self, repo: str, number: int, branch: str | None = None) -> dict[str, str]:
        """Printable extras of a local task: the issue file, its labels, orch's comments and
        the pull-request record. Never raises for a missing piece (show must always work)."""
        out: dict[str, str] = {}
        try:
            issue = self.get_issue(repo, number)
            out["issue file"] = issue.url
            out["labels"] = ", ".join(issue.labels) or "-"
        except (UsageError, WorkError):
            pass
        try:
            act = self.activity(repo, number)
            if act["comments"]:
                out["comments"] = "\n\n".join(f"[{c['id']}] {c['updated_at']}\n{c['body']}"
                                              for c in act["comments"])
            if branch:
                pr = self.pull_request(repo, branch)
                if pr:
                    out["pull request"] = (f"{pr['url']}\ntitle: {pr['title']}\nbranch: "
                                           f"{pr['branch']} -> {pr['base']}\ncommit: {pr['commit']}"
                                           f"\n\n{pr['body']}")
        except (UsageError, WorkError):
            pass
        return out
