"""deploy/observability: the alert rules (promtool) and the Grafana dashboard.

The rules are checked and unit-tested with promtool (installed by
scripts/install-system-deps.sh from Debian's prometheus package); the dashboard's
queries are parsed by promtool too, and every metric the rules and the dashboard read
must be one the services or NATS's exporter export (metrics_catalog.py), with the label
values the services write (latency buckets, job states).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mangakai.v1 import common_pb2
from mangakai_orchestrator.metrics import finished_label
from mangakai_runtime.telemetry import GRPC_LATENCY
from tests.deploy.metrics_catalog import NATS_EXPORTER_SERIES, SCRAPE_SERIES, promtool, service_series

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
DASHBOARD = OBSERVABILITY / "grafana-job-pipeline.json"
JobState = common_pb2.Job.State


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
        # Nothing answers at all: the product is down (before, only a warning per pod fired).
        "MangakaiGatewayDown",
        "MangakaiWorkUnattended",
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
    assert used - service_series() - SCRAPE_SERIES - NATS_EXPORTER_SERIES == set()


def test_the_metric_name_extraction_sees_every_metric() -> None:
    expr = 'sum by (le, pod) (rate(a_total{x="y{z}"}[5m])) / on (pod) b_seconds_bucket > 2 and up == 0'
    assert metric_names(expr) == {"a_total", "b_seconds_bucket", "up"}
    assert metric_names("ns:c_seconds:p95_5m > 2") == {"ns:c_seconds:p95_5m"}


def all_expressions() -> list[str]:
    return [str(r["expr"]) for r in alert_rules()] + dashboard_queries()


def test_latency_rules_read_a_bucket_the_histogram_has_at_the_slo_threshold() -> None:
    # The bounds as the services write them: observe nothing, just read the exposition.
    GRPC_LATENCY.labels(grpc_service="test.v1.Probe", grpc_method="Buckets")
    try:
        bounds = {
            sample.labels["le"]
            for family in GRPC_LATENCY.collect()
            for sample in family.samples
            if sample.name.endswith("_bucket") and sample.labels.get("grpc_service") == "test.v1.Probe"
        }
    finally:
        GRPC_LATENCY.remove("test.v1.Probe", "Buckets")
    used = {
        m
        for e in all_expressions()
        if "grpc_server_handling_seconds_bucket" in e
        for m in re.findall(r'le="([^"]+)"', e)
    }
    # The SLO is "p95 under 2 s": counted from the 2 s bucket, spelled as the exposition does.
    assert "2.0" in used
    assert used <= bounds, f"no such bucket: {used - bounds}"


def test_job_success_counts_only_completed_jobs_by_the_labels_the_orchestrator_writes() -> None:
    terminal = (JobState.STATE_COMPLETED, JobState.STATE_FAILED, JobState.STATE_CANCELLED)
    labels = {finished_label(state, failed) for state in terminal for failed in (0, 1)}
    assert "partial" in labels, "a completed job with failed panels has a label of its own"
    (rule,) = [r for r in alert_rules() if r.get("alert") == "MangakaiJobSuccessLow"]
    success = re.findall(r'mangakai_jobs_finished_total\{state="([^"]+)"\}', rule["expr"])
    assert set(success) == {"completed"}, "successes are completed jobs only"
    for expr in all_expressions():
        for value in re.findall(r'state(?:!?=)"([^"]+)"', expr):
            if "mangakai_jobs_finished_total" in expr:
                assert value in labels, f"{value!r} is not a state the orchestrator writes"
