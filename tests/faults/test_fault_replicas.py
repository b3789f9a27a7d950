"""Two orchestrators and two renderers; the orchestrator running a job and one renderer are SIGKILLed.

The surviving orchestrator takes the job over once the dead one's lease runs
out (within the lease plus one sweep); the draws the dead orchestrator had
asked of the surviving renderer go on and are joined, so the only images asked
twice are the ones the killed renderer had in flight.
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

TAKEOVER_BOUND = 20.0  # 8 s lease + 2 s sweep, generous for a loaded machine


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    with gemini_stack(
        tmp_path_factory.mktemp("faults-replicas"), gemini, replicas={"orchestrator": 2, "renderer": 2}
    ) as stack:
        yield stack


def _holder(stack: Stack, job_id: str) -> int:
    """Which orchestrator replica claimed the job (from their logs)."""
    for index, replica in enumerate(stack.replicas("orchestrator")):
        if f"claimed job {job_id}" in replica.log_path.read_text(errors="replace"):
            return index
    raise AssertionError(f"no orchestrator claimed {job_id}")


async def test_one_orchestrator_and_one_renderer_killed_mid_job(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    holder = _holder(stack, job.name.removeprefix("jobs/"))
    in_flight = gemini.in_flight(since)
    killed = time.monotonic()
    stack.service("orchestrator", holder).kill()
    stack.service("renderer", 1).kill()
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.resumed_after(killed)
    record(
        f"orchestrator {holder} + renderer 1 SIGKILL ({in_flight} in flight at the kill)",
        PANELS + 1,
        requests,
        recovery,
    )
    # Only the killed renderer's draws in flight may be asked again.
    assert PANELS + 1 <= requests <= PANELS + 1 + in_flight
    assert recovery < TAKEOVER_BOUND
    await assert_images_downloadable(stack, await session.get(job.name))
