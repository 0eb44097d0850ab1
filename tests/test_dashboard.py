"""docs/grafana/orch-dashboard.json: a Grafana dashboard JSON model importable as is, whose
every query reads metrics (and labels) that `orch metrics` really exposes: renaming a
metric or a label without updating the dashboard fails here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.core.models import HostFacts
from orchestrator.ops.metrics import render

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "orch-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "stat", "timeseries", "heatmap", "state-timeline", "bargauge", "barchart",
               "table", "text"}
METRIC = re.compile(r"\b(orch_[a-z0-9_]+)\b")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _queries(d: dict) -> list[tuple[str, str, str]]:
    """(panel title, expr, legendFormat) of every query, the variables' included."""
    out = [(p["title"], t["expr"], t.get("legendFormat", ""))
           for p in _panels(d) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q, ""))
    return out


def test_dashboard_is_a_grafana_json_model():
    d = _dashboard()
    assert d["title"] and 8 <= len(d["uid"]) <= 40
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["id"] is None, "an exported model has no instance id"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    panels = _panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES, p["type"]
        g = p["gridPos"]
        assert g["h"] > 0 and 0 < g["w"] <= 24 and 0 <= g["x"] < 24 and g["x"] + g["w"] <= 24
        assert g["y"] >= 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            assert isinstance(p["collapsed"], bool) and g["h"] == 1 and g["w"] == 24
            continue
        assert p["title"] and p.get("description")
        assert p["datasource"] == DATASOURCE, p["title"]
        assert set(p["fieldConfig"]) >= {"defaults", "overrides"}
        assert isinstance(p["options"], dict) and p["transformations"] == []
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]


