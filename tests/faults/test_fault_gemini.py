"""Faults of Gemini: failing every call, a 500 every third image, a hang every fifth, 429s with
RetryInfo, safety blocks and answers without an image.

The renderer owns the retries of Gemini calls (GEMINI_ATTEMPTS per call);
nobody above it multiplies them: a Gemini that fails every call costs at most
GEMINI_ATTEMPTS image requests per panel and per sheet, counted at the fake.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mangakai.v1 import common_pb2
from mangakai_devstack.stack import Stack
from tests.faults.harness import (
    GEMINI_ATTEMPTS,
    IMAGE_MODEL,
    PANELS,
    SHEET,
    CountingGemini,
    JobState,
    assert_images_downloadable,
    follow,
    gemini_stack,
    record,
)
from tests.integration.mesh_client import Session

VersionState = common_pb2.PanelVersion.State


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    # A hung Gemini call is given up after 5 s (and tried again), not the production 120 s.
    with gemini_stack(
        tmp_path_factory.mktemp("faults-gemini"), gemini, renderer={"GEMINI_TIMEOUT_SECONDS": "5"}
    ) as stack:
        yield stack


async def test_a_gemini_failing_every_call_costs_at_most_gemini_attempts_per_image(
    session: Session, gemini: CountingGemini
) -> None:
    outage = gemini.script("500", model=IMAGE_MODEL, times=None)
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS)
        followed = await follow(session, job.name)
    finally:
        gemini.forget(outage)

    assert followed.last.job_state == JobState.STATE_FAILED, followed.last
    requests = gemini.images(since)
    record("Gemini 500 on every call", GEMINI_ATTEMPTS * (PANELS + 1), len(requests))
    assert len([r for r in requests if SHEET in r.text]) == GEMINI_ATTEMPTS
    for number in range(1, PANELS + 1):
        asked = len([r for r in requests if f"Picture {number}." in r.text])
        assert asked == GEMINI_ATTEMPTS, f"panel {number}: {asked} requests, at most {GEMINI_ATTEMPTS}"
    done = await session.get(job.name)
    assert all(p.state == VersionState.STATE_FAILED for p in done.panels)
    assert "GEMINI_UNAVAILABLE" in done.panels[0].versions[0].failure_reason


async def test_a_500_every_third_image_is_retried_by_the_renderer_alone(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    gemini.fail_every = 3
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS)
        followed = await follow(session, job.name)
    finally:
        gemini.fail_every = 0

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = gemini.images(since)
    answered = [r for r in requests if r.status == 200]
    failed = [r for r in requests if r.status == 500]
    record("Gemini 500 every 3rd image (images paid for)", PANELS + 1, len(answered))
    assert len(answered) == PANELS + 1
    assert failed, "no request failed: the fault never struck"
    assert len(requests) == len(answered) + len(failed)
    done = await session.get(job.name)
    assert all(p.state == VersionState.STATE_SUCCEEDED for p in done.panels)
    await assert_images_downloadable(stack, done)


async def test_429s_with_retry_info_on_the_plan_and_a_panel_are_waited_out(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    on_plan = gemini.script("429", "exactly", retry_delay=1.0)  # the plan prompt asks for "exactly N panels"
    on_panel = gemini.script("429", "Picture 2.", retry_delay=1.0)
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS)
        followed = await follow(session, job.name)
    finally:
        gemini.forget(on_plan)
        gemini.forget(on_panel)

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    assert (on_plan.used, on_panel.used) == (1, 1)
    answered = [r for r in gemini.images(since) if r.status == 200]
    record("Gemini 429 with RetryInfo (plan and one panel)", PANELS + 1, len(answered))
    assert len(answered) == PANELS + 1
    await assert_images_downloadable(stack, await session.get(job.name))


async def test_a_hang_every_fifth_image_is_given_up_and_tried_again(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    gemini.fail_every, gemini.failure = 5, "hang"
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS + 2)  # enough images for the fifth to come
        followed = await follow(session, job.name)
    finally:
        gemini.fail_every, gemini.failure = 0, "500"

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = gemini.images(since)
    hung = [r for r in requests if r.status == 0]  # still held: given up by the renderer
    record("Gemini hangs on every 5th image (images answered)", PANELS + 3, len(requests) - len(hung))
    assert hung, "no request hung: the fault never struck"
    assert len(requests) - len(hung) == PANELS + 3, "each image is paid once, the hung ones apart"
    done = await session.get(job.name)
    assert all(p.state == VersionState.STATE_SUCCEEDED for p in done.panels)
    await assert_images_downloadable(stack, done)


async def test_safety_blocks_and_answers_without_an_image_fail_their_panel_only(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    # Blocked twice: the first prompt and the softened retry; panel 3 answered with no image.
    blocked = gemini.script("blocked", "Picture 2.", times=2, finish_reason="IMAGE_SAFETY")
    empty = gemini.script("blocked", "Picture 3.", finish_reason="STOP")
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS)
        followed = await follow(session, job.name)
    finally:
        gemini.forget(blocked)
        gemini.forget(empty)

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    record("Gemini safety block (+ softened retry) and an answer without an image", PANELS + 2, requests)
    assert requests == PANELS + 2
    done = await session.get(job.name)
    states = [p.state for p in done.panels]
    assert states == [VersionState.STATE_SUCCEEDED, VersionState.STATE_FAILED, VersionState.STATE_FAILED]
    assert done.panels[1].versions[0].failure_reason.startswith("IMAGE_SAFETY")
    assert done.panels[2].versions[0].failure_reason.startswith("NO_IMAGE")
    assert done.failed_panel_count == 2
