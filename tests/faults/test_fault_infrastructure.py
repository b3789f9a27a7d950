"""Faults of the infrastructure: a PostgreSQL restart, a 5 s PostgreSQL outage and a nats-server
restart, mid-job.

The module's stack owns its PostgreSQL and nats-server (no other test shares
them), so they can be stopped and started again on the same ports.
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

# The bound is 5 s from PostgreSQL's return; generous for a loaded machine.
RECOVERY_BOUND = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gemini: CountingGemini) -> Iterator[Stack]:
    # JetStream's ack-wait as deployed (30 s): a run whose hand-back failed would wait for it.
    with gemini_stack(
        tmp_path_factory.mktemp("faults-infrastructure"), gemini, orchestrator={"ACK_WAIT_SECONDS": "30"}
    ) as stack:
        yield stack


@pytest.mark.parametrize("outage", [0.0, 5.0], ids=["restart", "outage-5s"])
async def test_a_postgresql_restart_or_outage_mid_job_costs_no_draw_twice(
    outage: float, stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    postgres = stack.postgres
    port = postgres.port
    await asyncio.to_thread(postgres.stop)
    await asyncio.sleep(outage)  # the outage itself: the draws in flight finish meanwhile
    await asyncio.to_thread(postgres.start, port=port)
    back = time.monotonic()
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.resumed_after(back, or_continued=True)
    record(f"PostgreSQL down {outage:.0f}s (stop, start) mid-job", PANELS + 1, requests, recovery)
    assert requests == PANELS + 1, "a finished draw was thrown away with a failed database write"
    assert recovery < RECOVERY_BOUND
    await assert_images_downloadable(stack, await session.get(job.name))


async def test_a_nats_restart_mid_job_costs_no_draw_twice(
    stack: Stack, session: Session, gemini: CountingGemini
) -> None:
    since = len(gemini.images())
    job = await session.create_job(panels=PANELS)
    following = asyncio.create_task(follow(session, job.name))
    await wait_until(lambda: gemini.in_flight(since) >= 2, 60, "draws in flight")

    await asyncio.to_thread(stack.nats.restart)
    back = time.monotonic()
    followed = await following

    assert followed.last.job_state == JobState.STATE_COMPLETED, followed.last
    requests = len(gemini.images(since))
    recovery = followed.first_after(back)
    record("nats-server restart mid-job", PANELS + 1, requests, recovery)
    assert requests == PANELS + 1
    assert recovery < RECOVERY_BOUND
    await assert_images_downloadable(stack, await session.get(job.name))
