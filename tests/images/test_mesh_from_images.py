"""The whole mesh run from the services' own images, one container per service.

What only a built image can show: that it holds what its service needs and nothing of the
other services, that the service runs as the image's non-root user on a read-only root
filesystem (as deploy/k8s runs it), that the gateway's image serves the web app, and that
`podman run`'s SIGTERM reaches the service (PID 1 of its container) and ends in a clean
drain within the pod's grace period. The SIGTERM test stops the stack: it comes last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect, sync_playwright
from pypdf import PdfReader

from mangakai_devstack.stack import SERVICE_ORDER, Stack
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS
from tests.images.conftest import ROOT, podman

# What only one service's image may hold: its own package and the libraries no other service uses.
OWN_MODULES: Mapping[str, tuple[str, ...]] = {
    "gateway": ("mangakai_gateway", "connectrpc"),
    "orchestrator": ("mangakai_orchestrator",),
    "renderer": ("mangakai_renderer", "google.genai", "reportlab", "budoux"),
    "storage": ("mangakai_storage", "aioboto3"),
}
IMAGE_USER = 10001
STORY = (
    "The Lantern Keeper\n\n"
    "Mara climbed the lighthouse stairs as the storm rolled in. The lamp had gone dark.\n\n"
    'Old Tomas handed her the last match. "Then light it well," he said.\n\n'
    "The flame caught, and far below the ferry turned away from the reef."
)
# Imports every module given as an argument and prints which ones imported.
PROBE = (
    "import importlib, json, sys\n"
    "found = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "        found[name] = True\n"
    "    except ImportError:\n"
    "        found[name] = False\n"
    "print(json.dumps(found))\n"
)


def container_of(stack: Stack, name: str) -> dict[str, object]:
    """`podman inspect` of the container that runs service `name` in `stack`."""
    container = stack.service(name).container
    assert container is not None, f"{name} does not run in a container"
    inspected: list[dict[str, object]] = json.loads(podman("container", "inspect", container).stdout)
    return inspected[0]


def test_each_service_is_a_container_of_its_own_image(image_stack: Stack, images: Mapping[str, str]) -> None:
    for name in SERVICE_ORDER:
        container = container_of(image_stack, name)
        assert container["ImageName"] == f"localhost/{images[name]}", container["ImageName"]
        state = container["State"]
        assert isinstance(state, dict) and state["Running"], state


def test_no_build_setting_reaches_an_image(images: Mapping[str, str]) -> None:
    # make images hands pip the host's trust store; the image must not point at it.
    for image in images.values():
        env = json.loads(podman("image", "inspect", "--format={{json .Config.Env}}", image).stdout)
        assert [v for v in env if v.startswith("PIP_")] == [], f"{image}: {env}"


def test_each_service_runs_as_the_images_non_root_user_on_a_read_only_root(image_stack: Stack) -> None:
    check = (
        "import os\n"
        "try:\n"
        "    open('/opt/mangakai/written-at-run-time', 'w')\n"
        "    print(os.getuid(), 'writable')\n"
        "except OSError as exc:\n"
        "    print(os.getuid(), exc.strerror)\n"
    )
    for name in SERVICE_ORDER:
        container = image_stack.service(name).container
        assert container is not None
        uid, outcome = podman("exec", container, "python", "-c", check).stdout.split(maxsplit=1)
        assert int(uid) == IMAGE_USER, f"{name} runs as uid {uid}"
        assert outcome.strip() == "Read-only file system", f"{name}: {outcome}"


def test_each_image_holds_its_own_service_and_nothing_of_the_others(images: Mapping[str, str]) -> None:
    every_module = [module for modules in OWN_MODULES.values() for module in modules]
    for name, image in images.items():
        found = json.loads(
            podman(
                "run", "--rm", "--network=none", "--read-only", "--entrypoint=python", image,
                "-c", PROBE, *every_module,
            ).stdout
        )  # fmt: skip
        assert [m for m in OWN_MODULES[name] if not found[m]] == [], f"{image} lacks its own modules: {found}"
        foreign = [m for other, modules in OWN_MODULES.items() if other != name for m in modules if found[m]]
        assert foreign == [], f"{image} holds other services' modules {foreign}"


def test_a_job_goes_from_the_cli_to_a_pdf_through_the_containers(image_stack: Stack, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    pdf = tmp_path / "manga.pdf"
    done = subprocess.run(
        [sys.executable, "-m", "mangakai_cli", "generate", str(story), "--panels", "3", "--out", str(pdf)],
        cwd=tmp_path,
        env={
            **os.environ,
            "MANGAKAI_GATEWAY": image_stack.gateway_address,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert re.search(r"jobs/[0-9a-f-]{36} completed", done.stdout), done.stdout
    # A title page and the composed pages, made by the renderer's container from storage's blobs.
    assert len(PdfReader(pdf).pages) >= 2


def test_the_web_app_loads_from_the_gateway_container_and_runs_a_job(image_stack: Stack) -> None:
    url = image_stack.web_url
    assert url is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            response = page.goto(url)
            assert response is not None and response.status == 200, response
            expect(page).to_have_title(re.compile("MangakAI"))
            page.get_by_label("Story", exact=True).fill(STORY)
            page.get_by_label("Panels", exact=True).fill("2")
            page.get_by_role("button", name="Generate manga").click()
            expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"), timeout=30_000)
            # Each panel's image comes from storage's container through a signed URL.
            expect(page.locator("#job-state")).to_have_text("Finished", timeout=60_000)
            expect(page.locator("#panels img")).to_have_count(2)
        finally:
            browser.close()


def grace_seconds(name: str) -> int:
    """The pod's terminationGracePeriodSeconds in deploy/k8s."""
    for document in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / f"{name}.yaml").read_text()):
        if document and document.get("kind") == "Deployment":
            return int(document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    raise AssertionError(f"no Deployment in deploy/k8s/base/{name}.yaml")


@pytest.mark.parametrize("name", list(reversed(SERVICE_ORDER)))
def test_each_container_stops_cleanly_on_sigterm_within_its_grace(image_stack: Stack, name: str) -> None:
    service = image_stack.service(name)
    container = service.container
    grace = grace_seconds(name)
    started = time.monotonic()
    # SIGTERM to `podman run`, which hands it to the service; SIGKILL only after the grace.
    code = service.stop(timeout=grace)
    elapsed = time.monotonic() - started
    assert code == 0, f"{name} exited with {code} after {elapsed:.1f} s (a SIGKILL is -9)"
    assert elapsed < grace
    assert f'"message": "{name} stopped"' in service.log_path.read_text()
    assert podman("ps", "--all", "--quiet", "--filter", f"name=^{container}$").stdout.strip() == ""
