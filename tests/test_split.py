"""A split issue (issue 13, docs/split.md): parts in parallel on specialty hosts, merged
into one integration branch, tested on the testing host, one PR; failure and control.

Real sshd hosts tagged backend, frontend and testing; the real CLI; the stand-in agent,
whose `orch-standin[SPECIALTY]:` directives act only in that part's prompt (and
`orch-standin[merge]:` only in the integration's conflict fix).
"""

from __future__ import annotations

from typing import Any

from tests.helpers_poll import group_alive, host_jobs, poll, run_passes, tasks, wait_for

TAGS = {"h1": ["backend"], "h2": ["frontend"], "h3": ["testing"]}
LABELS = ("orch", "backend", "frontend")
BOTH_FILES = {"command": "test -f api.txt && test -f ui.txt"}


def parent_of(w) -> Any:
    [parent] = [t for t in tasks(w) if t.kind == "split"]
    return parent


def children(w, parent) -> list[Any]:
    # tasks(w) is newest first (the store's creation order); reversed: oldest first
    return [t for t in reversed(tasks(w)) if t.parent == parent.id]


def split_done(ts: list[Any]) -> bool:
    return any(t.kind == "split" and t.status in ("succeeded", "failed", "cancelled") for t in ts)


def two_parts(backend_slow: int = 0, frontend_slow: int = 0, ui: str = "ui") -> str:
    """An issue body of a backend part (api.txt) and a frontend part (ui.txt), each
    optionally slow for that many seconds."""
    body = "orch-standin[backend]: write api.txt api\n"
    if backend_slow:
        body += f"orch-standin[backend]: slow {backend_slow}\n"
    body += f"orch-standin[frontend]: write ui.txt {ui}\n"
    if frontend_slow:
        body += f"orch-standin[frontend]: slow {frontend_slow}\n"
    return body


def split_started(w, title: str, body: str) -> tuple[int, Any]:
    """A labelled split issue and the first poll pass: (its number, the split's parent)."""
    n = w.issue(title, body, labels=LABELS)
    proc, _ = poll(w)
    assert proc.returncode == 0, proc.stderr
    return n, parent_of(w)


def split_finished(w, title: str, body: str) -> tuple[int, Any, list[Any]]:
    """A labelled split issue run to its end: (its number, the parent, its children)."""
    n = w.issue(title, body, labels=LABELS)
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    return n, parent, children(w, parent)


def status_times(w) -> dict[str, tuple[int, int]]:
    """Each job's (started_at, finished_at) as its host wrote them."""
    out = {}
    for j in host_jobs(w):
        st = j["status"]
        if st.get("started_at") and st.get("finished_at"):
            out[j["task"]] = (int(st["started_at"]), int(st["finished_at"]))
    return out


