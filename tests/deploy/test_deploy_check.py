"""deploy/k8s/check.py: an overlay is refused while placeholder values remain.

The committed production overlays keep their placeholders (hosts under .example, the
database subnet in a documentation range, AWS account 000000000000) and must be refused;
an overlay on top of one that fills every value in with real-looking ones must pass, and so
must dev. Each kind of placeholder is shown to be refused on its own.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize import K8S, OVERLAYS, overlay_on

CHECK = K8S / "check.py"
PRODUCTION = [o for o in OVERLAYS if o.startswith("prod")]


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_k8s_check", CHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check = load_check()


def run_check(overlay: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(overlay)], capture_output=True, text=True, timeout=120, check=False
    )


def json_patch(kind: str, name: str, operations: list[tuple[str, Any]]) -> dict[str, Any]:
    ops = [{"op": "replace", "path": path, "value": value} for path, value in operations]
    return {"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(ops)}


# Real-looking values for prod-tokyo, one entry per kind of placeholder.
FILLED: dict[str, dict[str, Any]] = {
    "hosts": json_patch(
        "Ingress",
        "gateway",
        [
            ("/spec/tls/0/hosts", ["api.tokyo.mangakai.jp", "app.tokyo.mangakai.jp"]),
            ("/spec/rules/0/host", "api.tokyo.mangakai.jp"),
            ("/spec/rules/1/host", "app.tokyo.mangakai.jp"),
        ],
    ),
    "database host": json_patch(
        "Service",
        "postgres",
        [("/spec/externalName", "mangakai.cluster-c9x1.ap-northeast-1.rds.amazonaws.com")],
    ),
    "database subnet": json_patch(
        "NetworkPolicy", "postgres-egress", [("/spec/egress/0/to/0/ipBlock/cidr", "10.30.32.0/20")]
    ),
    "role account": json_patch(
        "ServiceAccount",
        "storage",
        [
            (
                "/metadata/annotations/eks.amazonaws.com~1role-arn",
                "arn:aws:iam::482910375561:role/mangakai-storage-ap-northeast-1",
            )
        ],
    ),
}
FILLED_CONFIG = [
    "CDN_BASE_URL=https://cdn.tokyo.mangakai.jp",
    "WEB_CORS_ORIGINS=https://mangakai.jp",
    "TRUSTED_PROXIES=10.30.0.0/16",
]


def filled_overlay(directory: Path, leave_out: str | None = None) -> Path:
    return overlay_on(
        directory,
        {
            "resources": ["overlays/prod-tokyo"],
            "configMapGenerator": [
                {
                    "name": "mangakai-config",
                    "behavior": "merge",
                    "literals": [literal for literal in FILLED_CONFIG if literal != leave_out],
                }
            ],
            "patches": [patch for kind, patch in FILLED.items() if kind != leave_out],
        },
    )


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_the_committed_production_overlays_are_refused(overlay: str) -> None:
    result = run_check(K8S / "overlays" / overlay)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    for expected in (
        "Ingress/gateway spec.rules[0].host",
        "Service/postgres spec.externalName",
        "NetworkPolicy/postgres-egress spec.egress[0].to[0].ipBlock.cidr",
        "eks.amazonaws.com/role-arn",
        "AWS account 000000000000",
        "documentation address range",
        "reserved example domain",
    ):
        assert expected in out, f"{expected!r} not reported:\n{out}"


def test_dev_is_accepted() -> None:
    result = run_check(K8S / "overlays" / "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no placeholder values" in result.stdout


def test_a_production_overlay_with_every_value_filled_in_is_accepted(tmp_path: Path) -> None:
    result = run_check(filled_overlay(tmp_path / "filled"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("left", [*FILLED, *FILLED_CONFIG])
def test_each_placeholder_left_alone_is_refused(tmp_path: Path, left: str) -> None:
    result = run_check(filled_overlay(tmp_path / "partly", leave_out=left))
    assert result.returncode == 1, f"{left} left as a placeholder, yet accepted:\n{result.stdout}"


def test_the_placeholder_rules() -> None:
    def reasons(value: str) -> list[str]:
        return list(check.reasons(value))

    assert reasons("set-by-overlay")
    assert reasons("postgres.set-by-overlay.invalid")
    assert reasons("https://api.example.com/v1")
    assert reasons("node.cluster.test")
    assert reasons("192.0.2.0/24") and reasons("198.51.100.7") and reasons("2001:db8::/32")
    assert reasons("arn:aws:iam::000000000000:role/x")
    # Real values, and the wide ranges the egress policies use, pass.
    for value in (
        "0.0.0.0/0",
        "10.0.0.0/8",
        "arn:aws:iam::482910375561:role/x",
        "api.mangakai.localhost",
        "http://localhost:8090",
        "mangakai.v1.JobService",
        "nats://nats-0.nats-headless:6222",
        "pytest.ini",
    ):
        assert reasons(value) == [], value


def test_an_overlay_that_does_not_render_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [does-not-exist]\n")
    result = run_check(tmp_path)
    assert result.returncode == 2
    assert "does not render" in result.stderr
