"""A job followed live in the browser: panels appear as drawn, reloads resume, cancel, validation.

The renderer takes a fixed 1.2 s per panel and the orchestrator draws one
panel at a time, so a 4-panel job runs for about five seconds: long enough to
reload or cancel in the middle.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from mangakai_devstack.stack import Stack, StackFactory
from tests.browser.conftest import screenshot

STORY = (
    "The Lantern Keeper\n\n"
    "Mara climbed the lighthouse stairs as the storm rolled in. The lamp had gone dark.\n\n"
    '"We have ten minutes before the ferry reaches the rocks," said Mara.\n\n'
    'Old Tomas handed her the last match. "Then light it well," he said.\n\n'
    "The flame caught. Far below, the ferry turned away from the reef, and the passengers cheered."
)
JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")


@pytest.fixture(scope="module")
def slow_stack(make_module_stack: StackFactory, web_assets: object) -> Stack:
    return make_module_stack(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "1200"},
            "orchestrator": {"RENDER_CONCURRENCY": "1"},
        }
    )


def start_job(page: Page, stack: Stack, story: str = STORY, panels: int = 4) -> None:
    assert stack.web_url is not None
    page.goto(stack.web_url)
    page.get_by_label("Story", exact=True).fill(story)
    page.get_by_label("Panels", exact=True).fill(str(panels))
    page.get_by_role("button", name="Generate manga").click()
    expect(page).to_have_url(JOB_URL)


def test_four_panels_appear_as_they_are_drawn(page: Page, slow_stack: Stack) -> None:
    start_job(page, slow_stack)
    expect(page.locator("#plan summary")).to_contain_text("4 scenes")
    # Images arrive one by one while the job runs: at some point some, but not all, are shown.
    expect(page.locator("#panels img")).not_to_have_count(0)
    assert page.locator("#panels img").count() < 4
    expect(page.locator("#connection")).to_have_text("Live")
    screenshot(page, "job-in-progress")
    expect(page.locator("#job-state")).to_have_text("Finished")
    expect(page.locator("#panels img")).to_have_count(4)
    expect(page.locator("#panels .panel[data-state='SUCCEEDED']")).to_have_count(4)
    for img in page.locator("#panels img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), "a panel image did not load"
        src = img.get_attribute("src") or ""
        assert src.startswith(f"{slow_stack.storage_http_url}/") and "sig=" in src, f"not a signed URL: {src}"
    expect(page.locator("#job-progress")).to_have_text("100%")


def test_reload_mid_job_resumes_without_duplicates_or_gaps(page: Page, slow_stack: Stack) -> None:
    start_job(page, slow_stack)
    expect(page.locator("#panels img")).to_have_count(1)
    url = page.url
    page.reload()
    expect(page).to_have_url(url)
    expect(page.locator("#connection")).to_have_text("Live")
    first = (
        int(page.locator("#activity li").last.get_attribute("data-seq") or 0)
        if page.locator("#activity li").count()
        else None
    )
    expect(page.locator("#job-state")).to_have_text("Finished")
    expect(page.locator("#panels .panel")).to_have_count(4)
    expect(page.locator("#panels img")).to_have_count(4)
    numbers = page.locator("#panels .panel").evaluate_all("els => els.map(e => e.dataset.panel)")
    assert numbers == ["1", "2", "3", "4"]
    for panel in page.locator("#panels .panel").all():
        assert panel.get_attribute("data-versions") == "1", "a panel version was applied twice"
    # The events received after the reload are each shown once, in order, without a gap.
    seqs = [
        int(s)
        for s in page.locator("#activity li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    seqs.reverse()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert first is None or seqs[0] == first
    # Closing the tab and coming back to the link shows the finished job.
    page.goto("about:blank")
    page.goto(url)
    expect(page.locator("#panels img")).to_have_count(4)


def test_cancel_stops_the_job(page: Page, slow_stack: Stack) -> None:
    start_job(page, slow_stack, panels=6)
    expect(page.locator("#panels img")).to_have_count(1)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-state")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    drawn = page.locator("#panels img").count()
    assert drawn < 6
    # Progress counts drawn panels over panels still wanted: it shows how far the job got.
    expect(page.locator("#job-progress")).to_have_text(f"{100 * drawn // 6}%")
    expect(page.locator("#panels .panel[data-state='CANCELLED']")).not_to_have_count(0)
    screenshot(page, "job-cancelled")
    # Nothing more is drawn after the cancellation.
    page.reload()
    expect(page.locator("#job-state")).to_have_text("Cancelled")
    assert page.locator("#panels img").count() == drawn


def test_validation_error_is_shown_next_to_its_field(page: Page, slow_stack: Stack) -> None:
    assert slow_stack.web_url is not None
    page.goto(slow_stack.web_url)
    page.get_by_label("Story", exact=True).fill("   \n  ")
    page.get_by_label("Panels", exact=True).fill("30")
    page.get_by_role("button", name="Generate manga").click()
    story_error = page.locator("[data-error-for='story']")
    expect(story_error).to_be_visible()
    expect(story_error).to_contain_text("The story is required")
    expect(page.locator("[data-error-for='panel_count']")).to_contain_text("1 to 24")
    expect(page.get_by_label("Story", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(slow_stack.web_url)  # no job was created
    screenshot(page, "validation-error")


def test_a_dropped_stream_reconnects_by_itself(page: Page, slow_stack: Stack) -> None:
    start_job(page, slow_stack, panels=4)
    expect(page.locator("#panels img")).to_have_count(1)
    # The gateway goes away mid-job and comes back on the same ports (its web port is sticky).
    slow_stack.service("gateway").restart()
    expect(page.locator("#job-state")).to_have_text("Finished")
    expect(page.locator("#panels img")).to_have_count(4)
    for panel in page.locator("#panels .panel").all():
        assert panel.get_attribute("data-versions") == "1"
    seqs = [
        int(s)
        for s in page.locator("#activity li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)) and len(set(seqs)) == len(seqs), seqs
    # The page noticed the cut and said so.
    expect(page.locator("#activity li.connection-note").first).to_contain_text("Connection lost")