def test_two_label_issue_runs_its_parts_at_once_on_the_specialty_hosts_then_one_pr(make_world):
    w = make_world(hosts=3, specialties=TAGS, max_tasks=2,
                   tests={"command": "test -f api.txt && test -f ui.txt && test -f t.txt",
                          "max_fix_attempts": 0},
                   workspace={"keep_on_success": True})
    n = w.issue("Add the hello feature",
                "orch-standin[backend]: write api.txt api\n"
                "orch-standin[backend]: slow 2\n"
                "orch-standin[frontend]: write ui.txt ui\n"
                "orch-standin[frontend]: slow 2\n"
                "orch-standin[testing]: write t.txt tests\n",
                labels=(*LABELS, "testing"))
    proc, first = poll(w)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parent = parent_of(w)
    assert parent.status == "running" and not parent.host     # it holds no slot
    parts = children(w, parent)
    assert [(t.kind, t.specialty, t.status) for t in parts] == [
        ("part", "backend", "running"), ("part", "frontend", "running")]
    assert {t.host for t in parts} == {"h1", "h2"}
    assert [t.branch for t in parts] == [f"orch/{n}-add-the-hello-feature--1-backend",
                                         f"orch/{n}-add-the-hello-feature--2-frontend"]
    # sampled on the hosts: both parts' jobs run at the same moment
    both = wait_for(lambda: {j["host"] for j in host_jobs(w)
                             if j["state"] == "running" and j["alive"]} >= {"h1", "h2"}, 30,
                    "both parts running at once")
    assert both

    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", (parent.error, [(t.id, t.kind, t.status, t.error)
                                                         for t in children(w, parent)])
    kids = children(w, parent)
    times = status_times(w)
    (s1, f1), (s2, f2) = times[kids[0].id], times[kids[1].id]
    assert max(s1, s2) < min(f1, f2), "the two parts did not run at overlapping times"
    # the testing part ran on the testing host after the others, from their integration
    testing = next(t for t in kids if t.kind == "part" and t.specialty == "testing")
    assert testing.host == "h3"
    assert min(f1, f2) <= max(f1, f2) <= times[testing.id][0]
    # the suite ran on the integration branch, on the testing host, and passed
    final = [t for t in kids if t.kind == "integrate" and (t.split or {}).get("final")]
    assert [(t.host, t.tests, t.status) for t in final] == [("h3", "passed", "succeeded")]
    # one PR, every part's commit in it
    [pr] = w.github.pulls(w.repo)
    assert pr["head"] == f"orch/{n}-add-the-hello-feature" and parent.pr_url == pr["html_url"]
    assert f"Closes #{n}\n" in pr["body"]
    for t in (t for t in kids if t.kind == "part"):
        assert t.commit and t.commit[:12] in pr["body"]
    branch = pr["head"]
    assert w.remote.read(branch, "api.txt") == "api\n"
    assert w.remote.read(branch, "ui.txt") == "ui\n"
    assert w.remote.read(branch, "t.txt") == "tests\n"
    # one tracking comment, its last word the PR
    comments = [c for c in w.github.comments(w.repo, n) if "<!-- orch -->" in c["body"]]
    assert len(comments) == 1 and pr["html_url"] in comments[0]["body"]
    assert "orch:done" in w.github.labels(w.repo, n)
    assert "orch" not in w.github.labels(w.repo, n)


TWO = {"h1": ["backend"], "h2": ["frontend"]}
CONFLICT = ("orch-standin[backend]: write shared.txt from-backend\n"
            "orch-standin[frontend]: write shared.txt from-frontend\n"
            "orch-standin[frontend]: slow 3\n")   # the frontend part finishes later


def test_conflicting_parts_get_a_merge_fix_run_then_one_pr(make_world):
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    w.issue("Share a file", CONFLICT + "orch-standin[merge]: write shared.txt merged\n",
                labels=LABELS)
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    kids = children(w, parent)
    # the backend part finished first and was merged alone; the frontend part's merge
    # conflicts: its fix run is on the later part's host, and (no testing host) that run
    # also runs the suite
    first, merge = [t for t in kids if t.kind == "integrate"]
    assert [m["specialty"] for m in first.split["merge"]] == ["backend"]
    assert [m["specialty"] for m in merge.split["merge"]] == ["frontend"]
    frontend = next(t for t in kids if t.specialty == "frontend" and t.kind == "part")
    assert merge.host == frontend.host == "h2" and merge.tests == "passed"
    log = (w.state_dir / "logs" / f"{merge.id}.log")
    text = log.read_text() if log.exists() else ""
    assert "merge conflict with" in text and "shared.txt" in text, text[-2000:]
    [pr] = w.github.pulls(w.repo)
    assert w.remote.read(pr["head"], "shared.txt") == "merged\n"


def test_an_unresolved_conflict_fails_the_split_naming_the_files(make_world):
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    n = w.issue("Share a file", CONFLICT, labels=LABELS)
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "failed" and parent.error_kind == "merge_conflict"
    assert "the integration" in parent.error and "shared.txt" in parent.error
    assert w.github.pulls(w.repo) == []
    [comment] = [c for c in w.github.comments(w.repo, n) if "<!-- orch -->" in c["body"]]
    assert "shared.txt" in comment["body"] and "the integration" in comment["body"]
    assert "orch:failed" in w.github.labels(w.repo, n)


def test_a_failing_part_cancels_the_other_and_fails_the_parent(make_world):
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    n, parent, (backend, frontend) = split_finished(
        w, "Half works", "orch-standin[backend]: is-error\n"
                         "orch-standin[frontend]: write ui.txt ui\n"
                         "orch-standin[frontend]: slow 60\n")
    assert backend.status == "failed" and frontend.status == "cancelled"
    assert parent.status == "failed"
    assert parent.error.startswith(f"part 1 (backend, task {backend.id}) failed: ")
    assert not group_alive(frontend.pid), "the cancelled part's job still runs"
    [comment] = [c for c in w.github.comments(w.repo, n) if "<!-- orch -->" in c["body"]]
    assert f"part 1 (`backend`, task `{backend.id}`) failed" in comment["body"]
    assert "API Error" in comment["body"]       # the reason, fenced
    assert w.github.pulls(w.repo) == []


