"""Finished manga in the browser: a Japanese story's panels and pages, downloads, redraws and
versions, the history page, CORS, a phone-sized screen.

The renderer uses its local backend (real drawings, CJK captions) at a small panel size.
"""

from __future__ import annotations

import io
import re
import urllib.request
import zipfile
from pathlib import Path

import grpc
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from mangakai.v1 import jobs_pb2, jobs_pb2_grpc
from mangakai_devstack.stack import Stack, StackFactory
from tests.browser.conftest import ROOT, screenshot

JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")
ALLOWED_ORIGIN = "http://app.example.test:5173"
JA_STORY = ROOT / "samples" / "ja" / "summer_festival.txt"


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory, web_assets: object) -> Stack:
    return make_module_stack(
        overrides={
            "renderer": {"RENDERER_BACKEND": "local", "PANEL_SIZE": "512"},
            # The history test makes 13 jobs in one session at once; the limit has tests of its own.
            "gateway": {"WEB_CORS_ORIGINS": ALLOWED_ORIGIN, "RATE_LIMIT_SESSION_CALLS": "0"},
        }
    )


def web_url(stack: Stack) -> str:
    assert stack.web_url is not None
    return stack.web_url


def generate(page: Page, stack: Stack, story: str, panels: int) -> None:
    page.goto(web_url(stack))
    page.get_by_label("Story", exact=True).fill(story)
    page.get_by_label("Panels", exact=True).fill(str(panels))
    page.get_by_role("button", name="Generate manga").click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-state")).to_have_text("Finished", timeout=90_000)


def test_japanese_story_reads_as_pages_and_downloads(page: Page, stack: Stack, tmp_path: Path) -> None:
    page.goto(web_url(stack))
    page.set_input_files("#story-file", str(JA_STORY))
    expect(page.get_by_label("Story", exact=True)).to_have_value(re.compile("^夏祭りの約束"))
    page.get_by_label("Panels", exact=True).fill("4")
    page.get_by_label("Art style").select_option(label="Shōjo — delicate, expressive")
    page.get_by_label("Mood").select_option(label="Romantic")
    page.get_by_label("4-koma").check()
    screenshot(page, "create-form-japanese")
    page.get_by_role("button", name="Generate manga").click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-state")).to_have_text("Finished", timeout=90_000)
    expect(page.locator("#job-title")).to_have_text("夏祭りの約束")
    expect(page.locator("#panels img")).to_have_count(4)
    for img in page.locator("#panels img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    page.locator("#plan summary").click()
    expect(page.locator("#plan .scenes li")).to_have_count(4)
    screenshot(page, "job-japanese-finished")

    page.get_by_role("tab", name="Read as pages").click()
    expect(page.locator("#pages .page")).to_have_count(1)  # 4-koma: four panels on one page
    expect(page.locator("#pages .page")).to_have_attribute("dir", "rtl")
    expect(page.locator("#pages .page img")).to_have_count(4)
    screenshot(page, "job-japanese-pages")

    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="Download PDF").click()
    pdf_path = tmp_path / "manga.pdf"
    pdf_download.value.save_as(pdf_path)
    assert pdf_download.value.suggested_filename.endswith(".pdf")
    expect(page.locator("#export-status")).to_contain_text("PDF ready")
    pages = len(PdfReader(pdf_path).pages)
    assert pages >= 1
    expect(page.locator("#export-status")).to_have_attribute("data-pages", str(pages))

    with page.expect_download() as cbz_download:
        page.get_by_role("button", name="Download CBZ").click()
    cbz_path = tmp_path / "manga.cbz"
    cbz_download.value.save_as(cbz_path)
    with zipfile.ZipFile(cbz_path) as archive:
        assert any(n.lower().endswith((".png", ".jpg", ".jpeg", ".webp")) for n in archive.namelist())

    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("tab", name="Panels").click()
    screenshot(page, "job-japanese-phone")
    # On a phone the panels stack in at most two columns and nothing overflows sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


