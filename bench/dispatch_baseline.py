"""The hand-written baseline of one dispatch (issue 10): one SSH round trip that clones,
branches, runs the agent (prompt on stdin), runs the tests, commits and pushes; then
PyGithub opens the pull request and comments once on the issue.

    python bench/dispatch_baseline.py SPEC.json

SPEC: {"host", "port", "user", "client_key", "known_hosts", "clone_url", "branch",
       "agent", "tests", "github_url", "token", "repo", "issue", "title"}
Host keys verified (known_hosts), like orch. Exit 1 if any step failed.
"""

import asyncio
import json
import shlex
import sys

import asyncssh
from github import Auth, Github


async def job(s: dict) -> None:
    q = shlex.quote
    script = f"""set -e
ws=$(mktemp -d)
git clone -q {q(s['clone_url'])} "$ws/repo"
cd "$ws/repo"
git checkout -q -b {q(s['branch'])}
{s['agent']} -p --output-format stream-json --verbose > "$ws/job.log"
{s['tests']}
git add -A
git -c user.name=orch -c user.email=orch@localhost commit -q -m {q(s['title'])}
git push -q origin {q(s['branch'])}
cd / && rm -rf "$ws"
"""
    async with asyncssh.connect(s["host"], s["port"], username=s["user"],
                                known_hosts=s["known_hosts"], client_keys=[s["client_key"]],
                                config=[], connect_timeout=10) as conn:
        await conn.run(script, input=f"Fix issue #{s['issue']}: {s['title']}\n", check=True)


def forge(s: dict) -> None:
    gh = Github(base_url=s["github_url"], auth=Auth.Token(s["token"]),
                seconds_between_requests=0, seconds_between_writes=0)
    repo = gh.get_repo(s["repo"])
    pr = repo.create_pull(title=s["title"], body=f"Closes #{s['issue']}", head=s["branch"],
                          base="main")
    repo.get_issue(s["issue"]).create_comment(f"Opened {pr.html_url}")


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    asyncio.run(job(spec))
    forge(spec)