def test_cancel_then_retry_of_a_parent(make_world):
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    n, parent = split_started(w, "Slow pair", two_parts(60, 60))
    kids = children(w, parent)
    wait_for(lambda: all(group_alive(t.pid) for t in children(w, parent)), 30, "parts running")
    out = w.orch("cancel", parent.id)
    assert out.returncode == 0, out.stdout + out.stderr
    parent = parent_of(w)
    assert parent.status == "cancelled"
    assert [t.status for t in children(w, parent)] == ["cancelled", "cancelled"]
    wait_for(lambda: not any(group_alive(t.pid) for t in kids), 30, "the parts' jobs to stop")
    assert "orch:running" not in w.github.labels(w.repo, n)

    # retried: the same parts run again (the issue no longer asks them to be slow)
    w.github.edit_issue(w.repo, n, by="alice", body=two_parts())
    out = w.orch("retry", parent.id)
    assert out.returncode == 0, out.stdout + out.stderr
    assert parent_of(w).status == "running"
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    again = children(w, parent)
    assert [t.id for t in again if t.kind == "part"] == [t.id for t in kids]
    [pr] = w.github.pulls(w.repo)
    assert w.remote.read(pr["head"], "api.txt") == "api\n"


def test_retry_of_a_failed_parent_reruns_only_the_failed_part(make_world):
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    n = w.issue("One fails late", "orch-standin[backend]: write api.txt api\n"
                                  "orch-standin[backend]: slow 3\n"
                                  "orch-standin[backend]: is-error\n"
                                  "orch-standin[frontend]: write ui.txt ui\n", labels=LABELS)
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "failed"
    backend, frontend = children(w, parent)[:2]
    assert (backend.status, frontend.status) == ("failed", "succeeded")
    w.github.edit_issue(w.repo, n, by="alice", body=two_parts(ui="changed"))
    assert w.orch("retry", parent.id).returncode == 0
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    b2, f2 = children(w, parent)[:2]
    assert f2.id == frontend.id and f2.attempts == frontend.attempts == 1
    assert f2.commit == frontend.commit         # kept, not run again
    assert b2.id == backend.id and b2.status == "succeeded"
    [pr] = w.github.pulls(w.repo)
    assert w.remote.read(pr["head"], "ui.txt") == "ui\n"


def test_retry_now_of_a_failed_parent_starts_its_failed_part_at_once(make_world):
    """`orch retry PARENT --now`: the failed part is placed and started by the command
    itself (running on its specialty's host when it returns), not at the next poll."""
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    n, parent, kids = split_finished(w, "One fails fast", "orch-standin[backend]: write api.txt api\n"
                                                      "orch-standin[backend]: is-error\n"
                                                      "orch-standin[frontend]: write ui.txt ui\n")
    backend, frontend = kids[:2]
    assert (parent.status, backend.status, frontend.status) == ("failed", "failed", "succeeded")
    w.github.edit_issue(w.repo, n, by="alice", body=two_parts(backend_slow=2))
    out = w.orch("retry", parent.id, "--now")
    assert out.returncode == 0, out.stdout + out.stderr
    again = {t.id: t for t in children(w, parent)}
    assert again[backend.id].status == "running" and again[backend.id].host == "h1"
    assert again[frontend.id].status == "succeeded"            # kept, not run again
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    [pr] = w.github.pulls(w.repo)
    assert w.remote.read(pr["head"], "api.txt") == "api\n"


def test_a_host_killed_during_its_part_requeues_that_part_alone(make_world):
    w = make_world(hosts=3, specialties={"h1": ["backend"], "h2": ["frontend"],
                                         "h3": ["backend"]},
                   tests={"command": "true"})
    _n, parent = split_started(w, "Survive a host", two_parts(8, 3))
    backend, frontend = children(w, parent)
    first_host = backend.host
    assert first_host in ("h1", "h3")
    w.fleet.stop(first_host)
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    b2, f2 = children(w, parent)[:2]
    assert b2.id == backend.id and b2.attempts == 2 and b2.host != first_host
    assert f2.id == frontend.id and f2.attempts == 1
    assert len([t for t in children(w, parent) if t.kind == "part"]) == 2