def test_redraw_a_panel_and_switch_between_versions(page: Page, stack: Stack, tmp_path: Path) -> None:
    generate(page, stack, "Mara lit the lamp.\n\nThe ferry turned away from the rocks.", panels=2)
    first = page.locator("#panels .panel[data-panel='1']")
    expect(first).to_have_attribute("data-current", "1")
    src_v1 = first.locator("img").get_attribute("src")

    # A reference that is not an image is refused, next to its field.
    bogus = tmp_path / "sketch.png"
    bogus.write_text("not an image")
    first.get_by_role("button", name="Redraw…").click()
    dialog = page.get_by_role("dialog", name="Redraw panel 1")
    dialog.get_by_label("What should change?").fill("make it night, with stars")
    dialog.get_by_label(re.compile("Reference image")).set_input_files(str(bogus))
    dialog.get_by_role("button", name="Redraw panel").click()
    expect(dialog.locator("[data-error-for='reference_image']")).to_contain_text("PNG, JPEG or WebP")
    screenshot(page, "redraw-dialog-error", full_page=False)

    sketch = tmp_path / "sketch-ok.png"
    sketch.write_bytes(png((20, 30, 90)))
    dialog.get_by_label(re.compile("Reference image")).set_input_files(str(sketch))
    dialog.get_by_role("button", name="Redraw panel").click()
    expect(dialog).to_be_hidden()
    expect(first).to_have_attribute("data-current", "2", timeout=60_000)
    expect(page.locator("#job-state")).to_have_text("Finished")
    expect(first).to_have_attribute("data-versions", "2")
    expect(first.locator(".version-label")).to_have_text("Version 2 of 2 (in use)")
    assert first.locator("img").get_attribute("src") != src_v1
    screenshot(page, "panel-redrawn")

    # Flip back to version 1 and choose it: it is what the manga uses from now on, after a reload too.
    first.get_by_role("button", name="Previous version").click()
    expect(first).to_have_attribute("data-shown", "1")
    expect(first.locator(".version-label")).to_have_text("Version 1 of 2")
    first.get_by_role("button", name="Use this version").click()
    expect(first).to_have_attribute("data-current", "1")
    expect(first.locator(".version-label")).to_have_text("Version 1 of 2 (in use)")
    page.reload()
    expect(page.locator("#panels .panel[data-panel='1']")).to_have_attribute("data-current", "1")
    expect(page.locator("#panels .panel[data-panel='1'] img")).to_have_attribute("src", re.compile("/v1\\."))


def test_history_pages_through_the_sessions_jobs(page: Page, stack: Stack) -> None:
    page.goto(web_url(stack) + "history")
    expect(page.locator("#history .empty")).to_contain_text("No manga yet")
    token = page.evaluate("localStorage.getItem('mangakai.session')")
    assert token, "the app keeps its session token in localStorage"
    # Thirteen jobs of this browser's session, made through the gRPC API and watched until they end.
    with grpc.insecure_channel(stack.gateway_address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        names = [
            stub.CreateJob(
                jobs_pb2.CreateJobRequest(story=f"Story number {n}. The cat slept.", panel_count=1),
                metadata=metadata,
                timeout=30,
            ).name
            for n in range(13)
        ]
        for name in names:
            events = list(stub.WatchJob(jobs_pb2.WatchJobRequest(name=name), metadata=metadata, timeout=90))
            assert events[-1].terminal
    page.reload()
    expect(page.locator("#history .history-item")).to_have_count(12)
    expect(page.locator("#history .history-item[data-state='COMPLETED'] img")).to_have_count(12)
    for img in page.locator("#history .history-item img").all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("i => i.naturalWidth > 0"), "a thumbnail did not load"
    expect(page.locator("#history .history-item time").first).to_be_visible()
    page.get_by_role("button", name="Show older").click()
    expect(page.locator("#history .history-item")).to_have_count(13)
    expect(page.get_by_role("button", name="Show older")).to_be_hidden()
    # Newest first: the first job made is the last one listed.
    assert page.locator("#history .history-item").last.get_attribute("data-job") == names[0].split("/")[1]
    screenshot(page, "history")
    page.locator("#history .history-item a").first.click()
    expect(page).to_have_url(JOB_URL)


def test_cors_allows_only_the_configured_origins(stack: Stack) -> None:
    url = web_url(stack) + "mangakai.v1.JobService/CreateJob"

    def preflight(origin: str) -> tuple[int, dict[str, str]]:
        request = urllib.request.Request(
            url,
            method="OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-grpc-web,authorization",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}

    status, headers = preflight(ALLOWED_ORIGIN)
    assert status == 204
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-grpc-web" in headers["access-control-allow-headers"]
    assert "authorization" in headers["access-control-allow-headers"]
    status, headers = preflight("http://elsewhere.example.test")
    assert "access-control-allow-origin" not in headers
