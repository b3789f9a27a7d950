"""The whole mesh drawing with Gemini, the Gemini API being the fake server on loopback.

Real PostgreSQL, nats-server and the four services; the renderer runs with
RENDERER_BACKEND=gemini and GEMINI_BASE_URL pointing at `FakeGemini`, so
these tests see exactly what the mesh sends to Gemini and how every answer
(images, 429 with RetryInfo, safety blocks) ends up in the job.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from PIL import Image

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session
from tests.integration.renderer.fake_gemini import FakeGemini, RecordedRequest, default_plan, pixel_digest

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State
SHEET = "character model sheet"


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def gemini_stack(make_module_stack: StackFactory, gemini: FakeGemini) -> Stack:
    return make_module_stack(
        overrides={
            "renderer": {
                "RENDERER_BACKEND": "gemini",
                "GEMINI_API_KEY": "test",
                "GEMINI_BASE_URL": gemini.url,
                "GEMINI_IMAGES_PER_MINUTE": "500",
                "GEMINI_REQUESTS_PER_MINUTE": "500",
            },
            "orchestrator": {"ACK_WAIT_SECONDS": "3"},
        }
    )


@pytest.fixture
async def session(gemini_stack: Stack) -> AsyncIterator[Session]:
    async with grpc.aio.insecure_channel(gemini_stack.gateway_address) as channel:
        yield await new_session(channel)


def job_id(job: common_pb2.Job) -> str:
    return job.name.removeprefix("jobs/")


def panel_requests(gemini: FakeGemini, number: int, since: int = 0) -> list[RecordedRequest]:
    return gemini.image_requests(f"Picture {number}.")[since:]


async def test_six_panels_share_one_sheet_survive_a_429_and_a_safety_block(
    session: Session, gemini: FakeGemini
) -> None:
    sheets_before = len(gemini.image_requests(SHEET))
    gemini.add_rule("429", "Picture 3.", retry_delay=1.0)
    # Blocked twice: the first prompt and the softened retry.
    gemini.add_rule("blocked", "Picture 5.", times=2, finish_reason="IMAGE_SAFETY")

    job = await session.create_job(panels=6)
    events = await session.events(job.name)

    assert events[-1].terminal and events[-1].state_changed.state == JobState.STATE_COMPLETED
    sheet_requests = gemini.image_requests(SHEET)[sheets_before:]
    assert len(sheet_requests) == 1, "one character sheet request per job"
    sheet = pixel_digest(sheet_requests[0].image_sent)
    for number in range(1, 7):
        requests = panel_requests(gemini, number)
        assert requests, f"panel {number} was never requested"
        for request in requests:
            assert request.model == "gemini-3.1-flash-image"
            assert request.image_digests[:1] == [sheet], f"panel {number} went without the character sheet"
    refused, retried = panel_requests(gemini, 3)
    assert (refused.status, retried.status) == (429, 200)
    assert retried.received - refused.received >= 1.0, "the 429's retry delay was honoured"
    assert [r.answer for r in panel_requests(gemini, 5)] == ["blocked", "blocked"]
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds.index("character_sheet_ready") < kinds.index("panel_started"), "the sheet comes first"

    done = await session.get(job.name)
    assert done.character_sheet.blob_key == f"jobs/{job_id(done)}/character-sheet.png"
    assert (done.character_sheet.width, done.character_sheet.height) == (300, 200)
    states = {p.number: p.state for p in done.panels}
    assert states == {1: 3, 2: 3, 3: 3, 4: 3, 5: VersionState.STATE_FAILED, 6: 3}
    failed = done.panels[4].versions[0]
    assert failed.failure_reason.startswith("IMAGE_SAFETY"), failed.failure_reason
    for panel in done.panels:
        if panel.number != 5:
            version = panel.versions[0]
            assert version.art.blob_key == version.image.blob_key.replace(".png", ".art.png")
            assert (version.image.width, version.image.height) == (version.art.width, version.art.height)

    regenerated = await session.jobs.RegeneratePanel(
        jobs_pb2.RegeneratePanelRequest(name=job.name, panel=5, instruction="show the moment calmly"),
        metadata=session.metadata,
        timeout=30,
    )
    assert regenerated.versions[-1].version == 2
    after = await session.events(job.name, after=done.last_event_sequence)
    assert after[-1].state_changed.state == JobState.STATE_COMPLETED

    again = await session.get(job.name)
    panel = again.panels[4]
    assert panel.current_version == 2 and panel.versions[1].state == VersionState.STATE_SUCCEEDED
    last = panel_requests(gemini, 5)[-1]
    assert last.status == 200 and "show the moment calmly" in last.text
    assert last.image_digests == [sheet], "the regenerated panel is drawn with the same sheet"
    assert len(gemini.image_requests(SHEET)) == sheets_before + 1, "regenerating does not redraw the sheet"


async def test_regenerating_sends_the_previous_version_and_the_users_reference(
    session: Session, gemini: FakeGemini
) -> None:
    job = await session.create_job(panels=2)
    await session.events(job.name)
    first = panel_requests(gemini, 2)[-1]
    reference = _png_bytes()
    before = (await session.get(job.name)).last_event_sequence

    await session.jobs.RegeneratePanel(
        jobs_pb2.RegeneratePanelRequest(
            name=job.name, panel=2, instruction="add rain", reference_image=reference
        ),
        metadata=session.metadata,
        timeout=30,
    )
    after = await session.events(job.name, after=before)
    assert after[-1].state_changed.state == JobState.STATE_COMPLETED

    last = panel_requests(gemini, 2)[-1]
    assert "add rain" in last.text
    sheet, user, previous = last.image_digests
    assert sheet == first.image_digests[0]
    assert user == pixel_digest(reference)
    assert previous == pixel_digest(first.image_sent)


async def test_an_orchestrator_killed_after_the_sheet_does_not_draw_it_again(
    gemini_stack: Stack, session: Session, gemini: FakeGemini
) -> None:
    marker = uuid.uuid4().hex[:8]
    gemini.plan_override = lambda count: _plan_with_marker(count, marker)
    slow = gemini.add_rule("ok", f"Slow {marker}", delay=1.0, times=None)
    try:
        job = await session.create_job(panels=3)
        head = await session.until(job.name, lambda e: e.HasField("character_sheet_ready"))

        gemini_stack.service("orchestrator").kill()
        gemini_stack.service("orchestrator").restart()

        rest = await session.events(job.name, after=head[-1].sequence)
        assert rest[-1].state_changed.state == JobState.STATE_COMPLETED
    finally:
        gemini.rules.remove(slow)
        gemini.plan_override = None
    sheets = [r for r in gemini.image_requests(SHEET) if f"Hero {marker}" in r.text]
    assert len(sheets) == 1, "the stored sheet is reused after a crash"
    done = await session.get(job.name)
    assert all(p.current_version == 1 for p in done.panels)


def _plan_with_marker(count: int, marker: str) -> dict[str, Any]:
    plan = default_plan(count)
    plan["characters"] = [{"name": f"Hero {marker}", "description": "tall, green scarf"}]
    for scene in plan["scenes"]:
        scene["characters"] = [f"Hero {marker}"]
        scene["dialogue"] = []
        scene["visual_prompt"] += f" Slow {marker}."
    return plan


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 250)).save(buffer, format="PNG")
    return buffer.getvalue()