def test_overlapping_polls_start_each_part_once(make_world, monkeypatch):
    import asyncio

    from orchestrator.app import App
    from orchestrator.lifecycle.poll import run_pass

    w = make_world(hosts=2, specialties=TWO, max_tasks=4, tests={"command": "true"})
    w.issue("Once each", two_parts(), labels=LABELS)
    monkeypatch.setenv("GITHUB_TOKEN", w.token)

    async def passes() -> None:
        # six passes at once without the pass lock: only the store keeps them apart
        apps = [App(config_path=str(w.config), inventory_path=str(w.inventory),
                    state_dir=str(w.state_dir)) for _ in range(6)]
        await asyncio.gather(*(run_pass(a, [w.repo]) for a in apps))

    asyncio.run(passes())
    parents = [t for t in tasks(w) if t.kind == "split"]
    assert len(parents) == 1
    parts = [t for t in tasks(w) if t.kind == "part"]
    assert sorted(t.specialty for t in parts) == ["backend", "frontend"]
    assert all(t.attempts == 1 for t in parts)
    run_passes(w, split_done, timeout=240)
    assert parent_of(w).status == "succeeded"
    assert len(w.github.pulls(w.repo)) == 1
    assert len([t for t in tasks(w) if t.kind == "part"]) == 2


def _plan(parts: list[dict[str, Any]]) -> str:
    import json
    return "orch-standin[plan]: structured '" + json.dumps({"parts": parts}) + "'\n"


def _p(title: str, specialty: str, deps: list[int] = (), paths: list[str] = ()) -> dict[str, Any]:
    return {"title": title, "specialty": specialty, "instructions": f"do {title}",
            "paths": list(paths), "depends_on": list(deps)}


def test_a_planning_run_returns_the_parts_which_then_run(make_world):
    w = make_world(hosts=2, specialties={"h1": ["backend", "general"], "h2": ["frontend"]},
                   tests={"command": "test -f api.txt && test -f ui.txt"})
    n = w.issue("Plan me", _plan([_p("the API", "backend", paths=["api.txt"]),
                                  _p("the page", "frontend", [1], ["ui.txt"])])
                + "orch-standin[backend]: write api.txt api\n"
                  "orch-standin[frontend]: write ui.txt ui\n",
                labels=("orch", "orch:split"))
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    planner, *rest = children(w, parent)
    assert planner.kind == "planner" and planner.host == "h1"     # the general host
    assert [p["title"] for p in parent.split["plan"]] == ["the API", "the page"]
    parts = [t for t in rest if t.kind == "part"]
    assert [(t.specialty, t.host) for t in parts] == [("backend", "h1"), ("frontend", "h2")]
    # the frontend part depends on the backend one: it started after it was integrated
    merges = [t for t in rest if t.kind == "integrate"]
    assert parts[1].started_at >= merges[0].finished_at
    [comment] = [c for c in w.github.comments(w.repo, n) if "<!-- orch -->" in c["body"]]
    assert "`the page`" in comment["body"]          # the plan, posted (as code)
    # the planning run was asked for structured output as the schema orch ships
    log = (w.state_dir / "logs" / f"{planner.id}.log").read_text()
    assert '"--json-schema"' in log and "depends_on" in log


def test_an_invalid_plan_is_refused_with_the_reason_in_the_comment(make_world):
    w = make_world(hosts=2, tests={"command": "true"}, split={"max_parts": 2})
    cases = {
        "a cycle": ([_p("a", "backend", [2]), _p("b", "frontend", [1])],
                    "the parts depend on each other in a cycle: parts 1, 2"),
        "an unknown specialty": ([_p("a", "backend"), _p("b", "wizardry")],
                                 "part 2 names an unknown specialty 'wizardry'"),
        "too many parts": ([_p("a", "backend"), _p("b", "frontend"), _p("c", "devops")],
                           "the plan has 3 parts; split.max_parts allows 2"),
    }
    numbers = {w.issue(f"Plan with {what}", _plan(parts), labels=("orch", "orch:split")): why
               for what, (parts, why) in cases.items()}

    def all_done(ts: list[Any]) -> bool:
        return sum(t.kind == "split" and t.status == "failed" for t in ts) == 3

    run_passes(w, all_done, timeout=240)
    for n, why in numbers.items():
        [parent] = [t for t in tasks(w) if t.kind == "split" and t.issue == n]
        assert parent.error_kind == "plan_refused" and why in parent.error
        assert [t.kind for t in children(w, parent)] == ["planner"]     # no part ran
        [comment] = [c for c in w.github.comments(w.repo, n) if "<!-- orch -->" in c["body"]]
        assert why.replace("'", "'") in comment["body"], comment["body"]
        assert "orch:failed" in w.github.labels(w.repo, n)
    assert w.github.pulls(w.repo) == []


