"""Per-session rate limits (token buckets) for calls that start expensive work."""

from __future__ import annotations

import time
import uuid

from mangakai_runtime.errors import ResourceExhausted

_MAX_BUCKETS = 100_000


class RateLimiter:
    """Allows `per_minute` calls per session, in bursts of up to `per_minute`."""

    def __init__(self, per_minute: int, what: str) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._what = what
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}

    def take(self, session: uuid.UUID) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(session, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self._rate
            raise ResourceExhausted(f"too many {self._what}; retry in {wait:.1f} s", retry_after=wait)
        if len(self._buckets) > _MAX_BUCKETS:
            self._buckets.clear()
        self._buckets[session] = (tokens - 1.0, now)
