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

The bucket keeps `replicas` copies (3 on a 3-node NATS cluster), so losing a
node loses no count. While a node restarts, the bucket's stream elects a new
leader and the store answers with timeouts, "no responders" or 503s for a
moment: `KeyValueCounters` reports each as `QuotaStoreError`, and the caller
is retried with backoff until the store answers or its deadline comes, when
it gets `QuotaStoreUnavailable` (UNAVAILABLE, which the orchestrator retries).
A panel never fails because the store blinked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Protocol

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mangakai_renderer.metrics import QUOTA_STORE_ERRORS, QUOTA_WAIT_SECONDS, waiting_for_quota

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class QuotaExhausted(Exception):
    """The minute's budget is spent and the next window opens after the caller's deadline."""

    def __init__(self, kind: str, retry_after: float) -> None:
        super().__init__(f"the Gemini {kind}-per-minute budget is spent; retry in {retry_after:.1f}s")
        self.kind = kind
        self.retry_after = retry_after


class QuotaStoreError(Exception):
    """The shared counters did not answer this time (NATS unreachable, a stream leader election)."""


class QuotaStoreUnavailable(Exception):
    """The shared counters stayed out of reach until the caller's deadline."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the Gemini quota store is unavailable: {cause}")


class Counters(Protocol):
    """Per-window counters that can be raised up to a limit, atomically.

    A failure to reach the counters is raised as `QuotaStoreError`.
    """

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
    async def open(
        cls, js: JetStreamContext, bucket: str, *, replicas: int = 1, startup_wait: float = 60.0
    ) -> KeyValueCounters:
        """Opens (or creates) the bucket with `replicas` copies, waiting up to `startup_wait` seconds for the store.

        A bucket made with fewer copies (before NATS_REPLICAS was raised) gets more: JetStream
        scales a stream's replicas up in place.
        """
        deadline = time.monotonic() + startup_wait
        for attempt in range(1_000):
            try:
                return cls(await _open_bucket(js, bucket, replicas))
            except nats.errors.Error as exc:
                # A cluster that is just starting has no JetStream leader yet: ask again.
                if time.monotonic() >= deadline:
                    raise
                log.warning("quota bucket %s not reachable yet (%r); retrying", bucket, exc)
                await asyncio.sleep(_store_backoff(attempt))
        raise AssertionError("unreachable: the deadline ends the loop")

    async def take(self, key: str, amount: int, limit: int) -> bool:
        return await self._add(key, amount, limit)

    async def give_back(self, key: str, amount: int) -> None:
        await self._add(key, -amount, None)

    async def _add(self, key: str, amount: int, limit: int | None) -> bool:
        try:
            return await self._compare_and_set(key, amount, limit)
        except nats.errors.Error as exc:
            # A write that timed out may still have landed: the retry then counts it twice,
            # which spends the budget early but never lets it be exceeded.
            raise QuotaStoreError(f"{type(exc).__name__}: {exc}") from exc

    async def _compare_and_set(self, key: str, amount: int, limit: int | None) -> bool:
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
        raise QuotaStoreError(f"quota counter {key} is too contended")


async def _open_bucket(js: JetStreamContext, bucket: str, replicas: int) -> KeyValue:
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        # Keys outlive their minute a little, so a slow replica still sees the window it counts in.
        return await js.create_key_value(bucket=bucket, history=1, ttl=3 * WINDOW_SECONDS, replicas=replicas)
    stream = f"KV_{bucket}"
    info = await js.stream_info(stream)
    if info.config.num_replicas is not None and info.config.num_replicas < replicas:
        log.info("quota bucket %s: %d copies -> %d", bucket, info.config.num_replicas, replicas)
        await js.update_stream(info.config.evolve(num_replicas=replicas))
    return kv


def _store_backoff(attempt: int) -> float:
    """Jittered exponential backoff while the store is out of reach: about 0.1s, 0.2s, ... up to 2s."""
    return float(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))


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

    async def acquire(
        self, *, requests: int = 1, images: int = 0, max_wait: float, max_store_wait: float = 5.0
    ) -> None:
        """Takes `requests` and `images` from the current minute, waiting up to `max_wait` seconds.

        Store errors are retried for up to `max_store_wait` seconds, then raised as
        `QuotaStoreUnavailable`. From the first refusal or store error until the budget
        is granted, the call counts as waiting on the quota (not drawing).
        """
        loop = asyncio.get_running_loop()
        store_deadline = loop.time() + max_store_wait
        wanted = {"requests": requests, "images": images}
        waited = 0.0
        failures = 0
        with contextlib.ExitStack() as blocked:

            def block() -> None:
                if not failures and not waited:
                    blocked.enter_context(waiting_for_quota())

            while True:
                now = self._clock()
                window = int(now // WINDOW_SECONDS)
                try:
                    async with asyncio.timeout(max(0.1, store_deadline - loop.time())):
                        short = await self._take_all(window, wanted)
                except (QuotaStoreError, TimeoutError) as exc:
                    delay = _store_backoff(failures)
                    if loop.time() + delay >= store_deadline:
                        raise QuotaStoreUnavailable(exc) from exc
                    block()
                    failures += 1
                    QUOTA_STORE_ERRORS.inc()
                    log.warning("Gemini quota store error (%s); retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if short is None:
                    if waited:
                        QUOTA_WAIT_SECONDS.observe(waited)
                    return
                # Jitter spreads the replicas that all waited for the same window.
                delay = (window + 1) * WINDOW_SECONDS - now + random.uniform(0.05, 1.0)
                if waited + delay > max_wait:
                    raise QuotaExhausted(short, delay)
                block()
                log.info("Gemini %s budget spent for this minute; waiting %.1fs", short, delay)
                await asyncio.sleep(delay)
                waited += delay

    async def _take_all(self, window: int, wanted: dict[str, int]) -> str | None:
        """Takes every amount or none; returns the kind that is short, or None when all were taken."""
        taken: list[tuple[str, int]] = []
        try:
            for kind, amount in wanted.items():
                limit = self._limits[kind]
                if amount <= 0 or limit <= 0:
                    continue
                key = f"{self._project}.{kind}.{window}"
                if not await self._counters.take(key, amount, limit):
                    await self._give_back(taken)
                    return kind
                taken.append((key, amount))
        except QuotaStoreError:
            await self._give_back(taken)
            raise
        return None

    async def _give_back(self, taken: list[tuple[str, int]]) -> None:
        for key, amount in taken:
            try:
                await self._counters.give_back(key, amount)
            except QuotaStoreError as exc:
                # Left spent: the minute's budget shrinks by it, it is never exceeded.
                log.warning("could not give back %d of %s: %s", amount, key, exc)
