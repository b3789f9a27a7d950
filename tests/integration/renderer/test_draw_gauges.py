"""The renderer's scaling signal counts draws, not calls queued behind the Gemini quota.

A real renderer (with storage, PostgreSQL and NATS of the test stack) draws
with Gemini, the Gemini API being the fake server on loopback, under a budget
of one image per minute. One panel is drawing (the fake holds its answer),
a second one waits for the next minute's budget: the HPA's gauge
`mangakai_renderer_draws_running` must show only the first.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import grpc
import nats
import pytest

from mangakai.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from mangakai_devstack.stack import StackFactory
from mangakai_renderer.quota import WINDOW_SECONDS
from mangakai_runtime.subjects import Subjects
from tests.integration.mesh_client import scrape, wait_for_metric
from tests.integration.renderer.fake_gemini import FakeGemini

# Long enough to look at the gauges; the test cancels both jobs when done.
HELD_SECONDS = 90.0


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


def panel_request(picture: str) -> renderer_pb2.RenderPanelRequest:
    scene = common_pb2.Scene(number=1, setting="a harbour", action="waiting", visual_prompt=picture)
    return renderer_pb2.RenderPanelRequest(
        job=f"jobs/{uuid.uuid4()}",
        scene=scene,
        output_blob_key=f"jobs/{uuid.uuid4()}/panels/01/v1.png",
        fresh_output=True,
    )


async def wait_for_a_fresh_minute(margin: float = 15.0) -> None:
    """Both calls must fall in one quota window: start with at least `margin` seconds of it left."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        await asyncio.sleep(left + 0.5)


async def test_a_call_waiting_for_the_quota_is_not_a_running_draw(
    make_stack: StackFactory, gemini: FakeGemini
) -> None:
    stack = make_stack(
        {
            "renderer": {
                "RENDERER_BACKEND": "gemini",
                "GEMINI_API_KEY": "test",
                "GEMINI_BASE_URL": gemini.url,
                "GEMINI_IMAGES_PER_MINUTE": "1",
                "GEMINI_QUOTA_WAIT_SECONDS": "120",
            }
        }
    )
    renderer = stack.service("renderer")
    metrics = renderer.ports["metrics_port"]
    gemini.add_rule("ok", "Slow picture.", delay=HELD_SECONDS)
    await wait_for_a_fresh_minute()

    async with grpc.aio.insecure_channel(renderer.address) as channel:
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        requests = [panel_request("Slow picture."), panel_request("Second picture.")]
        drawing = stub.RenderPanel(requests[0], timeout=HELD_SECONDS + 30)
        await asyncio.to_thread(gemini.wait_for, lambda rs: any("Slow picture." in r.text for r in rs))
        waiting = stub.RenderPanel(requests[1], timeout=HELD_SECONDS + 30)
        try:
            await wait_for_metric(metrics, "mangakai_renderer_quota_waiting", lambda v: v == 1, within=20)
            assert scrape(metrics, "mangakai_renderer_draws_running") == 1, "only the held call draws"
            assert scrape(metrics, "mangakai_renderer_in_flight") == 2, "in_flight still counts both"
            assert not gemini.image_requests("Second picture."), "the waiting call has not reached Gemini"
        finally:
            # A draw outlives its caller: the calls go, the draws stop only when their jobs are
            # cancelled (on the jobs' control subjects, as CancelJob does).
            drawing.cancel()
            waiting.cancel()
            nc = await nats.connect(stack.nats.url)
            subjects = Subjects(stack.nats_namespace)
            for request in requests:
                await nc.publish(subjects.control(request.job.removeprefix("jobs/")), b"cancel")
            await nc.drain()
        for name in ("quota_waiting", "draws_running", "in_flight"):
            await wait_for_metric(metrics, f"mangakai_renderer_{name}", lambda v: v == 0, within=20)
