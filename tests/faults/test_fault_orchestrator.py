"""Faults of the orchestrator: SIGKILL while its draws are in flight, and cancel (SIGTERM: test_fault_shutdown).

One stack for the module, cases one after the other; each counts the image
requests the fake Gemini received for its job (panels + one character sheet
when nothing is paid twice) and times the recovery from the fault to the
job's next event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from mangakai.v1 import jobs_pb2
from mangakai_devstack.stack import Stack
from tests.faults.harness import (
    PANELS,
    CountingGemini,
    JobState,
    assert_images_downloadable,
    draws_running,
    follow,
    gemini_stack,
    record,
    wait_until,
)
from tests.integration.mesh_client import Session

# Generous: the bound is 10 s for a dead worker's job (8 s lease + a 2 s sweep), on a loaded machine.
TAKEOVER_BOUND = 20.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    with gemini_stack(tmp_path_factory.mktemp("faults-orchestrator"), gemini) as stack:
        yield stack


async def _drawing(gemini: CountingGemini, since: int, count: int) -> None:
    """Waits until `count` image requests of the job are being answered (draws in flight)."""
    await wait_until(lambda: gemini.in_flight(since) >= count, 60, f"{count} draws in flight")


async def test_an_orchestrator_killed_while_drawing_pays_for_no_draw_twice(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await _drawing(gemini, since, 2)  # the sheet is drawn, panels are being drawn

    orchestrator = stack.service("orchestrator")
    killed = time.monotonic()
    orchestrator.kill()
    await asyncio.to_thread(orchestrator.restart)
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.resumed_after(killed)
    record("orchestrator SIGKILL with draws in flight", PANELS + 1, requests, recovery)
    assert requests == PANELS + 1, "a draw in flight was thrown away and paid for again"
    assert recovery < TAKEOVER_BOUND
    done = await session.get(job.name)
    assert [len(p.versions) for p in done.panels] == [1] * PANELS
    await assert_images_downloadable(stack, done)


async def test_cancel_stops_every_draw_of_the_job(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    # Panel 2 is refused after a long think: a draw left running would then ask again with a
    # softened prompt, an image request after the cancel.
    refusal = gemini.script("blocked", "Picture 2.", delay=4.0, finish_reason="IMAGE_SAFETY")
    try:
        since = len(gemini.images())
        job = await session.create_job(panels=PANELS)
        following = asyncio.create_task(follow(session, job.name))
        await wait_until(
            lambda: any("Picture 2." in r.text and r.status == 0 for r in gemini.images(since)),
            60,
            "panel 2 in flight",
        )
        await session.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(name=job.name), metadata=session.metadata, timeout=30
        )
        acknowledged = len(gemini.images(since))
        followed = await following
        assert followed.last.job_state == JobState.STATE_CANCELLED, followed.last
        # Nothing is left drawing that could still ask Gemini for an image.
        await wait_until(lambda: draws_running(stack) == 0, 30, "the renderer's draws to stop")
        await wait_until(lambda: refusal.used == 1 and gemini.in_flight(since) == 0, 30, "answers")
        requests = len(gemini.images(since))
    finally:
        gemini.forget(refusal)
    record("cancel mid-job (image requests after the acknowledgement)", 0, requests - acknowledged)
    assert requests == acknowledged, "images were requested after the cancel was acknowledged"
