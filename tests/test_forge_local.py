"""LocalForge: Markdown issues in, JSON pull-request records out, against real git repos."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError, UsageError, WorkError
from orchestrator.forge import Forge, make_forge
from orchestrator.forge.local import LocalForge, derived_number, parse_issue_file

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def git_repo(path: Path, branches: tuple[str, ...] = (), head: str = "main") -> Path:
    subprocess.run(["git", "init", "-q", "-b", head, str(path)], check=True)
    subprocess.run([*GIT, "-C", str(path), "commit", "-q", "--allow-empty", "-m", "init"],
                   check=True)
    for b in branches:
        subprocess.run(["git", "-C", str(path), "branch", b], check=True)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_repo(tmp_path / "app", branches=("orch/1-add-health",))


@pytest.fixture
def forge(tmp_path: Path) -> LocalForge:
    return LocalForge(tmp_path / "state")


def issue_file(forge: LocalForge, name: str, text: str) -> Path:
    return write(forge.issues_dir / name, text)


# -- parsing ---------------------------------------------------------------------------------

def test_parse_front_matter(tmp_path):
    p = write(tmp_path / "x.md", "---\ntitle: Add /health\nlabels: [orch, backend]\n"
                                 "author: alice\nnumber: 7\n---\n\nIt should say ok.\n\nThanks\n")
    f = parse_issue_file(p)
    assert (f.title, f.labels, f.author, f.number, f.state) == (
        "Add /health", ("orch", "backend"), "alice", 7, "open")
    assert f.body == "It should say ok.\n\nThanks"
    assert f.repo is None


def test_parse_defaults_and_numbers(tmp_path):
    f = parse_issue_file(write(tmp_path / "12-fix.md", "---\ntitle: t\nlabels: orch\n---\nb"))
    assert f.number == 12 and f.labels == ("orch",) and f.author
    g = parse_issue_file(write(tmp_path / "fix-it.md", "---\ntitle: t\n---\n"))
    assert g.number == derived_number("fix-it.md") and 100000 <= g.number < 1000000
    assert derived_number("fix-it.md") == derived_number("fix-it.md")     # stable
    assert not g.numbered and f.numbered


def test_parse_heading_without_front_matter(tmp_path):
    f = parse_issue_file(write(tmp_path / "3-h.md", "\n# Make it faster\nThe body.\n"))
    assert (f.title, f.body, f.number) == ("Make it faster", "The body.", 3)


def test_repo_in_front_matter_is_relative_to_the_file(tmp_path):
    f = parse_issue_file(write(tmp_path / "issues" / "1.md", "---\ntitle: t\nrepo: ../app\n---\n"))
    assert f.repo == str((tmp_path / "app").resolve())
    g = parse_issue_file(write(tmp_path / "2.md", "---\ntitle: t\nrepo: https://h/x.git\n---\n"))
    assert g.repo == "https://h/x.git"


@pytest.mark.parametrize("text,line,needle", [
    ("---\ntitle: ok\nlabels: [orch\n---\nbody\n", 4, "bad front matter"),
    ("---\ntitle: a: b: c\n---\n", 2, "bad front matter"),
    ("---\ntitle: t\nlabels: [a]\n", 1, "never closed"),
    ("---\n- just\n- a list\n---\n", 2, "must be a mapping"),
    ("---\ntitle: t\nnumber: seven\n---\n", 3, "number: expected a positive integer"),
    ("---\ntitle: t\n\nlables: [x]\n---\n", 4, "lables: unknown key"),
    ("---\nlabels: [x]\n---\n", 1, "title: a non-empty title is required"),
    ("---\ntitle: t\nstate: done\n---\n", 3, "state: expected open or closed"),
    ("---\ntitle: t\nlabels: {a: 1}\n---\n", 3, "labels: expected a list"),
    ("just text, no title\n", 1, "no front matter"),
])
def test_malformed_front_matter_names_file_and_line(tmp_path, text, line, needle):
    p = write(tmp_path / "bad.md", text)
    with pytest.raises(ConfigError) as info:
        parse_issue_file(p)
    assert info.value.line == line
    assert str(info.value).startswith(f"{p}:{line}: ")
    assert needle in str(info.value)
    assert info.value.exit_code == 2


def test_a_bad_file_in_issues_dir_is_reported(forge, repo):
    issue_file(forge, "1-ok.md", "---\ntitle: fine\nlabels: [orch]\n---\n")
    bad = issue_file(forge, "2-bad.md", "---\ntitle: [unclosed\n---\n")
    with pytest.raises(ConfigError, match=str(bad)):
        forge.list_open_issues(str(repo), "orch")


# -- reading ---------------------------------------------------------------------------------

def test_protocol_and_factory(forge, tmp_path):
    assert isinstance(forge, Forge) and forge.kind == "local"
    made = make_forge("local", Settings(), tmp_path / "state")
    assert isinstance(made, LocalForge)
    with pytest.raises(UsageError, match="unknown forge"):
        make_forge("gitlab", Settings(), tmp_path)


def test_get_issue(forge, repo):
    p = issue_file(forge, "0001-add-health.md",
                   "---\ntitle: Add /health\nlabels: [orch]\nauthor: alice\n"
                   "created_at: 2024-05-01T10:00:00Z\n---\nSay ok.\n")
    issue = forge.get_issue(str(repo), 1)
    assert issue.repo == str(repo.resolve()) == issue.clone_url
    assert (issue.number, issue.title, issue.body, issue.labels, issue.author) == (
        1, "Add /health", "Say ok.", ("orch",), "alice")
    assert issue.created_at == "2024-05-01T10:00:00Z" and not issue.is_pull_request
    assert issue.url == p.resolve().as_uri()
    assert forge.author_permission(str(repo), "anyone") == "admin"
    assert forge.clone_url(str(repo)) == str(repo.resolve())


def test_missing_issue_and_repo(forge, repo, tmp_path):
    with pytest.raises(UsageError, match="no local issue #5"):
        forge.get_issue(str(repo), 5)
    with pytest.raises(UsageError, match="not found"):
        forge.get_issue(str(tmp_path / "nowhere"), 1)


def test_duplicate_numbers_are_an_error(forge, repo):
    issue_file(forge, "a.md", "---\ntitle: a\nnumber: 4\n---\n")
    issue_file(forge, "b.md", "---\ntitle: b\nnumber: 4\n---\n")
    with pytest.raises(ConfigError, match="issue number 4 is already used"):
        forge.get_issue(str(repo), 4)


def test_list_open_issues(forge, repo, tmp_path):
    other = git_repo(tmp_path / "other")
    issue_file(forge, "1.md", "---\ntitle: newer\nlabels: [orch]\ncreated_at: 2024-03-01\n---\n")
    issue_file(forge, "2.md", "---\ntitle: older\nlabels: [orch]\ncreated_at: 2024-01-01\n---\n")
    issue_file(forge, "3.md", "---\ntitle: closed\nlabels: [orch]\nstate: closed\n---\n")
    issue_file(forge, "4.md", "---\ntitle: unlabelled\n---\n")
    issue_file(forge, "5.md", f"---\ntitle: elsewhere\nlabels: [orch]\nrepo: {other}\n---\n")
    issue_file(forge, "6.md", f"---\ntitle: mine\nlabels: [orch]\nrepo: {repo}\n"
                              "created_at: 2024-02-01\n---\n")
    got = forge.list_open_issues(str(repo), "orch")
    assert [i.title for i in got] == ["older", "mine", "newer"]
    assert got[0].created_at == "2024-01-01T00:00:00Z"
    assert [i.title for i in forge.list_open_issues(str(other), "orch")] == [
        "older", "newer", "elsewhere"]


def test_default_branch(forge, tmp_path):
    trunk = git_repo(tmp_path / "t", head="trunk")
    bare = tmp_path / "t.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(trunk), str(bare)], check=True)
    assert forge.default_branch(str(trunk)) == "trunk"
    assert forge.default_branch(str(bare)) == "trunk"


# -- writing ---------------------------------------------------------------------------------

def test_pull_request_record_is_written_once(forge, repo):
    kw = dict(head="orch/1-add-health", base="main", title="Add /health", body="Closes #1")
    url = forge.open_pull_request(str(repo), **kw)
    assert url.startswith("file://")
    record = json.loads(Path(urlparse(url).path).read_text())
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "orch/1-add-health"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert record["commit"] == commit
    assert {k: record[k] for k in ("title", "body", "branch", "base", "repo")} == {
        "title": "Add /health", "body": "Closes #1", "branch": "orch/1-add-health",
        "base": "main", "repo": str(repo.resolve())}
    assert forge.open_pull_request(str(repo), **dict(kw, title="other")) == url   # idempotent
    assert len(list(forge.pulls_dir.glob("*.json"))) == 1
    assert forge.find_pull_request(str(repo), "orch/1-add-health") == url
    assert forge.find_pull_request(str(repo), "orch/2-none") is None


def test_pull_request_needs_the_branch(forge, repo):
    with pytest.raises(WorkError, match="branch orch/9-lost is not in"):
        forge.open_pull_request(str(repo), head="orch/9-lost", base="main", title="t", body="")
    assert not forge.pulls_dir.exists() or not list(forge.pulls_dir.iterdir())


def test_comments_and_labels_are_recorded(forge, repo):
    issue_file(forge, "1.md", "---\ntitle: t\nlabels: [orch, backend]\n---\n")
    r = str(repo)
    cid = forge.upsert_comment(r, 1, "started", None)
    assert forge.upsert_comment(r, 1, "finished", cid) == cid
    assert forge.upsert_comment(r, 1, "finished", None) == cid            # no duplicate
    second = forge.upsert_comment(r, 1, "retried", None)
    assert second != cid
    forge.set_labels(r, 1, add=["orch:running"], remove=["orch", "absent"])
    forge.set_labels(r, 1, add=["orch:done"], remove=["orch:running"])
    issue = forge.get_issue(r, 1)
    assert issue.labels == ("backend", "orch:done")
    assert [(c.body, c.author) for c in issue.comments] == [("finished", "orch"), ("retried", "orch")]
    assert forge.login() == "orch"                  # orch's own: they never reach the prompt
    act = forge.activity(r, 1)
    assert [c["body"] for c in act["comments"]] == ["finished", "retried"]
    assert list((forge.state_dir / "forge").glob("*.json"))
    forge.open_pull_request(r, head="orch/1-add-health", base="main", title="T", body="B")
    shown = forge.describe(r, 1, "orch/1-add-health")
    assert set(shown) == {"issue file", "labels", "comments", "pull request"}
    assert "orch:done" in shown["labels"] and "T" in shown["pull request"]
    assert forge.describe(r, 99, None) == {}
    with pytest.raises(UsageError):
        forge.upsert_comment(r, 99, "x", None)


def test_register_an_outside_file(forge, repo, tmp_path):
    outside = write(tmp_path / "drafts" / "issue.md", "---\ntitle: Add /health\n"
                                                      "labels: [orch]\n---\nBody\n")
    ref = forge.register(outside, str(repo))
    assert ref == (str(repo.resolve()), 1)
    assert forge.register(outside, str(repo)) == ref                   # same issue, same number
    assert len(list(forge.issues_dir.glob("*.md"))) == 1
    other = write(tmp_path / "drafts" / "2" / "issue.md", "---\ntitle: Another\n---\n")
    assert forge.register(other, str(repo))[1] == 2
    assert forge.get_issue(*ref).title == "Add /health"
    assert forge.register(f"{repo}#2") == (str(repo.resolve()), 2)
    assert forge.register("1", str(repo)) == ref
    with pytest.raises(UsageError, match="which repository"):
        forge.register(write(tmp_path / "norepo.md", "---\ntitle: x\n---\n"))
    with pytest.raises(UsageError, match="not a local issue"):
        forge.register("nonsense")


def test_register_keeps_an_explicit_number(forge, repo, tmp_path):
    p = write(tmp_path / "x.md", "---\ntitle: T\nnumber: 42\n---\n")
    assert forge.register(p, str(repo))[1] == 42


def test_create_issue(forge, repo):
    a = forge.create_issue(str(repo), "First one", "body", labels=["orch"], author="bob")
    b = forge.create_issue(str(repo), "Second", labels=["orch"])
    assert (a.number, b.number) == (1, 2)
    assert (a.title, a.body, a.labels, a.author) == ("First one", "body", ("orch",), "bob")
    assert [i.number for i in forge.list_open_issues(str(repo), "orch")] == [1, 2]


def test_every_record_is_replaced_whole_and_private(forge, repo, tmp_path):
    """Issue files, PR records and the activity log are written through the one atomic
    replace (orchestrator/atomic.py): 0600 like the rest of the state dir, no temp left
    behind, and a file being read is never half written (an old reader keeps the old)."""
    outside = write(tmp_path / "in.md", "---\ntitle: Add /health\nlabels: [orch]\n---\nSay ok.\n")
    repo_s, n = forge.register(outside, str(repo))
    forge.create_issue(str(repo), "Another", "body", labels=["orch"])
    forge.upsert_comment(repo_s, n, "hello", None)
    forge.set_labels(repo_s, n, ["orch:running"], [])
    forge.open_pull_request(repo_s, head="orch/1-add-health", base="main", title="t", body="b")
    written = [p for d in (forge.issues_dir, forge.pulls_dir, forge.activity_dir)
               for p in d.iterdir()]
    assert len(written) == 4
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written), \
        [(p.name, oct(p.stat().st_mode)) for p in written]
    assert not [p for p in written if p.name.startswith(".") or p.suffix == ".tmp"]
    activity = next(forge.activity_dir.iterdir())
    with activity.open() as held:                  # a reader with the file open...
        forge.upsert_comment(repo_s, n, "hello again", None)
        assert "hello again" not in held.read()    # ...reads the whole old version
    assert "hello again" in activity.read_text()


def test_the_registry_reads_references_each_forge_its_own(tmp_path, repo):
    from orchestrator.forge import FORGES, kind_for_ref
    issue = write(tmp_path / "x.md", "---\ntitle: T\n---\n")
    assert kind_for_ref(str(issue)).name == "local"           # an existing file
    assert kind_for_ref("later.md").name == "local"           # a Markdown name
    assert kind_for_ref("7", str(repo)).name == "local"       # anything with --repo
    assert kind_for_ref("octo/app#12").name == "github"
    assert kind_for_ref("https://github.com/octo/app/issues/12").name == "github"
    forge = make_forge("local", Settings(), tmp_path / "state")
    assert FORGES["local"].resolve(forge, str(issue), str(repo)) == (str(repo), forge.get_issue(
        str(repo), 1).number)
    assert FORGES["github"].resolve(None, "octo/app#12", None) == ("octo/app", 12)
    with pytest.raises(UsageError, match="not an issue reference"):
        FORGES["github"].resolve(None, "octo/app", None)
