"""The dev overlay's Deployments, ConfigMaps and Secret played by `podman kube play` on the built images.

What a cluster gives the pods is replaced by what this machine has, and nothing else is
changed: the pods share the host's network (`hostNetwork`, their container ports then mean
nothing to podman), so the Services' DNS names become loopback addresses, and PostgreSQL and
NATS, StatefulSets that kube play cannot run, are the devstack's servers. The containers keep
the manifests' images, environment, security contexts (non-root, read-only root filesystem,
no capabilities) and emptyDir volumes. Listeners bind loopback only.

podman 4.3 runs no gRPC probes, so the test asks each pod what its probes ask (the standard
health service at the probe's port, for the probe's service name), as the kubelet would.
Its Secret support cannot read a Secret it stored itself (it keeps YAML and parses JSON), so
the Secret becomes a podman secret in the form kube play reads: the Secret's `data` as JSON.
What kube play cannot run at all is listed in deploy/k8s/README.md with where it is tested.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mangakai_devstack.nats import NatsServer
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.services import check_health
from tests.deploy.kustomize import K8S, render_dir
from tests.images.conftest import podman

PLAYED = {"Deployment", "ConfigMap"}
# What kube play cannot run, and why the test does without it (see deploy/k8s/README.md).
NOT_PLAYED = {
    "Namespace",
    "Secret",  # made a podman secret first (above)
    "Service",  # hostNetwork: loopback addresses instead of names
    "ServiceAccount",
    "StatefulSet",  # NATS and PostgreSQL: the devstack's servers
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
}
ADDRESSES = ("ORCHESTRATOR_ADDR", "RENDERER_ADDR", "STORAGE_ADDR")
LOOPBACK = "127.0.0.1"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
IMAGE_USER = 10001


def for_this_host(
    objects: list[dict[str, Any]], postgres: PostgresServer, nats: NatsServer
) -> list[dict[str, Any]]:
    """The objects kube play runs, with the cluster's names and servers replaced by this host's."""
    kinds = {obj["kind"] for obj in objects}
    assert kinds <= PLAYED | NOT_PLAYED, f"the dev overlay has kinds this test does not know: {kinds}"
    played = []
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("mangakai-config"):
            data = obj["data"]
            data |= {"NATS_URL": nats.url, "GRPC_HOST": LOOPBACK, "STORAGE_HTTP_HOST": LOOPBACK}
            for key in ADDRESSES:
                data[key] = f"{LOOPBACK}:{data[key].rsplit(':', 1)[1]}"
        elif obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
            spec["hostNetwork"] = True
            for container in spec["containers"]:
                container.pop("ports", None)
                for variable in container.get("env", []):
                    if variable["name"] == "WEB_HOST":
                        variable["value"] = LOOPBACK
        if obj["kind"] in PLAYED:
            played.append(obj)
    return played


@pytest.fixture(scope="module")
def played(images: Mapping[str, str]) -> Iterator[list[dict[str, Any]]]:
    """The Deployments (as played) once kube play has started their pods; taken down afterwards."""
    base = Path(tempfile.mkdtemp(prefix="mangakai-kube-"))
    postgres = PostgresServer(base / "pg", durable=False)
    nats = NatsServer(base / "nats")
    play_file = base / "play.yaml"
    secrets: list[str] = []
    try:
        postgres.start()
        postgres.create_database("mangakai")
        nats.start()
        objects = [*render_dir(K8S / "bootstrap" / "dev"), *render_dir(K8S / "overlays" / "dev")]
        for secret in (obj for obj in objects if obj["kind"] == "Secret"):
            data = dict(secret.get("data", {}))
            if "DATABASE_URL" in data:
                data["DATABASE_URL"] = base64.b64encode(postgres.dsn_for("mangakai").encode()).decode()
            name = secret["metadata"]["name"]
            (base / f"{name}.json").write_text(json.dumps(data))
            podman("secret", "rm", name, check=False)
            podman("secret", "create", name, str(base / f"{name}.json"))
            secrets.append(name)
        objects = for_this_host(objects, postgres, nats)
        play_file.write_text("".join(f"---\n{json.dumps(obj)}\n" for obj in objects))
        podman("kube", "down", str(play_file), check=False)  # what an interrupted run left
        podman("kube", "play", "--quiet", str(play_file), timeout=300)
        yield [obj for obj in objects if obj["kind"] == "Deployment"]
    finally:
        if play_file.exists():
            podman("kube", "down", str(play_file), timeout=300, check=False)
        for name in secrets:
            podman("secret", "rm", name, check=False)
        nats.stop()
        postgres.stop()


def logs(container: str) -> str:
    done = podman("logs", "--tail=30", container, check=False)
    return done.stdout + done.stderr


def wait_serving(port: int, service: str, deadline: float) -> bool:
    while not check_health(f"{LOOPBACK}:{port}", timeout=2.0, service=service):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_every_pod_becomes_ready_its_probes_passing(played: list[dict[str, Any]]) -> None:
    for deployment in played:
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        startup = container["startupProbe"]
        deadline = time.monotonic() + startup["failureThreshold"] * startup["periodSeconds"]
        for probe in PROBES:
            grpc_probe = container[probe]["grpc"]
            service = grpc_probe.get("service", "")
            assert wait_serving(grpc_probe["port"], service, deadline), (
                f"{name}: {probe} on port {grpc_probe['port']} ({service or 'server'}) never answered SERVING:\n"
                + logs(f"{name}-pod-0-{container['name']}")
            )


def test_the_pods_run_as_the_manifests_say(played: list[dict[str, Any]]) -> None:
    for deployment in played:
        name = deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        inspected = json.loads(podman("container", "inspect", f"{name}-pod-0-{container['name']}").stdout)[0]
        assert inspected["State"]["Running"], inspected["State"]
        assert (
            inspected["HostConfig"]["ReadonlyRootfs"]
            is container["securityContext"]["readOnlyRootFilesystem"]
        )
        assert inspected["Config"]["User"].split(":")[0] == str(IMAGE_USER), inspected["Config"]["User"]
        assert inspected["EffectiveCaps"] in (None, []), inspected["EffectiveCaps"]


def test_the_gateway_pod_serves_the_web_app(played: list[dict[str, Any]]) -> None:
    gateway = next(d for d in played if d["metadata"]["name"] == "gateway")
    env = {v["name"]: v.get("value") for v in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    with urllib.request.urlopen(f"http://{LOOPBACK}:{env['WEB_PORT']}/", timeout=10) as response:
        assert response.status == 200
        assert b"<title>MangakAI" in response.read()
