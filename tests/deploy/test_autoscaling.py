"""What the HPAs scale on, and that the numbers they read mean what the README says.

- The renderer scales on draws actually running (not those blocked on the Gemini quota) and
  on job runs waiting while the quota is not what holds them up; the orchestrator on the
  JetStream work consumer's lag as NATS reports it, never on a metric only an orchestrator
  exports.
- The Prometheus Adapter rules behind those metrics are evaluated with promtool on sample
  series (the NATS exporter's and the renderer's), so that a wrong label or a query that
  goes empty fails here rather than in a cluster.
- The opt-in KEDA component replaces the orchestrator's HPA with a ScaledObject whose
  nats-jetstream trigger names the stream and consumer the orchestrator really uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mangakai_runtime.subjects import Subjects
from tests.deploy.kustomize import (
    K8S,
    NAMESPACE,
    OVERLAYS,
    Obj,
    config_map_of,
    container,
    find,
    nats_conf,
    one,
    overlay_on,
    ports,
    render,
    render_dir,
)
from tests.deploy.metrics_catalog import NATS_EXPORTER_SERIES, promtool, service_series
from tests.deploy.test_k8s_manifests import KUBERNETES_VERSION

ADAPTER_VALUES = K8S / "components" / "queue-autoscaling" / "prometheus-adapter-values.yaml"
README = K8S / "README.md"
PRODUCTION = [o for o in OVERLAYS if o.startswith("prod")]
# The trigger fields KEDA's nats-jetstream scaler reads (keda.sh/docs/scalers/nats-jetstream,
# pkg/scalers/nats_jetstream_scaler.go).
JETSTREAM_TRIGGER_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer"}
JETSTREAM_TRIGGER_OPTIONAL = {"lagThreshold", "activationLagThreshold", "useHttps"}


def adapter_rules() -> dict[str, dict[str, Any]]:
    """Adapter rules by the metric name they publish."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    return {
        rule["name"]["as"]: {**rule, "api": api}
        for api in ("custom", "external")
        for rule in values["rules"][api]
    }


def hpa_metrics(objects: tuple[Obj, ...], name: str) -> dict[str, str]:
    """An HPA's metrics as {metric name or resource: type}."""
    metrics = {}
    for m in one(objects, "HorizontalPodAutoscaler", name)["spec"]["metrics"]:
        kind = m["type"]
        source = m[kind[0].lower() + kind[1:]]
        metrics[source.get("name") or source["metric"]["name"]] = kind
    return metrics


def target(objects: tuple[Obj, ...], hpa: str, metric: str) -> float:
    for m in one(objects, "HorizontalPodAutoscaler", hpa)["spec"]["metrics"]:
        source = m[m["type"][0].lower() + m["type"][1:]]
        if source.get("metric", {}).get("name") == metric:
            return float(source["target"]["averageValue"])
    raise AssertionError(f"{hpa} has no metric {metric}")


def work_names(objects: tuple[Obj, ...]) -> Subjects:
    """The JetStream names the orchestrator uses with the namespace the overlay gives it."""
    return Subjects(config_map_of(objects, "orchestrator")["data"]["NATS_NAMESPACE"])


def env_of(objects: tuple[Obj, ...], deployment: str) -> dict[str, str]:
    return {
        e["name"]: e["value"]
        for e in container(one(objects, "Deployment", deployment))["env"]
        if "value" in e
    }


def test_dev_scales_on_cpu_only() -> None:
    objects = render("dev")
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource"}


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_the_renderer_scales_on_draws_running_and_work_it_could_take(overlay: str) -> None:
    objects = render(overlay)
    assert hpa_metrics(objects, "renderer") == {
        "cpu": "Resource",
        "mangakai_renderer_draws_running": "Pods",
        "mangakai_renderer_work_waiting": "External",
    }
    # Below the pod's slots, so that pods are added before calls queue for one.
    slots = float(env_of(objects, "renderer")["RENDER_CONCURRENCY"])
    assert 0 < target(objects, "renderer", "mangakai_renderer_draws_running") < slots
    # The gauge the HPA reads is the renderer's own, and it is not the one with quota waits.
    assert "mangakai_renderer_draws_running" in service_series("renderer")
    assert "mangakai_renderer_in_flight" not in yaml.safe_dump(adapter_rules())


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_the_orchestrator_scales_on_the_work_consumer_lag_read_from_nats(overlay: str) -> None:
    objects = render(overlay)
    metrics = hpa_metrics(objects, "orchestrator")
    assert metrics == {"cpu": "Resource", "mangakai_jetstream_work_outstanding": "External"}
    rule = adapter_rules()["mangakai_jetstream_work_outstanding"]
    read = set(re.findall(r"\b([a-z_]+)\{", rule["metricsQuery"] + rule["seriesQuery"]))
    assert read <= NATS_EXPORTER_SERIES, "read from NATS, not from the orchestrators"
    assert not read & service_series("orchestrator")
    max_active = float(env_of(objects, "orchestrator")["MAX_ACTIVE_JOBS"])
    assert 0 < target(objects, "orchestrator", "mangakai_jetstream_work_outstanding") < max_active


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_every_metric_an_hpa_reads_is_served_by_an_adapter_rule_for_the_right_work(overlay: str) -> None:
    objects = render(overlay)
    rules = adapter_rules()
    names = work_names(objects)
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource":
                continue
            api = {"Pods": "custom", "External": "external"}[metric["type"]]
            source = metric[metric["type"].lower()]
            rule = rules[source["metric"]["name"]]
            assert rule["api"] == api, source["metric"]["name"]
            if api == "external":
                assert source["metric"]["selector"]["matchLabels"] == {"namespace": NAMESPACE}
    for rule in rules.values():
        query = rule["seriesQuery"] + rule["metricsQuery"]
        for stream in re.findall(r'stream_name="([^"]+)"', query):
            assert stream == names.work_stream
        for consumer in re.findall(r'consumer_name="([^"]+)"', query):
            assert consumer == names.work_consumer


