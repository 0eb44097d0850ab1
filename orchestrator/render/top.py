"""`orch top` on the terminal: one frame drawn from a Snapshot (ops/snapshot.py), and its
--json shape.

Everything shown that came from outside orch (task titles and errors, what hosts answer,
log lines) goes through `clean()` into rich `Text`: a table cell given a plain string
would be parsed as markup, so no cell here is ever a plain string.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.table import Table
from rich.text import Text

from ..ops.snapshot import Budget, HostRow, Snapshot, TaskRow, snapshot_json
from .log import LogPrinter, clean, render_plain
from .tasks import STATUS_STYLE

BAR_WIDTH = 10
KEYS_HELP = "↑/↓ j/k select · l log · c cancel · q quit"


def top_json(snap: Snapshot) -> dict[str, Any]:
    """`orch top --json`: the snapshot, its log lines rendered as `orch logs` shows them."""
    return snapshot_json(snap, log_lines=render_plain(snap.log))


def _t(value: object, style: str = "") -> Text:
    """A cell: untrusted text made inert (no markup, no control characters)."""
    return Text("" if value is None else clean(str(value)), style=style)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def _gb(mb: int | None) -> str:
    return "?" if mb is None else f"{mb / 1024:.1f}"


def load_bar(per_cpu: float | None, width: int = BAR_WIDTH) -> Text:
    """A bar of load per CPU (full at 1.0), green / yellow / red, and the figure."""
    if per_cpu is None:
        return Text("-", style="dim")
    filled = max(0, min(width, round(per_cpu * width)))
    style = "green" if per_cpu < 0.7 else "yellow" if per_cpu < 1.0 else "red"
    return (Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")
            + Text(f" {per_cpu:.2f}"))


def _table(*columns: tuple[str, dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False,
                  expand=True)
    for name, options in columns:
        table.add_column(name, **options)
    return table


def _state(h: HostRow, interval: float) -> Text:
    if h.up is None:
        return _t("probing…", "dim")
    late = h.waiting_seconds is not None and h.waiting_seconds > interval
    if not h.up:
        return _t(f"down ({h.error_kind or 'error'})", "bold red")
    if late:
        return _t(f"up? no answer {duration(h.waiting_seconds)}", "yellow")
    return _t("up", "green")


def hosts_table(hosts: Iterable[HostRow], interval: float) -> Table:
    table = _table(("host", {"no_wrap": True}),
                   ("specialties", {"max_width": 24, "no_wrap": True, "overflow": "ellipsis"}),
                   ("state", {"no_wrap": True}), ("load/cpu", {"no_wrap": True}),
                   ("mem free", {"justify": "right", "no_wrap": True}),
                   ("disk free", {"justify": "right", "no_wrap": True}),
                   ("slots", {"justify": "right", "no_wrap": True}),
                   ("agent", {"no_wrap": True, "max_width": 28, "overflow": "ellipsis"}),
                   ("note", {"ratio": 1, "no_wrap": True, "overflow": "ellipsis"}))
    for h in hosts:
        name = _t(h.name, "bold") + (Text(" (drained)") if not h.enabled else Text(""))
        mem = "-" if h.mem_total_mb is None else f"{_gb(h.mem_available_mb)}/{_gb(h.mem_total_mb)}G"
        disk = "-" if h.disk_free_mb is None else f"{_gb(h.disk_free_mb)}G"
        note = h.reason if h.up is False else ("; ".join(h.notes) if h.notes else "")
        known = h.up is not None
        table.add_row(name, _t(", ".join(h.specialties)), _state(h, interval),
                      load_bar(h.load_per_cpu) if known else _t("-", "dim"),
                      _t(mem), _t(disk), _t(f"{h.slots_used}/{h.slots_max}"),
                      _t(h.agent_version or "-"),
                      _t(note, "red" if h.up is False else "yellow"),
                      style=None if h.enabled else "dim")
    return table


def _kind(r: TaskRow) -> Text:
    if r.parent:
        return _t(f"{r.kind} of {r.parent}", "cyan")
    return _t(r.kind, "" if r.kind == "issue" else "cyan")


def _id(r: TaskRow) -> Text:
    return _t(("└ " if r.depth else "") + r.id)


def _status(status: str) -> Text:
    return _t(status, STATUS_STYLE.get(status, ""))


def tasks_table(rows: Iterable[TaskRow], selected: str | None) -> Table:
    table = _table(("id", {"no_wrap": True}), ("kind", {"no_wrap": True}),
                   ("issue", {"no_wrap": True}),
                   ("title", {"ratio": 1, "no_wrap": True, "overflow": "ellipsis"}),
                   ("status", {"no_wrap": True}), ("host", {"no_wrap": True}),
                   ("step", {"no_wrap": True}),
                   ("elapsed", {"justify": "right", "no_wrap": True}),
                   ("turns", {"justify": "right", "no_wrap": True}),
                   ("cost", {"justify": "right", "no_wrap": True}))
    for r in rows:
        table.add_row(_id(r), _kind(r), _t(r.ref), _t(r.title), _status(r.status),
                      _t(r.host or "-"), _t(r.step or ("waiting for a host" if r.status == "queued"
                                                        else "?")),
                      _t(duration(r.elapsed_seconds)), _t("-" if r.turns is None else r.turns),
                      _t(money(r.cost_usd)), style="reverse" if r.id == selected else None)
    return table


def _outcome(r: TaskRow) -> Text:
    if r.status == "succeeded":
        return _status(r.status) + _t(f"  {r.pr_url}" if r.pr_url else "")
    return _status(r.status) + _t(f": {r.error}" if r.error else "", "dim")


def finished_table(rows: Iterable[TaskRow], selected: str | None) -> Table:
    table = _table(("id", {"no_wrap": True}), ("kind", {"no_wrap": True}),
                   ("issue", {"no_wrap": True}),
                   ("title", {"ratio": 1, "no_wrap": True, "overflow": "ellipsis", "max_width": 40}),
                   ("outcome", {"ratio": 2, "no_wrap": True, "overflow": "ellipsis"}),
                   ("host", {"no_wrap": True}),
                   ("took", {"justify": "right", "no_wrap": True}),
                   ("turns", {"justify": "right", "no_wrap": True}),
                   ("cost", {"justify": "right", "no_wrap": True}))
    for r in rows:
        table.add_row(_id(r), _kind(r), _t(r.ref), _t(r.title), _outcome(r), _t(r.host or "-"),
                      _t(duration(r.elapsed_seconds)), _t("-" if r.turns is None else r.turns),
                      _t(money(r.cost_usd)), style="reverse" if r.id == selected else None)
    return table


def budget_line(b: Budget) -> Text:
    spent = Text(f"today {money(b.spent_usd)} spent")
    if b.running_usd:
        spent += Text(f" + {money(b.running_usd)} running")
    if b.limit_usd is None:
        return spent + Text(" (no agent.daily_budget_usd)", style="dim")
    used = (b.spent_usd + b.running_usd) / b.limit_usd if b.limit_usd else 1.0
    style = "green" if used < 0.7 else "yellow" if used < 1.0 else "bold red"
    filled = max(0, min(BAR_WIDTH, round(used * BAR_WIDTH)))
    return (spent + Text(f" of {money(b.limit_usd)} ") + Text("█" * filled, style=style)
            + Text("░" * (BAR_WIDTH - filled), style="dim") + Text(f" {used:.0%}", style=style))


def header(snap: Snapshot) -> list[Text]:
    """Two rows: the fleet at a glance, then the day's spend."""
    clock = datetime.fromtimestamp(snap.taken_at, UTC).strftime("%H:%M:%S UTC")
    up = sum(1 for h in snap.hosts if h.up)
    running = sum(1 for r in snap.tasks if r.status == "running")
    queued = sum(1 for r in snap.tasks if r.status == "queued")
    first = (Text("orch top", style="bold") + Text(f" · {clock} · every {snap.interval:g}s · ")
             + Text(f"hosts {up}/{len(snap.hosts)} up",
                    style="green" if up == len(snap.hosts) else "yellow")
             + Text(f" · tasks {running} running, {queued} queued"))
    rows = [first, budget_line(snap.budget)]
    for row in rows:
        row.no_wrap, row.overflow = True, "ellipsis"
    return rows


