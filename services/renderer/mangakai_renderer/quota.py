"""Gemini quota: requests-per-minute and images-per-minute budgets of one Gemini project.

Google counts quota per project, so the budget has to hold across every
renderer replica together. The counters live in a JetStream key-value bucket
(one key per project, kind and minute window) and are raised with
compare-and-set, so two replicas can never both take the last unit of a
minute. Old windows expire with the bucket's TTL. Without NATS (a single
process, e.g. a developer's machine) the same counters live in memory.

A caller that finds the minute's budget spent waits for the next window when
that fits its deadline, and otherwise gets `QuotaExhausted` with the delay,
which the servicer turns into RESOURCE_EXHAUSTED with RetryInfo.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mangakai_renderer.metrics import QUOTA_WAIT_SECONDS

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class QuotaExhausted(Exception):
    """The minute's budget is spent and the next window opens after the caller's deadline."""

    def __init__(self, kind: str, retry_after: float) -> None:
        super().__init__(f"the Gemini {kind}-per-minute budget is spent; retry in {retry_after:.1f}s")
        self.kind = kind
        self.retry_after = retry_after


class Counters(Protocol):
    """Per-window counters that can be raised up to a limit, atomically."""

    async def take(self, key: str, amount: int, limit: int) -> bool: ...

    async def give_back(self, key: str, amount: int) -> None: ...


class MemoryCounters:
    """Counters of this process only (no NATS configured)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    async def take(self, key: str, amount: int, limit: int) -> bool:
        used = self._counts.get(key, 0)
        if used + amount > limit:
            return False
        self._counts[key] = used + amount
        if len(self._counts) > 1000:
            # Only the current windows matter; drop the oldest keys.
            for stale in list(self._counts)[:500]:
                del self._counts[stale]
        return True

    async def give_back(self, key: str, amount: int) -> None:
        self._counts[key] = max(0, self._counts.get(key, 0) - amount)


class KeyValueCounters:
    """Counters in a JetStream key-value bucket shared by every replica, raised with compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> KeyValueCounters:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            # Keys outlive their minute a little, so a slow replica still sees the window it counts in.
            kv = await js.create_key_value(bucket=bucket, history=1, ttl=3 * WINDOW_SECONDS)
        return cls(kv)

    async def take(self, key: str, amount: int, limit: int) -> bool:
        return await self._add(key, amount, limit)

    async def give_back(self, key: str, amount: int) -> None:
        await self._add(key, -amount, None)

    async def _add(self, key: str, amount: int, limit: int | None) -> bool:
        for _ in range(100):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                if limit is not None and amount > limit:
                    return False
                try:
                    await self._kv.create(key, str(max(0, amount)).encode())
                    return True
                except KeyWrongLastSequenceError:
                    continue  # another replica created it first
            used = int(entry.value or b"0")
            if limit is not None and used + amount > limit:
                return False
            try:
                await self._kv.update(key, str(max(0, used + amount)).encode(), last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                await asyncio.sleep(random.uniform(0, 0.005))  # lost the race: read again
        raise RuntimeError(f"quota counter {key} is too contended")


class GeminiQuota:
    """The per-minute budgets of one Gemini project; 0 disables a budget."""

    def __init__(
        self,
        counters: Counters,
        project: str,
        *,
        requests_per_minute: int,
        images_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counters = counters
        self._project = _KEY_UNSAFE.sub("_", project) or "default"
        self._limits = {"requests": requests_per_minute, "images": images_per_minute}
        self._clock = clock

    async def acquire(self, *, requests: int = 1, images: int = 0, max_wait: float) -> None:
        """Takes `requests` and `images` from the current minute, waiting up to `max_wait` seconds."""
        waited = 0.0
        while True:
            now = self._clock()
            window = int(now // WINDOW_SECONDS)
            short = await self._take_all(window, {"requests": requests, "images": images})
            if short is None:
                if waited:
                    QUOTA_WAIT_SECONDS.observe(waited)
                return
            # Jitter spreads the replicas that all waited for the same window.
            delay = (window + 1) * WINDOW_SECONDS - now + random.uniform(0.05, 1.0)
            if waited + delay > max_wait:
                raise QuotaExhausted(short, delay)
            log.info("Gemini %s budget spent for this minute; waiting %.1fs", short, delay)
            await asyncio.sleep(delay)
            waited += delay

    async def _take_all(self, window: int, wanted: dict[str, int]) -> str | None:
        """Takes every amount or none; returns the kind that is short, or None when all were taken."""
        taken: list[tuple[str, int]] = []
        for kind, amount in wanted.items():
            limit = self._limits[kind]
            if amount <= 0 or limit <= 0:
                continue
            key = f"{self._project}.{kind}.{window}"
            if not await self._counters.take(key, amount, limit):
                for done_key, done_amount in taken:
                    await self._counters.give_back(done_key, done_amount)
                return kind
            taken.append((key, amount))
        return None