def test_the_readme_names_each_hpas_signals() -> None:
    # The table in deploy/k8s/README.md ("| HPA | signals | why |") against what is deployed.
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*HPA\s*\|\s*signals\s*\|", line))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("` ")] = cells[1]
    for overlay in PRODUCTION:
        objects = render(overlay)
        for hpa in find(objects, "HorizontalPodAutoscaler"):
            name = hpa["metadata"]["name"]
            assert name in rows, f"README.md: no row for the {name} HPA"
            for metric in hpa_metrics(objects, name):
                assert metric.replace("cpu", "CPU") in rows[name], f"README.md: {name} row lacks {metric}"


# The adapter's queries, run by promtool -------------------------------------------------------


def expanded(rule: dict[str, Any]) -> str:
    """A rule's metricsQuery as the adapter sends it for an HPA in the mangakai namespace."""
    series = re.match(r"[a-z_:]+", rule["seriesQuery"].strip("'"))
    assert series
    query = str(rule["metricsQuery"])
    query = query.replace("<<.Series>>", series.group(0))
    query = query.replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}"')
    return query.replace("<<.GroupBy>>", "pod")


def consumer_series(metric: str, pod: str, leader: bool, values: str, namespace: str = NAMESPACE) -> Obj:
    labels = (
        f'namespace="{namespace}",pod="{pod}",stream_name="MANGAKAI_WORK",consumer_name="orchestrator",'
        f'is_consumer_leader="{str(leader).lower()}"'
    )
    return {"series": f"{metric}{{{labels}}}", "values": values}


def run_promql_tests(tmp_path: Path, tests: list[Obj]) -> None:
    path = tmp_path / "adapter.test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_adapter_reads_the_work_outstanding_from_the_consumer_leader(tmp_path: Path) -> None:
    query = expanded(adapter_rules()["mangakai_jetstream_work_outstanding"])
    series = [
        # The leader: 30 waiting, 16 held by orchestrators.
        consumer_series("jetstream_consumer_num_pending", "nats-1", True, "30x5"),
        consumer_series("jetstream_consumer_num_ack_pending", "nats-1", True, "16x5"),
        # A follower's view and another namespace's stack are not ours to count.
        consumer_series("jetstream_consumer_num_pending", "nats-0", False, "99x5"),
        consumer_series("jetstream_consumer_num_ack_pending", "nats-0", False, "0x5"),
        consumer_series("jetstream_consumer_num_pending", "nats-0", True, "500x5", namespace="other"),
        consumer_series("jetstream_consumer_num_ack_pending", "nats-0", True, "0x5", namespace="other"),
    ]
    run_promql_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "2m",
                        "exp_samples": [{"labels": f'{{namespace="{NAMESPACE}"}}', "value": 46}],
                    }
                ],
            }
        ],
    )


def test_the_renderer_backlog_counts_only_while_the_quota_is_not_the_bottleneck(tmp_path: Path) -> None:
    query = expanded(adapter_rules()["mangakai_renderer_work_waiting"])
    backlog = consumer_series("jetstream_consumer_num_pending", "nats-2", True, "30x10")

    def quota_waiting(pod: str, values: str) -> Obj:
        return {
            "series": f'mangakai_renderer_quota_waiting{{namespace="{NAMESPACE}",pod="{pod}"}}',
            "values": values,
        }

    def expect(value: float) -> list[Obj]:
        return [{"labels": f'{{namespace="{NAMESPACE}"}}', "value": value}]

    run_promql_tests(
        tmp_path,
        [
            # Renderers draw freely: the 30 waiting runs count.
            {
                "interval": "1m",
                "input_series": [
                    backlog,
                    quota_waiting("renderer-a", "0x10"),
                    quota_waiting("renderer-b", "0x10"),
                ],
                "promql_expr_test": [{"expr": query, "eval_time": "5m", "exp_samples": expect(30)}],
            },
            # Calls are blocked on the Gemini quota: 0 (not nothing, so the HPA can scale down).
            {
                "interval": "1m",
                "input_series": [
                    backlog,
                    quota_waiting("renderer-a", "0x10"),
                    quota_waiting("renderer-b", "3x10"),
                ],
                "promql_expr_test": [{"expr": query, "eval_time": "5m", "exp_samples": expect(0)}],
            },
            # No renderer reports at all: the backlog counts in full.
            {
                "interval": "1m",
                "input_series": [backlog],
                "promql_expr_test": [{"expr": query, "eval_time": "5m", "exp_samples": expect(30)}],
            },
        ],
    )


def test_the_adapter_reads_draws_running_per_renderer_pod(tmp_path: Path) -> None:
    query = expanded(adapter_rules()["mangakai_renderer_draws_running"])
    series = [
        {
            "series": f'mangakai_renderer_draws_running{{namespace="{NAMESPACE}",pod="renderer-a"}}',
            "values": "5x5",
        },
        {
            "series": f'mangakai_renderer_draws_running{{namespace="{NAMESPACE}",pod="renderer-b"}}',
            "values": "1x5",
        },
    ]
    run_promql_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "2m",
                        "exp_samples": [
                            {"labels": '{pod="renderer-a"}', "value": 5},
                            {"labels": '{pod="renderer-b"}', "value": 1},
                        ],
                    }
                ],
            }
        ],
    )


# KEDA, opt-in ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_keda(tmp_path_factory: pytest.TempPathFactory) -> tuple[Obj, ...]:
    """prod-tokyo with components/keda-autoscaling added, as an operator would."""
    directory = tmp_path_factory.mktemp("keda")
    return render_dir(
        overlay_on(
            directory,
            {
                "namespace": NAMESPACE,
                "resources": ["overlays/prod-tokyo"],
                "components": ["components/keda-autoscaling"],
            },
        )
    )


def test_keda_replaces_the_orchestrators_hpa_with_a_nats_jetstream_scaled_object(
    with_keda: tuple[Obj, ...],
) -> None:
    objects = with_keda
    production = render("prod-tokyo")
    assert find(objects, "HorizontalPodAutoscaler", "orchestrator") == [], "KEDA makes its own"
    assert (
        len(find(objects, "HorizontalPodAutoscaler")) == len(find(production, "HorizontalPodAutoscaler")) - 1
    )
    scaled = one(objects, "ScaledObject", "orchestrator")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == NAMESPACE
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orchestrator"}
    hpa = one(production, "HorizontalPodAutoscaler", "orchestrator")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]

    triggers = {t["type"]: t for t in spec["triggers"]}
    assert set(triggers) == {"nats-jetstream", "cpu"}
    metadata = triggers["nats-jetstream"]["metadata"]
    assert (
        JETSTREAM_TRIGGER_REQUIRED <= set(metadata) <= JETSTREAM_TRIGGER_REQUIRED | JETSTREAM_TRIGGER_OPTIONAL
    )
    assert all(isinstance(v, str) for v in metadata.values()), "trigger metadata is a string map"
    names = work_names(objects)
    assert (metadata["stream"], metadata["consumer"]) == (names.work_stream, names.work_consumer)
    max_active = float(env_of(objects, "orchestrator")["MAX_ACTIVE_JOBS"])
    assert 0 < int(metadata["lagThreshold"]) < max_active
    # No accounts in nats.conf: the global account, which KEDA calls $G.
    assert "accounts" not in nats_conf(objects)
    assert metadata["account"] == "$G"
    # The monitoring endpoint is every node's, through the headless Service (KEDA then asks the
    # consumer's leader by its pod name under that Service).
    nats = one(objects, "StatefulSet", "nats")
    host, port = metadata["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert host == f"{nats['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
    assert int(port) == ports(container(nats, "nats"))["monitor"]
    assert one(objects, "Service", nats["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    assert triggers["cpu"] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}


def test_keda_may_reach_the_nats_monitoring_port_and_the_rest_still_validates(
    with_keda: tuple[Obj, ...],
) -> None:
    objects = with_keda
    errors = []
    for o in objects:
        if o["apiVersion"].startswith("keda.sh/"):
            continue  # no schema bundled; its fields are checked above
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message}")
    assert errors == []
    policy = one(objects, "NetworkPolicy", "nats-from-keda")["spec"]
    nats_labels = one(objects, "StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= nats_labels.items()
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]
    assert [p["port"] for p in rule["ports"]] == ["monitor"]