@pytest.fixture(scope="module")
def exposition(ssh_fleet, tmp_path_factory) -> str:
    """`orch metrics` as a scrape sees it: the real CLI, its hosts probed over SSH."""
    d = tmp_path_factory.mktemp("dashboard")
    inventory = ssh_fleet.write_inventory(d / "hosts.yml", ["h1", "h2"],
                                          extra={"h2": {"enabled": False}})
    config = ssh_fleet.write_config(d / "orch.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_HOME=str(d / "state"), ORCH_CONFIG=str(config), ORCH_INVENTORY=str(inventory))
    r = subprocess.run([sys.executable, "-m", "orchestrator", "metrics"], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _labels_by_name(text: str) -> dict[str, set[str]]:
    """Every metric and sample name of the exposition -> the label names it carries."""
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, set())
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
            out[fam.name].update(s.labels)
    return out


def test_every_metric_and_label_the_dashboard_queries_is_exposed(exposition):
    exposed = _labels_by_name(exposition)
    used_somewhere = set()
    for title, expr, legend in _queries(_dashboard()):
        names = set(METRIC.findall(expr))
        assert names, f"{title}: no orch metric in {expr!r}"
        missing = names - set(exposed)
        assert not missing, f"{title}: {sorted(missing)} not in `orch metrics` output"
        used_somewhere |= names
        labels = set().union(*(exposed[n] for n in names))
        replaced = re.findall(r'label_replace\([^,]+,\s*"(\w+)",\s*"[^"]*",\s*"(\w+)"', expr)
        labels |= {dst for dst, _ in replaced}               # made by the query itself
        wanted = {src for _, src in replaced}
        wanted |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        for clause in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
            wanted |= {w.strip() for w in clause.split(",") if w.strip()}
        wanted |= set(re.findall(r"[{,]\s*(\w+)\s*=~?", expr))
        wanted |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
        wanted -= PROMQL_WORDS
        assert wanted <= labels, f"{title}: labels {sorted(wanted - labels)} not on {sorted(names)}"
    # what the issue asks the dashboard to show
    for needed in ("orch_tasks", "orch_tasks_completed_total", "orch_claude_code_errors_total",
                   "orch_task_execution_seconds_bucket", "orch_daily_spend_usd", "orch_host_up",
                   "orch_host_load1", "orch_host_slots", "orch_agent_current_tasks"):
        assert needed in used_somewhere, needed


def test_host_slot_and_cpu_metrics():
    facts = [HostFacts(name="h1", address="a", reachable=True, max_tasks=3, cpus=8, load1=2.0),
             HostFacts(name="h2", address="b", reachable=True, max_tasks=2, enabled=False),
             HostFacts(name="h3", address="c", reachable=False, max_tasks=1)]
    samples = {(s.name, s.labels.get("host")): s.value
               for fam in text_string_to_metric_families(render([], facts)) for s in fam.samples}
    assert samples[("orch_host_slots", "h1")] == 3
    assert samples[("orch_host_slots", "h2")] == 0, "a drained host offers no slots"
    assert samples[("orch_host_slots", "h3")] == 1
    assert samples[("orch_host_cpus", "h1")] == 8
    assert ("orch_host_cpus", "h3") not in samples, "unknown, not zero"


# -- the whole path: orch metrics --textfile -> node_exporter -> Prometheus -> the queries --

GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$host": ".*"}


def _binary(name: str) -> str:
    import shutil
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is missing (CI installs it: .ci/run)")
    pytest.skip(f"{name} is not installed (apt-get install prometheus prometheus-node-exporter)")


def _port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _query(base: str, expr: str, at: float | None = None) -> dict:
    import urllib.error
    import urllib.parse
    args = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    try:
        return _get(f"{base}/api/v1/query?" + urllib.parse.urlencode(args))
    except urllib.error.HTTPError as exc:     # 400: the expression does not parse
        return json.loads(exc.read())


def _finished_tasks(state_dir: Path) -> None:
    """A few tasks through the real store: succeeded and failed ones, with costs."""
    from orchestrator.store import Store
    store = Store(state_dir)
    for n, (end, error) in enumerate([("succeed", None), ("fail", "tests still failing"),
                                      ("succeed", None)], start=1):
        t = store.create("octo/app", n, f"issue {n}", "backend")
        store.start(t.id, "h1", f"orch/{n}-x", f"/w/{t.id}")
        if end == "succeed":
            store.succeed(t.id, cost_usd=0.5, turns=3)
        else:
            store.fail(t.id, error, cost_usd=0.25, turns=2)
    store.create("octo/app", 9, "waiting", "backend")


def test_every_dashboard_query_runs_on_prometheus_over_the_textfile_collector(
        ssh_fleet, tmp_path):
    prometheus, exporter = _binary("prometheus"), _binary("prometheus-node-exporter")
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    inventory = ssh_fleet.write_inventory(tmp_path / "hosts.yml", ["h1", "h2"],
                                          extra={"h2": {"enabled": False}})
    config = ssh_fleet.write_config(tmp_path / "orch.yml",
                                    metrics={"textfile": str(textdir / "orch.prom")})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_HOME=str(tmp_path / "state"), ORCH_CONFIG=str(config),
               ORCH_INVENTORY=str(inventory))
    _finished_tasks(tmp_path / "state")

    def metrics() -> None:       # what cron runs (docs/monitoring.md): metrics.textfile set
        r = subprocess.run([sys.executable, "-m", "orchestrator", "metrics"], env=env,
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr

    metrics()
    ne_port, prom_port = _port(), _port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{ne_port}']}}]\n")
    procs = [subprocess.Popen([exporter, f"--web.listen-address=127.0.0.1:{ne_port}",
                               "--collector.disable-defaults", "--collector.textfile",
                               f"--collector.textfile.directory={textdir}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    base = f"http://127.0.0.1:{prom_port}"
    try:
        import time
        deadline = time.monotonic() + 90
        while True:                            # a few scrapes, the textfile rewritten between
            try:
                up = _query(base, "count_over_time(orch_host_up[1m])")
                if up.get("data", {}).get("result") and \
                        min(float(r["value"][1]) for r in up["data"]["result"]) >= 4:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped orch's textfile"
            metrics()
            time.sleep(0.5)

        empty = []
        for title, expr, _ in _queries(_dashboard()):
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if expr.startswith("label_values("):
                metric, label = re.match(r"label_values\((\w+),\s*(\w+)\)", expr).groups()
                got = _get(f"{base}/api/v1/label/{label}/values?match[]={metric}")
                assert got["status"] == "success" and sorted(got["data"]) == ["h1", "h2"], got
                continue
            got = _query(base, expr)
            assert got["status"] == "success", f"{title}: {expr}: {got.get('error')}"
            if not got["data"]["result"]:
                empty.append(title)
        # Only the day-by-day cost looks ahead (it sums each UTC day from its midnight on):
        # evaluated now it has no data yet; everything else shows the scraped values.
        assert empty == ["Cost per day (UTC)"], empty
        [cost] = [e for t, e, _ in _queries(_dashboard()) if t == "Cost per day (UTC)"]
        day_before = time.time() - 86400 + 30    # the day that starts then includes now
        [spent] = _query(base, cost, at=day_before)["data"]["result"]
        assert float(spent["value"][1]) == 1.25   # 0.5 + 0.25 + 0.5, finished today
        hosts = {r["metric"]["host"]: float(r["value"][1])
                 for r in _query(base, "orch_host_slots")["data"]["result"]}
        assert hosts == {"h1": 2.0, "h2": 0.0}
        done = {r["metric"]["status"]: float(r["value"][1])
                for r in _query(base, "orch_tasks_completed_total")["data"]["result"]}
        assert done["succeeded"] == 2 and done["failed"] == 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
