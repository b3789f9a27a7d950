"""SIGKILL of the renderer, storage and the gateway while a job's draws are in flight.

The killed service is started again at once (on its ports, as a pod would be).
Only a renderer's own death loses draws: the Gemini requests it had in flight
are paid for and asked again by the restarted renderer, so for it the expected
count is panels + sheet + those in flight at the kill; any other death costs
nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from mangakai_devstack.stack import Stack
from tests.faults.harness import (
    PANELS,
    CountingGemini,
    JobState,
    assert_images_downloadable,
    follow,
    gemini_stack,
    record,
    wait_until,
)
from tests.integration.mesh_client import Session

RECOVERY_BOUND = 20.0  # restart included, on a loaded machine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    with gemini_stack(tmp_path_factory.mktemp("faults-services"), gemini) as stack:
        yield stack


@pytest.mark.parametrize("name", ["renderer", "storage", "gateway"])
async def test_a_service_killed_mid_job_costs_no_draw_twice(
    name: str, stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    service = stack.service(name)
    lost = gemini.in_flight(since) if name == "renderer" else 0
    killed = time.monotonic()
    service.kill()
    await asyncio.to_thread(service.restart)
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.first_after(killed)
    record(f"{name} SIGKILL mid-job", PANELS + 1 + lost, requests, recovery)
    assert requests == PANELS + 1 + lost
    assert recovery < RECOVERY_BOUND
    await assert_images_downloadable(stack, await session.get(job.name))


async def test_a_renderer_stopped_mid_job_finishes_its_draws_first(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    renderer = stack.service("renderer")
    stopped = time.monotonic()
    code = await asyncio.to_thread(renderer.stop, 20)
    took = time.monotonic() - stopped
    await asyncio.to_thread(renderer.restart)
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    record(f"renderer SIGTERM mid-job (stopped in {took:.1f}s)", PANELS + 1, requests)
    assert code == 0, f"exit code {code}"
    assert requests == PANELS + 1, "the draws in flight were stored before the renderer stopped"
    await assert_images_downloadable(stack, await session.get(job.name))
