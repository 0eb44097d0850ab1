"""core/shell.py: the slug and branch-name rules, and quoting (pure; git checks the refs)."""

from __future__ import annotations

import random
import subprocess

import pytest

from orchestrator.core import shell
from orchestrator.job.playbook import valid_branch


@pytest.mark.parametrize("title, expected", [
    ("Fix", "fix"),                        # a valid ref already, but not a slug
    ("A/B", "a-b"),                        # a valid ref with a slash: one component only
    ("..", "issue"),                       # nothing left: never empty
    ("", "issue"),
    ("   ", "issue"),
    ("-leading and trailing-", "leading-and-trailing"),
    ("main", "main"),
    ("HEAD", "head"),
    ("@{-1}", "1"),
    ("refs/heads/x.lock", "refs-heads-x-lock"),
    ("Café déjà vu, naïve façade", "cafe-deja-vu-naive-facade"),   # accents kept as letters
    ("日本語のタイトル", "issue"),           # no ASCII letter in it at all
    ("Ünïcödé 日本 2", "unicode-2"),
    ("a\u202eb\u0000c\nd", "a-b-c-d"),    # control and bidi characters are separators
    ("Fix   the\tbug!!!", "fix-the-bug"),
    ("x" * 100, "x" * 40),
    ("word " * 30, "word-word-word-word-word-word-word-word"),   # cut, then no trailing dash
])
def test_slug_rules(title, expected):
    assert shell.slug(title) == expected


def test_slug_limit_and_alphabet():
    assert shell.slug("abc def", limit=5) == "abc-d"
    assert shell.slug("abc-def", limit=4) == "abc"          # never ends with a dash


def test_branch_name_shape():
    assert shell.branch_name(12, "Fix") == "orch/12-fix"
    assert shell.branch_name(3, "A/B") == "orch/3-a-b"
    assert shell.branch_name(7, "..") == "orch/7-issue"
    assert shell.branch_name("9", "x") == "orch/9-x"        # the number is an int, always


def _titles() -> list[str]:
    rng = random.Random(16)
    alphabet = "aZ09 -_./\\~^:?*[@{}<>|&;$`'\"\t\n\r\0\u202e\u00e9\u65e5" + "".join(
        chr(c) for c in range(0x20, 0x7f))
    hostile = ["..", "a..b", "a/.b", ".lock", "x.lock", "/", "//", "@", "@{u}", "-", "--force",
               "a~1", "a^{}", "a:b", "a?b", "a*b", "a[b", "a\\b", "a b", "\0", "é/é", "HEAD@{0}"]
    return hostile + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
                      for _ in range(300)]


@pytest.mark.integration      # asks git itself
def test_every_branch_name_is_a_valid_git_branch():
    """Whatever the title, git itself accepts the branch name (and so does our own check)."""
    names = [shell.branch_name(i + 1, t) for i, t in enumerate(_titles())]
    script = "".join(f"git check-ref-format --branch {shell.quote(n)} >/dev/null || echo BAD {shell.quote(n)}\n"
                     for n in names)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "" and proc.returncode == 0, proc.stdout[:2000]
    assert all(valid_branch(n) for n in names)
    assert all(len(n) <= len("orch/") + 12 + 1 + 40 for n in names)


def test_quote_and_path():
    assert shell.quote("a b'c") == "'a b'\"'\"'c'"
    assert shell.path("~") == '"$HOME"'
    assert shell.path("~/") == '"$HOME"'
    assert shell.path("~/a b") == "\"$HOME\"/'a b'"
    assert shell.path("~user/x") == "'~user/x'"             # only the login user's ~
    assert shell.path("/abs/x") == "/abs/x"