def log_lines(raw: Iterable[str], printer: LogPrinter | None = None) -> list[Text]:
    """job.log lines as `orch logs` shows them, one terminal row each. Pass the same
    `printer` for lines that follow each other (it keeps the job's current step)."""
    printer = printer or LogPrinter()
    out = []
    for line in raw:
        for text in printer.render(line):
            text.no_wrap = True
            text.overflow = "ellipsis"
            out.append(text)
    return out


def _log_block(snap: Snapshot, rows: int) -> RenderableType:
    row = snap.row(snap.selected)
    if row is None:
        return Text("no tasks", style="dim")
    title = (Text("log of ", style="bold") + _t(row.id, "bold") + Text(" ")
             + _t(row.ref, "bold") + Text(" (l: the whole log)", style="dim"))
    if snap.log_note:
        return Group(title, _t(snap.log_note, "yellow"))
    if snap.log_task != row.id:
        return Group(title, Text("…", style="dim"))
    lines = log_lines(snap.log)[-rows:] if rows > 0 else []
    return Group(title, *(lines or [Text("(empty)", style="dim")]))


LOG_MIN = 4       # log lines a full screen keeps, however long the tables


def fit_rows(height: int, hosts: int, live: int, finished: int) -> tuple[int, int, int]:
    """How many rows the host, live and finished tables get on a screen of `height` rows
    (a "… N more" line included): all of them when they fit above LOG_MIN log lines;
    else finished tasks a fifth of the room, hosts half of the rest, live tasks the rest,
    and what a short list leaves goes to the others."""
    room = max(0, height - _fixed_rows(live, finished) - LOG_MIN)
    if hosts + live + finished <= room:
        return hosts, live, finished
    f = min(finished, max(1, room // 5))
    h = min(hosts, max(2, (room - f) // 2))
    n = min(live, max(1, room - f - h))
    h = min(hosts, max(h, room - f - n))
    return h, n, f


def _fixed_rows(live: int, finished: int) -> int:
    """Rows besides the tables' own: header 2, blank, hosts head 2, blank, tasks head 2 (or
    one "no live tasks"), finished: blank, title, head 2; blank, log title, footer."""
    return 2 + 1 + 2 + 1 + (2 if live else 1) + (4 if finished else 0) + 1 + 1 + 1


def _pick_hosts(hosts: list[HostRow], rows: int) -> tuple[list[HostRow], Text | None]:
    """At most `rows` rows: hosts that are not plainly up first (they are the news), then
    the others in inventory order; the last row says what was left out."""
    if len(hosts) <= rows:
        return hosts, None
    keep = max(1, rows - 1)
    order = sorted(range(len(hosts)), key=lambda i: (hosts[i].up is True
                                                     and not hosts[i].waiting_seconds, i))
    chosen = sorted(order[:keep])
    hidden = [hosts[i] for i in order[keep:]]
    down = sum(1 for h in hidden if h.up is not True)
    more = f"… {len(hidden)} more hosts" + (f" ({down} not up)" if down else ", all up")
    return [hosts[i] for i in chosen], Text(more, style="dim")


def _window(rows: list[TaskRow], selected: str | None, size: int) -> tuple[list[TaskRow], Text | None]:
    """At most `size` rows around the selected one; the last row says what is above and below."""
    if len(rows) <= size:
        return rows, None
    keep = max(1, size - 1)
    at = next((i for i, r in enumerate(rows) if r.id == selected), 0)
    start = max(0, min(at - keep // 2, len(rows) - keep))
    above, below = start, len(rows) - start - keep
    return rows[start:start + keep], Text(f"… {above} above, {below} below", style="dim")


def frame(snap: Snapshot, *, height: int | None = None, footer: Text | None = None,
          log_rows: int = 12) -> RenderableType:
    """The whole view. With `height` (a full screen) the tables are cut to fit (fit_rows)
    and the log fills what is left above the footer; without, every row, at natural height
    (`--once`).

    Every row is drawn without wrapping (long cells end in an ellipsis), so the rows
    each part takes are known: a table is its rows plus a header and a rule."""
    if height is None:
        fit = len(snap.hosts), len(snap.tasks), len(snap.finished)
    else:
        fit = fit_rows(height, len(snap.hosts), len(snap.tasks), len(snap.finished))
    hosts, hosts_more = _pick_hosts(snap.hosts, fit[0])
    live, live_more = _window(snap.tasks, snap.selected, fit[1])
    done, done_more = _window(snap.finished, snap.selected, fit[2])
    parts: list[RenderableType] = [*header(snap), Text(""), hosts_table(hosts, snap.interval)]
    parts += [hosts_more] if hosts_more else []
    parts.append(Text(""))
    if live:
        parts.append(tasks_table(live, snap.selected))
        parts += [live_more] if live_more else []
    else:
        parts.append(Text("no live tasks", style="dim"))
    if done:
        parts += [Text(""), Text("recently finished", style="bold"),
                  finished_table(done, snap.selected)]
        parts += [done_more] if done_more else []
    parts.append(Text(""))
    if height is None:
        parts.append(_log_block(snap, log_rows))
        return Group(*parts)
    used = _fixed_rows(len(live), len(done)) + sum(fit)
    parts.append(_log_block(snap, max(1, height - used)))
    layout = Layout()
    layout.split_column(Layout(Group(*parts), name="body"),
                        Layout(footer or Text(KEYS_HELP, style="dim"), name="footer", size=1))
    return layout


def log_view(title: Text, lines: list[Text], *, height: int, footer: Text) -> RenderableType:
    """The full-screen log of one task (`l`): its last lines, newest at the bottom."""
    body = Group(title, *lines[-max(1, height - 2):])
    layout = Layout()
    layout.split_column(Layout(body, name="body"), Layout(footer, name="footer", size=1))
    return layout
