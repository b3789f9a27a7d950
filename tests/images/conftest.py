"""Fixtures for the image tests: the services' images, built here, and the mesh run from them.

`images` builds the four images with scripts/build-images.sh, as `make images` does (it
installs podman and mmdebstrap first when they are missing, and reuses images whose inputs
have not changed since the last build on this machine). `image_stack` is the whole mesh of
the integration tests, PostgreSQL and nats-server started by the devstack as processes, with
each service a container of its image on the host's network (`ContainerLauncher`).

Building from scratch takes minutes, counted in the first test that asks for the images:
these tests get a timeout of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mangakai_devstack.containers import ContainerLauncher
from mangakai_devstack.stack import SERVICE_ORDER, Stack

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
PODMAN = [str(ROOT / "scripts" / "podman")]
# A build from scratch on 2 cores took about 6 minutes; a loaded machine may need twice that.
BUILD_TIMEOUT_S = 1500
TEST_TIMEOUT_S = BUILD_TIMEOUT_S + 300

# The services get only the environment the stack gives them, but the CLI runs here.
os.environ.pop("GEMINI_API_KEY", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the project's podman (scripts/podman) and returns what it printed.

    With `check` (the default) an exit code other than 0 fails the test.
    """
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert not check or done.returncode == 0, (
        f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="session")
def images() -> Mapping[str, str]:
    """Service name -> its image, built (or found up to date) by scripts/build-images.sh."""
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        pytest.fail("the web app is not built (web/dist/index.html is missing): run `make web`")
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), *SERVICE_ORDER],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"building the images failed:\n{done.stdout}\n{done.stderr}"
    print(f"\nimages ready in {time.monotonic() - started:.0f} s:\n{done.stdout}")
    return {name: f"mangakai/{name}:dev" for name in SERVICE_ORDER}


@pytest.fixture(scope="module")
def image_stack(images: Mapping[str, str]) -> Iterator[Stack]:
    """The whole mesh, each service a container of its image; stopped after the module."""
    # Not under pytest's tmp_path: when we are root PostgreSQL runs as `postgres`, which cannot
    # enter /tmp/pytest-of-root (mode 0700).
    base = Path(tempfile.mkdtemp(prefix="mangakai-images-"))
    stack = Stack(
        base,
        durable=False,
        launcher=ContainerLauncher(PODMAN, images),
        # A container's first start also sets up its storage: slower than a process.
        service_timeout=120.0,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)
