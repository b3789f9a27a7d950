"""Fixtures for the browser tests: the real mesh, the built web app and Debian's Chromium.

The mesh comes from the integration fixtures (real PostgreSQL, nats-server and
the four services); the gateway's web listener serves the app built by
`make web` (web/dist) and speaks gRPC-Web to it. Chromium is driven by
Playwright. Screenshots land in test-artifacts/ at the top of the checkout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from mangakai_gateway.settings import DEFAULT_ASSETS_DIR
from tests.integration.conftest import make_module_stack, nats, postgres

__all__ = ["make_module_stack", "nats", "postgres"]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("MANGAKAI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous: the first job of a stack also waits for its services to warm up.
expect.set_options(timeout=30_000)

# The services inherit this environment: never let a developer's key send test traffic to Gemini.
os.environ.pop("GEMINI_API_KEY", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def web_assets() -> Path:
    """The built app; `make test` builds it first (`make web`)."""
    index = DEFAULT_ASSETS_DIR / "index.html"
    if not index.is_file():
        pytest.fail(f"the web app is not built ({index} is missing): run `make web`")
    return DEFAULT_ASSETS_DIR


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Module-scoped: while Playwright's sync API is open its event loop counts as running in
    # this thread, which would break asyncio tests that run after the browser tests.
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-system-deps.sh installs Debian's chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A fresh browser profile per test (its own localStorage, so its own MangakAI session)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="en-US"
    )
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab; the test fails if the app threw an uncaught error in it."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield page
    assert not errors, f"uncaught errors in the page: {errors}"


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Saves a screenshot as test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top of a full-page shot
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path
