"""SIGTERM of an orchestrator, idle and mid-job: it stops at once and hands its job back.

The module's orchestrator holds leases of 30 s and JetStream waits 30 s for
an ack: a job that was not handed back (a NAK lost to one of the dying
process's own pull requests, a lease not released) would sit for 20 s or more,
so a resumption within `HANDBACK_BOUND` shows the hand-back itself.
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

IDLE_EXIT_BOUND = 3.0  # the target is 2 s; a little slack for a loaded machine
HANDBACK_BOUND = 12.0  # restart included; without the hand-back it is 30 s


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    with gemini_stack(
        tmp_path_factory.mktemp("faults-shutdown"),
        gemini,
        orchestrator={"LEASE_SECONDS": "30", "ACK_WAIT_SECONDS": "30"},
    ) as stack:
        yield stack


async def test_an_idle_orchestrator_stops_within_two_seconds_of_sigterm(stack: Stack) -> None:
    orchestrator = stack.service("orchestrator")
    started = time.monotonic()
    code = orchestrator.stop(timeout=10)
    took = time.monotonic() - started
    orchestrator.restart()
    record("orchestrator SIGTERM idle", 0, 0, took)
    assert code == 0, f"exit code {code} (killed after the timeout?)"
    assert took < IDLE_EXIT_BOUND, f"an idle orchestrator took {took:.1f}s to stop"


async def test_sigterm_mid_job_hands_the_job_back_and_draws_nothing_twice(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    orchestrator = stack.service("orchestrator")
    stopped = time.monotonic()
    code = await asyncio.to_thread(orchestrator.stop, 10)
    took = time.monotonic() - stopped
    assert code == 0, f"exit code {code}: not stopped within the grace"
    await asyncio.to_thread(orchestrator.restart)
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.resumed_after(stopped)
    record(f"orchestrator SIGTERM mid-job (stopped in {took:.1f}s)", PANELS + 1, requests, recovery)
    assert requests == PANELS + 1
    assert took < 10.0, f"SIGTERM took {took:.1f}s, longer than the grace"
    assert recovery < HANDBACK_BOUND, "the job waited for its lease or the ack-wait: not handed back"
    await assert_images_downloadable(stack, await session.get(job.name))
