"""deploy/observability: the alert rules (promtool) and the Grafana dashboard.

The rules are checked and unit-tested with promtool (installed by
scripts/install-system-deps.sh from Debian's prometheus package); the dashboard's
queries are parsed by promtool too, and every metric the rules and the dashboard read
must be one the services export.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

import mangakai_orchestrator.metrics
import mangakai_orchestrator.worker
import mangakai_renderer.metrics
import mangakai_runtime.telemetry
import mangakai_storage.metrics

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
DASHBOARD = OBSERVABILITY / "grafana-job-pipeline.json"
METRIC_MODULES = (
    mangakai_runtime.telemetry,
    mangakai_orchestrator.metrics,
    mangakai_orchestrator.worker,
    mangakai_renderer.metrics,
    mangakai_storage.metrics,
)
# Series Prometheus itself adds to every target.
SCRAPE_SERIES = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/install-system-deps.sh"
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60, check=False)


def exported_series() -> set[str]:
    """Every series name the services' metrics can produce."""
    names: set[str] = set()
    for module in METRIC_MODULES:
        for value in vars(module).values():
            if not isinstance(value, prometheus_client.metrics.MetricWrapperBase):
                continue
            for family in value.describe():
                base = family.name
                if family.type == "counter":
                    names |= {f"{base}_total", f"{base}_created"}
                elif family.type == "histogram":
                    names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
                else:
                    names.add(base)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or recorded series)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_matchers
    )
    names = set(re.findall(r"(?<![\w:])([a-z_:][a-z0-9_:]*)\s*(?=\{|\[|\)|$|\s|==|>|<|/)", without_groupings))
    functions = re.findall(r"\b([a-z_]+)\s*\(", without_groupings)
    keywords = {"and", "or", "unless", "by", "le", "offset", "bool"}
    return {n for n in names if n not in keywords and n not in functions and not n.isdigit()}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_when_and_only_when_a_target_is_missed() -> None:
    # alerts.test.yaml feeds series to every target's alert: firing and quiet cases.
    result = promtool("test", "rules", str(OBSERVABILITY / "alerts.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_target_has_a_paging_alert_with_a_summary() -> None:
    alerts = {rule["alert"]: rule for rule in alert_rules() if "alert" in rule}
    for name in (
        "MangakaiApiLatencyHigh",
        "MangakaiApiErrorRateHigh",
        "MangakaiJobSuccessLow",
        "MangakaiAvailabilityBudgetBurn",
        "MangakaiWorkBacklogOld",
    ):
        assert alerts[name]["labels"]["severity"] == "page"
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("page", "warning")
        assert rule["annotations"]["summary"]


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": q.replace("$namespace", "mangakai")}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_rules_and_dashboard_read_only_metrics_the_services_export(source: str) -> None:
    exprs = [str(r["expr"]) for r in alert_rules()] if source == "alerts" else dashboard_queries()
    recorded = {str(r["record"]) for r in alert_rules() if "record" in r}
    used = set().union(*(metric_names(e) for e in exprs)) - recorded
    assert used, "the expressions name metrics"
    assert used - exported_series() - SCRAPE_SERIES == set()


def test_the_metric_name_extraction_sees_every_metric() -> None:
    expr = 'sum by (le, pod) (rate(a_total{x="y{z}"}[5m])) / on (pod) b_seconds_bucket > 2 and up == 0'
    assert metric_names(expr) == {"a_total", "b_seconds_bucket", "up"}
    assert metric_names("ns:c_seconds:p95_5m > 2") == {"ns:c_seconds:p95_5m"}
