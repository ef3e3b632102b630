"""The shipped alert rules, Alertmanager routes and Grafana dashboard use real metrics.

Every metric name in deploy/prometheus/alerts.yml and deploy/grafana's dashboard
must appear in the Prometheus exporter's output after real policies decided.
With promtool installed (scripts/ensure-promtool), the rules are also checked
and unit-tested by promtool, and the dashboard's queries parsed as PromQL; with
amtool, the Alertmanager config is checked and its routes tested.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seawall.integrations import prometheus
from tests.integrations import adaptive, scenario

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "seawall-dashboard.json"

# -- a small PromQL reader: which metric names does an expression use? ------------------

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
_NAME_MATCHER = re.compile(r'__name__\s*=~?\s*"([^"]*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$:])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """Return the metric names an expression selects (not functions, labels or keywords)."""
    if m := re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr):
        expr = m.group(1)  # Grafana's label_values(selector, label)
    names = {n for m in _NAME_MATCHER.findall(expr) for n in m.split("|") if n}
    bare = _STRING.sub('""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # ranges and subqueries
    bare = _GROUPING.sub(" ", bare)
    return names | {n for n in _IDENT.findall(bare) if n.lower() not in _KEYWORDS}


def test_metric_names_reader() -> None:
    """The reader finds selected metrics and skips functions, labels, ranges, keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (dependency, le) (rate(x_bucket{dependency=~"$d",'
        ' le!="+Inf"}[$__rate_interval]))) / on (job) group_left(team) y_total offset 5m'
        " and max_over_time(up[1h:5m]) > 1e3 unless z"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "up", "z"}
    assert metric_names('label_values({__name__=~"a|b_total"}, dependency)') == {"a", "b_total"}


# -- reading the shipped files without a YAML library ---------------------------------------


def alert_rules(text: str) -> list[dict[str, str]]:
    """Return each rule of a rules file as {alert, expr, for, severity} (a tiny YAML reader)."""
    rules: list[dict[str, str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert:\s*(\S+)", line):
            rules.append({"alert": m.group(1)})
        elif m := re.match(r"(\s*)expr:\s*(.*)$", line):
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in {"|", "|-", ">", ">-"}:
                block = []
                for follow in lines[i + 1 :]:
                    if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                        break
                    block.append(follow.strip())
                value = " ".join(block).strip()
            rules[-1]["expr"] = value
        elif (m := re.match(r"\s*(for|severity):\s*(\S+)", line)) and rules:
            rules[-1][m.group(1)] = m.group(2)
    return rules


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL string of a dashboard: panel targets, annotations, variables."""
    queries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "definition"} and isinstance(value, str):
                    queries.append(value)
                elif key == "query" and isinstance(value, dict) and "query" in value:
                    queries.append(value["query"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return queries


def exported_names(tmp_path: Path) -> set[str]:
    """Sample names in the real exporter's text after every policy took every decision."""
    service = scenario.build(tmp_path)
    registry = CollectorRegistry()
    try:
        metrics = prometheus.install(service, registry=registry, listeners=service.listeners)
        limit = adaptive.limit("search", service.clock, service.listeners)
        throttle = adaptive.throttle("search", service.clock, service.listeners)
        metrics.track(limit, throttle)
        scenario.drive_everything(service)
        adaptive.drive(limit, throttle, service.listeners, service.clock)
        text = generate_latest(registry).decode()
    finally:
        service.close()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, str]]:
    return alert_rules(ALERTS.read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


# -- every metric used exists -----------------------------------------------------------------


def test_every_metric_in_alerts_and_dashboard_is_exported(
    rules: list[dict[str, str]], dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """Each metric named by an alert rule or a dashboard query is in the exporter's output."""
    used_by_alerts = {n for rule in rules for n in metric_names(rule["expr"])}
    used_by_dashboard = {n for q in dashboard_queries(dashboard) for n in metric_names(q)}
    assert {"circuit_breaker_state", "bulkhead_rejected_total", "outbox_depth"} <= used_by_alerts
    assert {"dependency_call_duration_seconds_bucket", "fallback_used_total"} <= used_by_dashboard
    assert {
        "adaptive_limit",
        "adaptive_limit_in_flight",
        "adaptive_limit_rejected_total",
        "throttle_probability",
        "throttle_rejected_total",
        "load_shed_total",
    } <= used_by_dashboard
    exported = exported_names(tmp_path)
    assert used_by_alerts - exported == set()
    assert used_by_dashboard - exported == set()


def test_alerts_cover_the_contract(rules: list[dict[str, str]]) -> None:
    """Circuit open > 60 s, bulkhead saturated, retry budget exhausted, outbox growing."""
    by_name = {rule["alert"]: rule for rule in rules}
    circuit = by_name["SeawallCircuitOpen"]
    assert circuit["for"] == "60s"
    assert "circuit_breaker_state" in circuit["expr"]
    assert circuit["severity"] == "critical"
    assert "bulkhead_in_use" in by_name["SeawallBulkheadSaturated"]["expr"]
    assert 'reason="budget"' in by_name["SeawallRetryBudgetExhausted"]["expr"]
    assert "outbox_depth" in by_name["SeawallOutboxGrowing"]["expr"]
    assert all(rule.get("severity") in {"critical", "warning"} for rule in rules)


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    """A dashboard Grafana imports: unique panel ids, a datasource variable, queries per panel."""
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'dependency=~"$dependency"' in target["expr"], panel["title"]


# -- promtool and amtool ----------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    """Find ``name`` on PATH or beside the interpreter (scripts/ensure-promtool puts it there)."""
    beside = Path(sys.executable).parent / name
    path = shutil.which(name) or (str(beside) if beside.is_file() else None)
    if path is None:
        pytest.skip(
            f"{name} is not installed: run scripts/ensure-promtool (it fetches the Debian"
            f" package {package})"
        )
    return path


def _run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules() -> None:
    """promtool accepts alerts.yml: valid PromQL, valid templates."""
    promtool = _tool("promtool", "prometheus")
    assert "SUCCESS: 10 rules found" in _run(promtool, "check", "rules", str(ALERTS))


def test_promtool_unit_tests_the_rules() -> None:
    """The alerts fire on the scenarios of alerts_test.yml (a cycling circuit included)."""
    promtool = _tool("promtool", "prometheus")
    _run(promtool, "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each panel query parses as PromQL (checked by promtool as recording rules)."""
    promtool = _tool("promtool", "prometheus")
    exprs = [
        q.replace("$__rate_interval", "5m").replace("$dependency", ".*")
        for q in dashboard_queries(dashboard)
        if not q.startswith("label_values(")
    ]
    body = "".join(
        f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n"
        for i, e in enumerate(exprs)
    )
    rules_file = tmp_path / "dashboard.yml"
    rules_file.write_text(f"groups:\n  - name: dashboard\n    rules:\n{body}")
    assert f"SUCCESS: {len(exprs)} rules found" in _run(promtool, "check", "rules", str(rules_file))


def test_alertmanager_routes_critical_alerts_to_a_pager(rules: list[dict[str, str]]) -> None:
    """Every receiver a route names exists; critical alerts page (PagerDuty or OpsGenie)."""
    text = ALERTMANAGER.read_text()
    defined = set(re.findall(r"^\s*- name:\s*(\S+)", text, re.MULTILINE))
    routed = set(re.findall(r"receiver:\s*(\S+)", text))
    assert routed <= defined
    assert "pagerduty_configs:" in text
    assert "opsgenie_configs:" in text
    amtool = _tool("amtool", "prometheus-alertmanager")
    _run(amtool, "check-config", str(ALERTMANAGER))
    critical = {r["alert"] for r in rules if r.get("severity") == "critical"}
    assert critical

    def route(*labels: str) -> str:
        args = ("config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        return _run(amtool, *args).strip()

    for alert in critical:
        assert "pagerduty-critical" in route(f"alertname={alert}", "severity=critical")
        assert "opsgenie-critical" in route(
            f"alertname={alert}", "severity=critical", "pager=opsgenie"
        )
    assert route("alertname=SeawallOutboxGrowing", "severity=warning") == "team-chat"
