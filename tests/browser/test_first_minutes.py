"""The first ten minutes in the browser, on a laptop (1280x800) and a phone (390x844).

A new user should reach Generate without scrolling, try a sample story instead of writing one,
read the pages on a phone without zooming (tap a panel to see it large), see the panel numbers
beside vertical Japanese captions rather than over them, see a redraw notice only while the
redraw runs, find no Cancel or Download on a job that does not exist, and learn how it works on
one screen. With MANGAKAI_README_SCREENSHOTS=1 the job page and the page reader are also saved
as the README's pictures (docs/screenshots/).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from mangakai_devstack.stack import Stack, StackFactory
from tests.browser.conftest import ARTIFACTS, ROOT, screenshot

JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
README_SHOTS = ROOT / "docs" / "screenshots"
README_PICTURES = ("job-page-desktop", "page-reader-phone")  # the two the README's web section shows


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, web_assets: object) -> Stack:
    return make_module_stack(overrides={"renderer": {"RENDERER_BACKEND": "local", "PANEL_SIZE": "512"}})


@pytest.fixture(params=list(VIEWPORTS))
def device(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def context(browser: Browser, device: str) -> Iterator[BrowserContext]:
    phone = device == "phone"
    context = browser.new_context(
        viewport=VIEWPORTS[device],  # type: ignore[arg-type]
        has_touch=phone,
        is_mobile=phone,
        device_scale_factor=1,
        locale="en-US",
    )
    yield context
    context.close()


def web_url(stack: Stack) -> str:
    assert stack.web_url is not None
    return stack.web_url


def in_viewport(page: Page, element: Locator) -> bool:
    box = element.bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    return (
        box["y"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


def tap(page: Page, device: str, element: Locator) -> None:
    if device == "phone":
        element.tap()
    else:
        element.click()


def readme_screenshot(page: Page, name: str, top: Locator | None = None) -> None:
    """The viewport (from `top`, else the top of the page) as test-artifacts/<name>.png, and as a
    small README picture when MANGAKAI_README_SCREENSHOTS=1."""
    if top is None:
        path = screenshot(page, name, full_page=False)
    else:
        # Just below the sticky header.
        top.evaluate(
            "e => window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY"
            " - document.querySelector('.top').offsetHeight - 8)"
        )
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled")
    if name in README_PICTURES and os.environ.get("MANGAKAI_README_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            small = image.convert("RGB")
            small.thumbnail((960, 960))
            small.quantize(colors=96, dither=Image.Dither.NONE).save(README_SHOTS / path.name, optimize=True)


def test_a_sample_story_from_the_fold_to_the_page_reader(page: Page, stack: Stack, device: str) -> None:
    page.goto(web_url(stack))
    generate = page.get_by_role("button", name="Generate manga")
    # Reachable without scrolling, on a laptop screen as on a phone.
    assert in_viewport(page, generate), f"Generate is below the fold: {generate.bounding_box()}"
    # No story of one's own needed: a sample in each of the three languages.
    for label in ("English", "日本語", "中文"):
        expect(page.locator("#samples").get_by_role("button", name=label)).to_be_visible()
    page.locator("#samples").get_by_role("button", name="日本語").click()
    expect(page.get_by_label("Story", exact=True)).to_have_value(re.compile("^夏祭りの約束"))
    # Each layout and reading order has its picture.
    expect(page.locator("#field-layout .choice svg")).to_have_count(4)
    expect(page.locator("#field-reading_order .choice svg")).to_have_count(2)
    page.get_by_label("Panels", exact=True).fill("4")
    screenshot(page, f"start-{device}", full_page=False)
    assert in_viewport(page, generate), "Generate scrolled out of view"
    generate.click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-state")).to_have_text("Finished", timeout=90_000)
    expect(page.locator("#panels img")).to_have_count(4)
    for img in page.locator("#panels img").all():
        img.evaluate("i => i.decode()")
    readme_screenshot(page, f"job-page-{device}")

    page.get_by_role("tab", name="Read as pages").click()
    expect(page.locator("#pages .page img")).to_have_count(4)
    for img in page.locator("#pages .page img").all():
        img.evaluate("i => i.decode()")
    width = VIEWPORTS[device]["width"]
    sheet = page.locator("#pages .page").first.bounding_box()
    assert sheet is not None
    if device == "phone":
        # Fit to the width: the page spans the screen, so panels are legible without zooming.
        assert sheet["width"] >= width - 2, sheet
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "sideways scrolling"
    # Panel numbers never cover the image (vertical Japanese captions start at its top right).
    for figure in page.locator("#pages .page-panel").all():
        image, badge = figure.locator("img").bounding_box(), figure.locator(".order").bounding_box()
        assert image is not None and badge is not None
        overlap_x = min(image["x"] + image["width"], badge["x"] + badge["width"]) - max(
            image["x"], badge["x"]
        )
        overlap_y = min(image["y"] + image["height"], badge["y"] + badge["height"]) - max(
            image["y"], badge["y"]
        )
        assert overlap_x <= 0.5 or overlap_y <= 0.5, f"the panel number covers the image: {image} {badge}"
    readme_screenshot(page, f"page-reader-{device}", top=page.locator("#pages .hint"))

    # Tap a panel to see it at the full width of the screen; tap again to close.
    tap(page, device, page.locator("#pages .page-panel").first)
    zoom = page.locator("#zoom")
    expect(zoom).to_be_visible()
    zoomed = zoom.locator("img").bounding_box()
    assert zoomed is not None and zoomed["width"] >= min(width, 1100) * 0.95, zoomed
    screenshot(page, f"panel-zoomed-{device}", full_page=False)
    tap(page, device, zoom)
    expect(zoom).to_be_hidden()

    # The redraw notice lasts exactly as long as the redraw.
    page.get_by_role("tab", name="Panels").click()
    first = page.locator("#panels .panel[data-panel='1']")
    first.get_by_role("button", name="Redraw…").click()
    dialog = page.get_by_role("dialog", name="Redraw panel 1")
    dialog.get_by_label("What should change?").fill("make it night, with stars")
    dialog.get_by_role("button", name="Redraw panel").click()
    expect(page.get_by_text("Redrawing panel 1…")).to_be_visible()
    expect(first).to_have_attribute("data-versions", "2", timeout=60_000)
    expect(first).to_have_attribute("data-state", "SUCCEEDED", timeout=60_000)
    # A toast lingered for 5 s after the redraw started; the panel takes about a second.
    expect(page.get_by_text("Redrawing panel 1")).to_be_hidden(timeout=1_000)
    expect(page.locator("#toast")).to_have_text("Panel 1 redrawn")


def test_a_job_that_does_not_exist_offers_no_cancel_or_download(
    page: Page, stack: Stack, device: str
) -> None:
    page.goto(f"{web_url(stack)}jobs/{uuid.uuid4()}")
    expect(page.locator("#job-title")).to_have_text("Manga not found")
    expect(page.locator("#job-banner")).to_contain_text("does not exist")
    for name in ("Cancel", "Download PDF", "Download CBZ"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    for hidden in ("#job-progress", ".progress", "#plan", ".tabs", "#panels"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.get_by_role("link", name="Start a new manga")).to_be_visible()
    screenshot(page, f"job-not-found-{device}", full_page=False)


def test_how_it_works_fits_one_screen(page: Page, stack: Stack, device: str) -> None:
    page.goto(web_url(stack))
    page.get_by_role("navigation").get_by_role("link", name="How it works").click()
    expect(page.get_by_role("heading", name="How it works", level=1)).to_be_visible()
    steps = page.locator(".flow li strong").all_inner_texts()
    assert [s.split(". ", 1)[-1] for s in steps] == ["Story", "Plan", "Panels", "Pages", "Export"]
    expect(page.locator("#layouts li svg")).to_have_count(4)
    expect(page.locator("#reading-orders li svg")).to_have_count(2)
    local = page.locator("#local-backend")
    expect(local).to_contain_text("It can draw")
    expect(local).to_contain_text("It cannot draw")
    expect(local).to_contain_text("GEMINI_API_KEY")
    if device == "desktop":
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= VIEWPORTS["desktop"]["height"], f"the help is {height}px tall"
    screenshot(page, f"how-it-works-{device}")


def test_readme_pictures_are_small_pngs() -> None:
    for name in README_PICTURES:
        path: Path = README_SHOTS / f"{name}.png"
        assert path.is_file(), f"{path} is missing: run the browser tests with MANGAKAI_README_SCREENSHOTS=1"
        assert path.stat().st_size < 250_000, f"{path} is {path.stat().st_size} bytes"
