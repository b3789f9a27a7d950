"""The Gemini quota when its shared store blinks: retried, counted as a quota wait, never a lost draw."""

from __future__ import annotations

import asyncio

import prometheus_client
import pytest

from mangakai_renderer.metrics import drawing
from mangakai_renderer.quota import (
    WINDOW_SECONDS,
    GeminiQuota,
    MemoryCounters,
    QuotaStoreError,
    QuotaStoreUnavailable,
)

NOW = 1_000 * WINDOW_SECONDS + 20.0


class FlakyCounters:
    """Memory counters whose store fails `failures` times, then answers; `hold` pauses each failure."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.asked = asyncio.Event()
        self.failed = asyncio.Event()
        self._counters = MemoryCounters()

    async def take(self, key: str, amount: int, limit: int) -> bool:
        self.calls += 1
        self.asked.set()
        if self.failures:
            await self.hold.wait()
            self.failures -= 1
            # Set before raising: the caller's handling runs before the test task resumes.
            self.failed.set()
            raise QuotaStoreError("NoRespondersError: nats: no responders available for request")
        return await self._counters.take(key, amount, limit)

    async def give_back(self, key: str, amount: int) -> None:
        await self._counters.give_back(key, amount)


def gauges() -> tuple[float, float, float]:
    """(in_flight, draws_running, quota_waiting) of this process."""
    in_flight, running, waiting = (
        prometheus_client.REGISTRY.get_sample_value(f"mangakai_renderer_{name}") or 0.0
        for name in ("in_flight", "draws_running", "quota_waiting")
    )
    return in_flight, running, waiting


def quota(counters: FlakyCounters | MemoryCounters, images_per_minute: int = 5) -> GeminiQuota:
    return GeminiQuota(
        counters, "p", requests_per_minute=0, images_per_minute=images_per_minute, clock=lambda: NOW
    )


async def test_store_errors_are_retried_until_the_store_answers() -> None:
    counters = FlakyCounters(failures=3)

    await quota(counters).acquire(images=1, max_wait=0, max_store_wait=10)

    assert counters.calls == 4, "three failures, then the grant"


async def test_a_store_out_of_reach_until_the_deadline_is_unavailable_not_an_error() -> None:
    counters = FlakyCounters(failures=1_000_000)
    started = asyncio.get_running_loop().time()

    with pytest.raises(QuotaStoreUnavailable, match="quota store is unavailable"):
        await quota(counters).acquire(images=1, max_wait=0, max_store_wait=0.5)

    assert asyncio.get_running_loop().time() - started < 2, "gave up at its deadline"
    assert counters.calls > 1, "retried before giving up"


async def test_a_draw_retrying_the_store_counts_as_waiting_on_the_quota_not_drawing() -> None:
    counters = FlakyCounters(failures=2)
    before = gauges()

    async def draw() -> None:
        with drawing():
            await quota(counters).acquire(images=1, max_wait=0, max_store_wait=10)
            assert gauges() == (before[0] + 1, before[1] + 1, before[2]), "granted: drawing again"

    counters.hold.clear()
    task = asyncio.create_task(draw())
    await counters.asked.wait()
    assert gauges() == (before[0] + 1, before[1] + 1, before[2]), "asking the store is part of drawing"
    counters.hold.set()
    await counters.failed.wait()
    assert gauges() == (before[0] + 1, before[1], before[2] + 1), "the store failed: waiting, not drawing"
    await asyncio.wait_for(task, timeout=10)
    assert gauges() == before


async def test_a_draw_waiting_for_the_next_window_is_not_drawing() -> None:
    clock = [NOW]
    limited = GeminiQuota(
        MemoryCounters(), "p", requests_per_minute=0, images_per_minute=1, clock=lambda: clock[0]
    )
    await limited.acquire(images=1, max_wait=0)
    before = gauges()

    async def draw() -> None:
        with drawing():
            await limited.acquire(images=1, max_wait=WINDOW_SECONDS * 2)

    task = asyncio.create_task(draw())
    await asyncio.sleep(0)
    assert gauges() == (before[0] + 1, before[1], before[2] + 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gauges() == before, "a cancelled wait leaves no count behind"
