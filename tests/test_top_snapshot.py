"""`orch top` without a terminal or a host: the snapshot model (ops/snapshot.py), its
--json shape, the frame drawn from it (render/top.py) and the key decoder."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta

from rich.console import Console

from orchestrator.core.models import HostFacts, Task
from orchestrator.job.remote import parse_status
from orchestrator.ops import snapshot as snap
from orchestrator.render.keys import decode
from orchestrator.render.top import frame, top_json

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
EPOCH = NOW.timestamp()


def iso(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")


def facts(name: str, **kw) -> HostFacts:
    base = dict(name=name, address=f"10.0.0.{len(name)}", reachable=True,
                specialties=["backend"], max_tasks=2, load1=1.0, cpus=4, mem_total_mb=16384,
                mem_available_mb=8192, disk_free_mb=51200, running_tasks=0,
                agent_version="2.1.197 (Claude Code)")
    base.update(kw)
    return HostFacts(**base)


def blank(name: str, **kw) -> HostFacts:
    return HostFacts(name=name, address="a", reachable=False, specialties=["backend"],
                     max_tasks=kw.pop("max_tasks", 2), **kw)


def task(tid: str, status: str, **kw) -> Task:
    base = dict(id=tid, repo="octo/app", issue=int(tid[-1], 16) + 1, title=f"title {tid}",
                specialty="backend", status=status, created_at=iso(30))
    if status != "queued":
        base.update(host="h1", workspace=f"/w/{tid}", started_at=iso(20))
    base.update(kw)
    return Task(**base)


def status(**kw) -> object:
    lines = {"state": "running", "step": "agent", "pgid": "4242", "turns": "", "cost_usd": ""}
    lines.update({k: str(v) for k, v in kw.items()})
    return parse_status("\n".join(f"{k}={v}" for k, v in lines.items()), alive=True)


def sample(f: HostFacts, statuses=None, age: float = 1.0) -> snap.HostSample:
    return snap.HostSample(facts=f, taken_at=EPOCH - age, statuses=statuses or {})


def build(tasks=(), facts_=(), samples=None, **kw) -> snap.Snapshot:
    args = dict(spent_usd=0.0, limit_usd=None, now=EPOCH, interval=2.0)
    args.update(kw)
    return snap.build(tasks=list(tasks), facts=list(facts_), samples=samples or {}, **args)


def test_hosts_up_down_unprobed_and_drained():
    h1, h2 = facts("h1", running_tasks=1), facts("h2", enabled=False)
    down = HostFacts(name="h3", address="a", reachable=False, specialties=["frontend"],
                     max_tasks=1, error_kind="refused", error="connection refused by a:22")
    timed_out = facts("h4", error_kind="probe", error="the probe did not finish within 5s")
    s = build(facts_=[blank("h1"), blank("h2"), blank("h3"), blank("h4"), blank("h5", max_tasks=3)],
              samples={"h1": sample(h1), "h2": sample(h2), "h3": sample(down),
                       "h4": sample(timed_out)},
              waiting={"h5": 4.0})
    rows = {h.name: h for h in s.hosts}
    assert [h.name for h in s.hosts] == ["h1", "h2", "h3", "h4", "h5"]     # inventory order
    assert rows["h1"].up is True and rows["h1"].load_per_cpu == 0.25
    assert rows["h1"].slots_used == 1 and rows["h1"].slots_max == 2
    assert rows["h1"].agent_version == "2.1.197 (Claude Code)"
    assert rows["h1"].age_seconds == 1.0
    assert rows["h2"].enabled is False and rows["h2"].up is True
    assert rows["h3"].up is False and rows["h3"].reason == "connection refused by a:22"
    assert rows["h3"].error_kind == "refused"
    assert rows["h4"].up is False, "a probe that timed out is no answer"
    assert rows["h5"].up is None and rows["h5"].waiting_seconds == 4.0
    assert rows["h5"].slots_max == 3


def test_slots_used_counts_jobs_the_store_started_that_the_host_does_not_show_yet():
    s = build(tasks=[task("aaaaaaa1", "running"), task("aaaaaaa2", "running")],
              facts_=[blank("h1")], samples={"h1": sample(facts("h1", running_tasks=1))})
    assert s.hosts[0].slots_used == 2
    s = build(facts_=[blank("h1")], samples={"h1": sample(facts("h1", running_tasks=2))})
    assert s.hosts[0].slots_used == 2


def test_running_task_shows_step_turns_and_cost_from_its_status_file():
    t = task("abcdef01", "running", turns=None, cost_usd=None)
    st = status(step="tests", turns=7, cost_usd="0.0294", tests="")
    s = build(tasks=[t], facts_=[blank("h1")], samples={"h1": sample(facts("h1"), {t.id: st})})
    [row] = s.tasks
    assert (row.step, row.turns, row.cost_usd) == ("tests", 7, 0.0294)
    assert row.elapsed_seconds == 20 * 60
    assert row.ref == "octo/app#2" and row.kind == "issue" and row.parent is None
    assert s.budget.running_usd == 0.0294


def test_step_labels():
    assert snap.step_label(None) is None
    assert snap.step_label(status(step="clone")) == "clone"
    assert snap.step_label(status(step="tests", tests="failed")) == "tests → fix"
    assert snap.step_label(status(state="succeeded", step="report")) == "ended: succeeded"
    gone = parse_status("state=running\nstep=agent\npgid=9", alive=False)
    assert snap.step_label(gone) == "agent (job gone)"


def test_live_order_running_first_parts_under_their_parent():
    parent = task("0000000a", "running", started_at=iso(50))
    part1 = task("0000000b", "running", started_at=iso(40))
    part2 = task("0000000c", "queued")
    alone = task("0000000d", "queued", created_at=iso(60))
    early = task("0000000e", "running", started_at=iso(55))
    # kind/parent arrive with the task kinds; a task stored before them has neither
    for t, kind in ((parent, "issue"), (part1, "part"), (part2, "part")):
        t.kind = kind
    part1.parent = part2.parent = parent.id
    s = build(tasks=[part2, alone, part1, early, parent], facts_=[blank("h1")])
    assert [(r.id, r.depth) for r in s.tasks] == [
        ("0000000e", 0), ("0000000a", 0), ("0000000b", 1), ("0000000c", 1), ("0000000d", 0)]
    part = s.row("0000000b")
    assert part.kind == "part" and part.parent == "0000000a"
    assert s.row("0000000e").kind == "issue"


def test_finished_most_recent_first_limited_with_outcome():
    done = [task(f"f000000{i}", "succeeded" if i % 2 else "failed", finished_at=iso(10 - i),
                 pr_url="https://gh/pr/1" if i % 2 else None,
                 error=None if i % 2 else "tests still failing", turns=i, cost_usd=0.1 * i)
            for i in range(8)]
    s = build(tasks=done, facts_=[blank("h1")])
    assert [r.id for r in s.finished] == ["f0000007", "f0000006", "f0000005", "f0000004",
                                          "f0000003"]
    assert s.finished[0].pr_url == "https://gh/pr/1"
    assert s.finished[1].error == "tests still failing"
    assert s.finished[0].elapsed_seconds == (20 - 3) * 60


def test_budget_and_selection():
    tasks = [task("0000000a", "running"), task("0000000b", "queued"),
             task("0000000c", "succeeded", finished_at=iso(1))]
    st = {"0000000a": status(cost_usd="1.5")}
    s = build(tasks=tasks, facts_=[blank("h1")], samples={"h1": sample(facts("h1"), st)},
              spent_usd=3.0, limit_usd=10.0)
    assert (s.budget.spent_usd, s.budget.running_usd, s.budget.left_usd) == (3.0, 1.5, 5.5)
    assert s.selected == "0000000a"                     # the first row by default
    assert snap.move(s, s.selected, 1) == "0000000b"
    assert snap.move(s, "0000000b", 5) == "0000000c"     # clamped at the end
    assert snap.move(s, "0000000a", -1) == "0000000a"
    s2 = build(tasks=tasks, facts_=[blank("h1")], selected="gone0000")
    assert s2.selected == "0000000a"
    s3 = build(tasks=tasks, facts_=[blank("h1")], selected="0000000c", log_task="0000000a",
               log=["x"])
    assert s3.log == [] and s3.log_task is None, "a log of another task is not shown"


def test_json_shape_is_plain_json():
    tasks = [task("0000000a", "running"), task("0000000c", "failed", finished_at=iso(1),
                                                error="boom")]
    s = build(tasks=tasks, facts_=[blank("h1"), blank("h2")],
              samples={"h1": sample(facts("h1"), {"0000000a": status(step="push", turns=3)})},
              log_task="0000000a", log=["::orch:: step push", "pushed"])
    data = json.loads(json.dumps(top_json(s), allow_nan=False))
    assert set(data) >= {"taken_at", "interval", "hosts", "tasks", "finished", "budget",
                         "selected", "log"}
    assert data["taken_at"] == "2024-05-02T12:00:00Z"
    assert [h["name"] for h in data["hosts"]] == ["h1", "h2"]
    assert data["hosts"][1]["up"] is None
    assert {"name", "up", "reason", "load_per_cpu", "mem_available_mb", "disk_free_mb",
            "slots_used", "slots_max", "agent_version", "enabled"} <= set(data["hosts"][0])
    [t] = data["tasks"]
    assert (t["id"], t["ref"], t["step"], t["turns"], t["kind"]) == (
        "0000000a", "octo/app#11", "push", 3, "issue")
    assert data["finished"][0]["error"] == "boom"
    assert data["log"]["task_id"] == "0000000a"
    assert data["log"]["lines"][0].startswith("── push")       # rendered as `orch logs` does
    assert data["log"]["lines"][1] == "pushed"


HOSTILE_TITLE = "[bold red]pwn[/bold red] \x1b]0;owned\x07\x1b[2J\u202eevil"
HOSTILE_ERROR = "[link=http://x]click[/link] \x1b[31mred\x1b[0m"


def _draw(s: snap.Snapshot, **kw) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=220, color_system="truecolor").print(frame(s, **kw))
    return out.getvalue()


def test_hostile_titles_errors_and_host_text_render_inert():
    tasks = [task("0000000a", "running", title=HOSTILE_TITLE),
             task("0000000c", "failed", finished_at=iso(1), error=HOSTILE_ERROR,
                  title=HOSTILE_TITLE)]
    evil_host = facts("h1", agent_version="[blink]9.9[/blink]\x1b[5m")
    down = HostFacts(name="h2", address="a", reachable=False, specialties=["[b]x[/b]"],
                     max_tasks=1, error_kind="other", error=HOSTILE_ERROR)
    s = build(tasks=tasks, facts_=[blank("h1"), blank("h2")],
              samples={"h1": sample(evil_host, {"0000000a": status(step="\x1b[2Jagent")}),
                       "h2": sample(down)},
              log_task="0000000a", log=["::orch:: step agent", HOSTILE_TITLE,
                                        json.dumps({"type": "assistant", "message": {"content": [
                                            {"type": "text", "text": HOSTILE_ERROR}]}})])
    for text in (_draw(s), _draw(s, height=60)):
        # the only escape sequences are the colours rich itself writes (SGR) and, on a
        # full screen, nothing else either: no OSC title, no screen clear from the input
        leftovers = re.sub(r"\x1b\[[0-9;]*m", "", text)
        assert "\x1b" not in leftovers, repr(leftovers[leftovers.index("\x1b") - 20:][:60])
        assert "\x07" not in text
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        assert "[bold red]pwn[/bold red]" in plain      # markup shown as text, not applied
        assert "[blink]9.9[/blink]" in plain
        assert "[link=http://x]click[/link]" in plain
        assert "]0;owned" in plain                       # the OSC's text, minus its ESC


def test_full_screen_frame_fits_its_height():
    tasks = [task(f"0000000{i}", "running") for i in range(3)]
    tasks += [task(f"f000000{i}", "failed", finished_at=iso(1), error="x " * 200) for i in range(2)]
    s = build(tasks=tasks, facts_=[blank("h1"), blank("h2")],
              samples={"h1": sample(facts("h1", notes=["n " * 200]))},
              log_task="00000000", log=[f"line {i}" for i in range(200)])
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=30)
    console.print(frame(s, height=30))
    lines = out.getvalue().rstrip("\n").split("\n")
    assert len(lines) == 30
    assert "line 199" in out.getvalue(), "the newest log line is on screen"
    assert "q quit" in lines[-1]


def test_key_decoder():
    assert decode(b"jk") == ["j", "k"]
    assert decode(b"\x1b[A\x1b[B\x1bOA\x1bOB") == ["up", "down", "up", "down"]
    assert decode(b"\x1b[5~\x1b[6~q") == ["pageup", "pagedown", "q"]
    assert decode(b"\x1b[1;5Ax") == ["x"], "an unknown CSI sequence is dropped whole"
    assert decode(b"\x1b") == ["esc"]
    assert decode(b"\r\x00\x7f") == ["enter"]


def test_a_big_fleet_fits_a_small_screen_keeping_down_hosts_and_the_selection():
    names = [f"h{i:02d}" for i in range(50)]
    samples = {n: sample(facts(n)) for n in names}
    for n in ("h07", "h31", "h48"):
        samples[n] = sample(HostFacts(name=n, address="a", reachable=False, max_tasks=2,
                                      error_kind="refused", error="refused"))
    tasks = [task(f"{i:08x}", "queued", created_at=iso(60 - i)) for i in range(30)]
    tasks += [task(f"f{i:07x}", "succeeded", finished_at=iso(1)) for i in range(5)]
    s = build(tasks=tasks, facts_=[blank(n) for n in names], samples=samples,
              selected="00000014")                       # the 21st live task
    out = io.StringIO()
    Console(file=out, width=160, height=40).print(frame(s, height=40))
    text = out.getvalue()
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 40
    for down in ("h07", "h31", "h48"):
        assert any(ln.startswith(down) for ln in lines), f"down host {down} is on screen"
    assert "more hosts" in text and "above" in text and "below" in text
    [selected] = [ln for ln in lines if ln.startswith("00000014")]
    assert "q quit" in lines[-1]


def test_fit_rows_gives_everything_when_it_fits():
    from orchestrator.render.top import fit_rows
    assert fit_rows(60, 3, 2, 1) == (3, 2, 1)
    h, n, f = fit_rows(30, 50, 30, 5)
    assert h >= 2 and n >= 1 and f >= 1 and h + n + f <= 30
