"""The Gemini backend against the fake Gemini server: the exact requests it sends and every fault path.

google-genai talks real HTTP to the fake on loopback (GEMINI_BASE_URL), so
these tests see the wire format the real API would get.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from mangakai.v1 import common_pb2, renderer_pb2
from mangakai_renderer.backend import REQUEST_DEADLINE, BackendError, References
from mangakai_renderer.gemini_backend import GeminiBackend
from mangakai_renderer.quota import GeminiQuota, MemoryCounters
from mangakai_renderer.settings import RendererSettings
from tests.integration.renderer.fake_gemini import FakeGemini, default_plan, pixel_digest

STYLE = common_pb2.StylePreferences(mood=common_pb2.MOOD_DRAMATIC)


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


def backend_for(fake: FakeGemini, **settings: Any) -> GeminiBackend:
    values: dict[str, Any] = {"gemini_api_key": "test-key", "gemini_base_url": fake.url} | settings
    quota = GeminiQuota(
        MemoryCounters(),
        "test",
        requests_per_minute=values.pop("rpm", 0),
        images_per_minute=values.pop("ipm", 0),
    )
    return GeminiBackend(RendererSettings(**values), quota)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def panel_request(number: int = 2, **fields: Any) -> renderer_pb2.RenderPanelRequest:
    plan = default_plan(6)
    scene = plan["scenes"][number - 1]
    return renderer_pb2.RenderPanelRequest(
        job="jobs/test",
        scene=common_pb2.Scene(
            number=number,
            setting=scene["setting"],
            characters=scene["characters"],
            action=scene["action"],
            shot=common_pb2.SHOT_TYPE_MEDIUM,
            dialogue=[common_pb2.DialogueLine(speaker="Mara", text=f"Line {number}, said clearly.")],
            visual_prompt=scene["visual_prompt"],
        ),
        characters=[
            common_pb2.Character(name=c["name"], description=c["description"]) for c in plan["characters"]
        ],
        style=STYLE,
        language="en",
        output_blob_key="jobs/test/panels/02/v1.png",
        **fields,
    )


async def test_plan_asks_the_plan_model_for_json_that_follows_the_schema(gemini: FakeGemini) -> None:
    plan = await backend_for(gemini).plan("Mara lights the lamp.", 4, STYLE)

    assert [s.number for s in plan.scenes] == [1, 2, 3, 4]
    assert [c.name for c in plan.characters] == ["Mara", "Tomas"]
    assert plan.scenes[0].shot == common_pb2.SHOT_TYPE_ESTABLISHING
    assert plan.scenes[1].dialogue[0].speaker == "Mara"
    (request,) = gemini.requests
    assert request.model == "gemini-3.8-flash"
    assert request.api_key == "test-key"
    assert request.config["responseMimeType"] == "application/json"
    schema = request.config.get("responseSchema") or request.config["responseJsonSchema"]
    assert {"title", "language", "characters", "scenes"} <= set(schema["properties"])
    assert "exactly 4 panels" in request.text and "Mara lights the lamp." in request.text


async def test_malformed_plans_are_retried_then_fail_with_a_clear_reason(gemini: FakeGemini) -> None:
    gemini.add_rule("malformed", "exactly 3 panels", times=None)

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini).plan("A story.", 3, STYLE)

    assert caught.value.reason == "PLAN_MALFORMED"
    assert "malformed plan" in str(caught.value)
    assert len(gemini.requests) == 3


async def test_a_plan_with_the_wrong_scene_count_is_retried(gemini: FakeGemini) -> None:
    answers = iter([2, 3])
    gemini.plan_override = lambda count: default_plan(next(answers))

    plan = await backend_for(gemini).plan("A story.", 3, STYLE)

    assert len(plan.scenes) == 3
    assert len(gemini.requests) == 2


async def test_a_panel_request_carries_sheet_user_reference_and_previous_version_in_order(
    gemini: FakeGemini,
) -> None:
    sheet, user, previous = png((200, 0, 0)), png((0, 200, 0)), png((0, 0, 200))

    artwork = await backend_for(gemini).draw(
        panel_request(instruction="make it night", aspect_ratio="16:9"),
        References(character_sheet=sheet, user=[user], previous_version=previous),
    )

    (request,) = gemini.requests
    assert request.model == "gemini-3.1-flash-image"
    assert request.config["responseModalities"] == ["IMAGE"]
    assert request.config["imageConfig"]["aspectRatio"] == "16:9"
    assert request.image_digests == [pixel_digest(sheet), pixel_digest(user), pixel_digest(previous)]
    assert "Image 1 is the character sheet" in request.text
    assert "Image 3 is the previous version" in request.text
    assert "make it night" in request.text
    assert "no speech bubbles" in request.text
    assert "Line 2, said clearly." not in request.text, "the dialogue is lettered by us, never by the model"
    # The art is the model's picture untouched; the lettered panel adds our balloon to it.
    assert pixel_digest(_png(artwork.art)) == pixel_digest(request.image_sent)
    assert artwork.lettered.size == artwork.art.size == (320, 180)
    assert artwork.lettered.tobytes() != artwork.art.tobytes()


async def test_a_character_sheet_is_one_image_request_naming_every_character(gemini: FakeGemini) -> None:
    characters = [
        common_pb2.Character(name="Mara", description="red hair"),
        common_pb2.Character(name="Tomas"),
    ]

    sheet = await backend_for(gemini).draw_character_sheet(characters, STYLE, "en", [])

    (request,) = gemini.requests
    assert request.wants_image and request.config["imageConfig"]["aspectRatio"] == "3:2"
    assert "character model sheet" in request.text
    assert "Mara: red hair" in request.text and "Tomas" in request.text
    assert sheet.size == (300, 200)


async def test_429_waits_for_the_servers_retry_delay_then_succeeds(gemini: FakeGemini) -> None:
    gemini.add_rule("429", "Picture 2.", retry_delay=0.6)

    await backend_for(gemini).draw(panel_request(), References())

    refused, accepted = gemini.requests
    assert (refused.status, accepted.status) == (429, 200)
    assert accepted.received - refused.received >= 0.6


async def test_429_with_a_delay_longer_than_allowed_is_returned_with_that_delay(gemini: FakeGemini) -> None:
    gemini.add_rule("429", "Picture 2.", retry_delay=90)

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini, gemini_max_retry_wait_seconds=30).draw(panel_request(), References())

    assert caught.value.reason == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after is not None and caught.value.retry_after >= 90
    assert len(gemini.requests) == 1


async def test_5xx_is_retried_a_bounded_number_of_times(gemini: FakeGemini) -> None:
    gemini.add_rule("500", "Picture 2.", times=None)

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini, gemini_attempts=3).draw(panel_request(), References())

    assert caught.value.reason == "GEMINI_UNAVAILABLE" and caught.value.retryable
    assert [r.status for r in gemini.requests] == [500, 500, 500]


async def test_one_5xx_then_success(gemini: FakeGemini) -> None:
    gemini.add_rule("500", "Picture 2.")

    await backend_for(gemini).draw(panel_request(), References())

    assert [r.status for r in gemini.requests] == [500, 200]


async def test_a_slow_answer_hits_the_call_deadline_and_is_retried(gemini: FakeGemini) -> None:
    gemini.add_rule("ok", "Picture 2.", delay=2.0)
    backend = backend_for(gemini, gemini_timeout_seconds=0.4)

    started = time.monotonic()
    await backend.draw(panel_request(), References())

    assert time.monotonic() - started < 1.9, "the slow call was abandoned at its deadline"
    assert len(gemini.requests) == 2


async def test_the_rpc_deadline_bounds_every_retry(gemini: FakeGemini) -> None:
    gemini.add_rule("ok", "Picture 2.", delay=3.0, times=None)
    token = REQUEST_DEADLINE.set(time.monotonic() + 1.0)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            await backend_for(gemini).draw(panel_request(), References())
    finally:
        REQUEST_DEADLINE.reset(token)

    assert caught.value.reason == "GEMINI_TIMEOUT"
    assert time.monotonic() - started < 1.6


async def test_a_safety_block_is_tried_once_softened_then_fails_with_the_finish_reason(
    gemini: FakeGemini,
) -> None:
    gemini.add_rule("blocked", "Picture 2.", times=None, finish_reason="IMAGE_SAFETY")

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini).draw(panel_request(), References())

    assert caught.value.reason == "IMAGE_SAFETY" and not caught.value.retryable
    first, softened = gemini.requests
    assert "suitable for all ages" not in first.text
    assert "suitable for all ages" in softened.text


async def test_a_softened_prompt_can_rescue_a_blocked_panel(gemini: FakeGemini) -> None:
    gemini.add_rule("blocked", "Picture 2.", finish_reason="IMAGE_PROHIBITED_CONTENT")

    artwork = await backend_for(gemini).draw(panel_request(), References())

    assert [r.answer for r in gemini.requests] == ["blocked", "ok"]
    assert artwork.art.size == (256, 256)


async def test_without_softening_a_block_fails_at_once(gemini: FakeGemini) -> None:
    gemini.add_rule("blocked", "Picture 2.", times=None, finish_reason="IMAGE_SAFETY")

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini, gemini_soften_blocked=False).draw(panel_request(), References())

    assert caught.value.reason == "IMAGE_SAFETY"
    assert len(gemini.requests) == 1


async def test_a_blocked_prompt_reports_the_block_reason(gemini: FakeGemini) -> None:
    gemini.add_rule("prompt-blocked", "Picture 2.", times=None)

    with pytest.raises(BackendError) as caught:
        await backend_for(gemini).draw(panel_request(), References())

    assert caught.value.reason == "PROHIBITED_CONTENT"


async def test_the_image_budget_refuses_calls_beyond_it_with_the_wait(gemini: FakeGemini) -> None:
    backend = backend_for(gemini, ipm=1, gemini_quota_wait_seconds=0)
    await backend.draw(panel_request(), References())

    with pytest.raises(BackendError) as caught:
        await backend.draw(panel_request(3), References())

    assert caught.value.reason == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 61
    assert len(gemini.requests) == 1, "a call over budget never reaches Gemini"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
