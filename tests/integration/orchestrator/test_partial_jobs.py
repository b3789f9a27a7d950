"""A job whose panels did not all draw is partial: the API says so and the SLO metric does not count it a success.

The whole mesh runs as real processes; the renderer draws with Gemini, the
Gemini API being the fake server on loopback, which refuses one panel with
IMAGE_SAFETY (the first prompt and the softened retry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session, scrape
from tests.integration.renderer.fake_gemini import FakeGemini

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State
FINISHED = "mangakai_jobs_finished_total"


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
            }
        }
    )


@pytest.fixture
async def session(gemini_stack: Stack) -> AsyncIterator[Session]:
    async with grpc.aio.insecure_channel(gemini_stack.gateway_address) as channel:
        yield await new_session(channel)


def finished(stack: Stack) -> dict[str, float]:
    port = stack.service("orchestrator").ports["metrics_port"]
    return {state: scrape(port, FINISHED, state=state) for state in ("completed", "partial", "failed")}


async def test_a_job_with_a_blocked_panel_is_partial_until_the_panel_is_drawn(
    session: Session, gemini: FakeGemini, gemini_stack: Stack
) -> None:
    before = finished(gemini_stack)
    gemini.add_rule("blocked", "Picture 2.", times=2, finish_reason="IMAGE_SAFETY")

    job = await session.create_job(panels=3)
    events = await session.events(job.name)

    assert events[-1].state_changed.state == JobState.STATE_COMPLETED
    done = await session.get(job.name)
    assert done.state == JobState.STATE_COMPLETED
    assert done.failed_panel_count == 1, "the API tells a partial job from a complete one"
    assert done.panels[1].state == VersionState.STATE_FAILED
    listed = await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session.metadata, timeout=30)
    assert [j.failed_panel_count for j in listed.jobs if j.name == job.name] == [1], "listings say so too"
    after = finished(gemini_stack)
    assert after["partial"] == before["partial"] + 1, "the SLO metric counts it as partial"
    assert after["completed"] == before["completed"], "and not as a success"

    await session.jobs.RegeneratePanel(
        jobs_pb2.RegeneratePanelRequest(name=job.name, panel=2, instruction="show it calmly"),
        metadata=session.metadata,
        timeout=30,
    )
    rerun = await session.events(job.name, after=done.last_event_sequence)

    assert rerun[-1].state_changed.state == JobState.STATE_COMPLETED
    again = await session.get(job.name)
    assert again.failed_panel_count == 0, "every panel drawn: complete"
    final = finished(gemini_stack)
    assert final["completed"] == after["completed"] + 1
    assert final["partial"] == after["partial"]