def test_seeing_a_split_tasks_show_json_and_logs_follow(make_world):
    import json
    w = make_world(hosts=2, specialties=TWO, tests={"command": "true"})
    _n, parent = split_started(w, "Watch me", two_parts(2, 2))
    follower = w.popen("logs", parent.id, "-f")
    run_passes(w, split_done, timeout=240)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    lines = out.splitlines()
    for label in ("part 1 backend", "part 2 frontend", "tests"):
        mine = [line for line in lines if line.startswith(f"[{label}] ")]
        assert any("done succeeded" in line or "✓" in line or "succeeded" in line
                   for line in mine), (label, out[-3000:])
    assert all(line.startswith("[") for line in lines if line.strip()), out[-2000:]

    parent = parent_of(w)
    shown = w.orch_json("show", parent.id)
    got = [(p["kind"], p["specialty"], p["status"]) for p in shown["parts"]]
    assert got[:2] == [("part", "backend", "succeeded"), ("part", "frontend", "succeeded")]
    assert got[2:] and all(k == "integrate" and s == "succeeded" for k, _, s in got[2:])
    for p in shown["parts"]:
        assert set(p) >= {"id", "specialty", "host", "status", "started_at", "finished_at",
                          "branch", "commit"}
        assert p["host"] in ("h1", "h2") and p["commit"]
    listing = w.orch("tasks").stdout.splitlines()
    at = next(i for i, line in enumerate(listing) if parent.id in line)
    kids = [t.id for t in children(w, parent)]
    assert [line.split()[1] for line in listing[at + 1: at + 1 + len(kids)]] == kids
    assert all("└" in line for line in listing[at + 1: at + 1 + len(kids)])
    assert json.loads(w.orch("show", parent.id, "--json").stdout)["kind"] == "split"


def test_a_refused_plan_is_planned_again_on_retry_and_a_part_alone_is_not_retried(make_world):
    w = make_world(hosts=2, tests={"command": "true"})
    n = w.issue("Plan twice", _plan([_p("a", "wizardry")]), labels=("orch", "orch:split"))
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "failed" and parent.error_kind == "plan_refused"
    [first] = children(w, parent)
    refused = w.orch("retry", first.id)
    assert refused.returncode == 2 and f"orch retry {parent.id}" in refused.stderr
    w.github.edit_issue(w.repo, n, by="alice",
                        body=_plan([_p("a", "backend")]) + "orch-standin[backend]: write a.txt a\n")
    assert w.orch("retry", parent.id).returncode == 0
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    kinds = [t.kind for t in children(w, parent)]
    assert kinds[:2] == ["planner", "planner"] and "part" in kinds
    [pr] = w.github.pulls(w.repo)
    assert w.remote.read(pr["head"], "a.txt") == "a\n"


def test_an_orch_split_comment_asks_for_a_planning_run_once(make_world):
    """`@orch split` by an authorised person (issue 11's mention trigger, issue 13's
    planner): no label needed; the command is taken once, so later passes split nothing."""
    w = make_world(hosts=2, specialties={"h1": ["backend", "general"], "h2": ["frontend"]},
                   tests={"command": "test -f api.txt && test -f ui.txt"})
    n = w.issue("Plan me by command", _plan([_p("the API", "backend", paths=["api.txt"]),
                                             _p("the page", "frontend", [1], ["ui.txt"])])
                + "orch-standin[backend]: write api.txt api\n"
                  "orch-standin[frontend]: write ui.txt ui\n", labels=())
    w.github.add_comment(w.repo, n, "@orch split", user="alice")
    run_passes(w, split_done, timeout=240)
    parent = parent_of(w)
    assert parent.status == "succeeded", parent.error
    planner, *rest = children(w, parent)
    assert planner.kind == "planner" and planner.host == "h1"
    assert sorted(t.specialty for t in rest if t.kind == "part") == ["backend", "frontend"]
    assert len(w.github.pulls(w.repo)) == 1
    proc, data = poll(w)
    assert proc.returncode == 0 and data["dispatched"] == [], data
    assert [t.kind for t in tasks(w)].count("split") == 1
