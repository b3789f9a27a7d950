"""What each service's image holds, worked out from `.dockerignore` and the Dockerfile's COPYs.

No image is built (there is no Docker daemon here): tests/deploy/dockerfile.py follows the
build context and the COPY instructions for one SERVICE. The context is a replica of the
checkout as a developer or CI has it just before `docker build`: every tracked file, the web
app that `make web` built, and the local state a checkout accumulates (.venv, caches,
node_modules, a running stack's data), so that the answer does not depend on what happens to
be built or lying around on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Dockerfile, Image

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["gateway", "orchestrator", "renderer", "storage"]
# What `make web` leaves in web/dist (Vite names assets after their content).
WEB_BUILD = ["web/dist/index.html", "web/dist/assets/index-3f2a1b.js", "web/dist/assets/index-9c8d7e.css"]
LOCAL_STATE = [
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/grpc/__init__.py",
    ".run/stack.json",
    ".data/blobs/ab/cd",
    "out/manga.pdf",
    "web/node_modules/@connectrpc/connect/package.json",
    "web/src/gen/mangakai/v1/jobs_pb.ts",
    "services/gateway/mangakai_gateway/__pycache__/web.cpython-311.pyc",
    "services/runtime/mangakai_runtime.egg-info/PKG-INFO",
    "gen/python/mangakai_api.egg-info/PKG-INFO",
    "services/renderer/.mypy_cache/3.11/cache.db",
    "test-artifacts/screenshot.png",
]


@pytest.fixture(scope="module")
def dockerfile(tmp_path_factory: pytest.TempPathFactory) -> Dockerfile:
    checkout = tmp_path_factory.mktemp("checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in [*tracked.split("\0"), *WEB_BUILD, *LOCAL_STATE]:
        if name:
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            (checkout / name).touch()
    for name in ("Dockerfile", ".dockerignore"):  # as they are now, committed or not
        shutil.copyfile(ROOT / name, checkout / name)
    return Dockerfile(checkout / "Dockerfile", checkout)


def image(dockerfile: Dockerfile, service: str) -> Image:
    return dockerfile.image({"SERVICE": service})


def test_the_gateway_image_holds_the_built_web_app_where_the_gateway_looks(dockerfile: Dockerfile) -> None:
    gateway = image(dockerfile, "gateway")
    assets = gateway.env.get("WEB_ASSETS_DIR")
    assert assets, "the gateway's image must tell it where the app is (WEB_ASSETS_DIR)"
    for built in WEB_BUILD:
        in_image = f"{assets}/{built.removeprefix('web/dist/')}"
        assert gateway.files.get(in_image) == built, f"{built} is not at {in_image} in the gateway image"


@pytest.mark.parametrize("service", SERVICES)
def test_an_image_is_built_from_the_api_the_runtime_and_its_own_service_only(
    dockerfile: Dockerfile, service: str
) -> None:
    built = image(dockerfile, service)
    own = ("gen/python/", "services/runtime/", f"services/{service}/")
    if service == "gateway":
        own = (*own, "web/dist/")
    foreign = sorted(path for path in built.context_read if not path.startswith(own))
    assert not foreign, f"the {service} image's build reads {foreign[:10]}"
    # ... and everything pip needs to install those three packages.
    for package in ("gen/python", "services/runtime", f"services/{service}"):
        assert f"{package}/pyproject.toml" in built.context_read
    assert f"services/{service}/mangakai_{service}/__main__.py" in built.context_read
    # Only the stages this service needs run, so e.g. a renderer build needs no web/dist.
    assert not built.stages_built & (set(SERVICES) - {service})


def test_local_state_and_other_sources_stay_out_of_the_build_context(dockerfile: Dockerfile) -> None:
    context = dockerfile.context_files()
    leaked = sorted(path for path in context if path in LOCAL_STATE)
    assert not leaked, f"local state in the build context: {leaked}"
    outside = sorted(
        path
        for path in context
        if not path.startswith(("gen/python/", "services/", "web/dist/"))
        and path not in ("Dockerfile", ".dockerignore")
    )
    assert not outside, f"the context holds what no image installs: {outside[:10]}"
