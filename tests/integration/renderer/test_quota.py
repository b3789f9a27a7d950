"""The Gemini project budget shared by renderer replicas through a JetStream key-value bucket.

Each "replica" here has its own NATS connection to the real nats-server, as
separate renderer processes would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from mangakai_devstack.nats import NatsServer
from mangakai_renderer.quota import (
    WINDOW_SECONDS,
    GeminiQuota,
    KeyValueCounters,
    MemoryCounters,
    QuotaExhausted,
)

# Mid-window, so that no test straddles a minute boundary.
NOW = 1_000 * WINDOW_SECONDS + 20.0


@pytest.fixture
async def connections(nats: NatsServer) -> AsyncIterator[list[NATS]]:
    clients = [await nats_connect(nats.url) for _ in range(3)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()


async def nats_connect(url: str) -> NATS:
    return await nats.connect(url, name="quota-test")


async def replicas(
    connections: list[NATS], bucket: str, *, rpm: int, ipm: int, clock: list[float]
) -> list[GeminiQuota]:
    result = []
    for client in connections:
        counters = await KeyValueCounters.open(client.jetstream(), bucket)
        result.append(
            GeminiQuota(
                counters, "project-a", requests_per_minute=rpm, images_per_minute=ipm, clock=lambda: clock[0]
            )
        )
    return result


async def test_replicas_together_never_exceed_the_images_per_minute(connections: list[NATS]) -> None:
    clock = [NOW]
    quotas = await replicas(connections, f"Q{uuid.uuid4().hex}", rpm=0, ipm=7, clock=clock)

    async def try_once(quota: GeminiQuota) -> bool:
        try:
            await quota.acquire(images=1, max_wait=0)
        except QuotaExhausted:
            return False
        return True

    outcomes = await asyncio.gather(*(try_once(quotas[i % 3]) for i in range(30)))

    assert sum(outcomes) == 7, "exactly the budget is granted across every replica, concurrently"
    clock[0] = NOW + WINDOW_SECONDS
    assert await try_once(quotas[0]), "the next minute has a fresh budget"


async def test_a_spent_request_budget_tells_how_long_until_the_next_minute(connections: list[NATS]) -> None:
    clock = [NOW]
    first, second, _ = await replicas(connections, f"Q{uuid.uuid4().hex}", rpm=2, ipm=0, clock=clock)
    await first.acquire(max_wait=0)
    await second.acquire(max_wait=0)

    with pytest.raises(QuotaExhausted) as caught:
        await first.acquire(max_wait=5)

    assert caught.value.kind == "requests"
    assert WINDOW_SECONDS - 20 <= caught.value.retry_after <= WINDOW_SECONDS - 20 + 1.0


async def test_a_refused_image_gives_its_request_back(connections: list[NATS]) -> None:
    clock = [NOW]
    quota, other, _ = await replicas(connections, f"Q{uuid.uuid4().hex}", rpm=2, ipm=1, clock=clock)
    await quota.acquire(images=1, max_wait=0)

    with pytest.raises(QuotaExhausted):
        await other.acquire(images=1, max_wait=0)

    # The refused call took no request: one request of the two is still there.
    await other.acquire(images=0, max_wait=0)
    with pytest.raises(QuotaExhausted):
        await other.acquire(images=0, max_wait=0)


async def test_a_caller_waits_for_the_next_window_when_its_deadline_allows() -> None:
    window_end = 1_001 * WINDOW_SECONDS
    clock = [window_end - 0.2]
    quota = GeminiQuota(
        MemoryCounters(), "p", requests_per_minute=1, images_per_minute=0, clock=lambda: clock[0]
    )
    await quota.acquire(max_wait=0)

    waiting = asyncio.create_task(quota.acquire(max_wait=5))
    await asyncio.sleep(0)
    assert not waiting.done()
    clock[0] = window_end + 1  # the clock moves on while it sleeps
    await asyncio.wait_for(waiting, timeout=5)
