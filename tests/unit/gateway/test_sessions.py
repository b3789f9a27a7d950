"""The session cache stays bounded whatever the number of sessions, and forgets expired sessions."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from mangakai_gateway.sessions import SessionStore


class _Sessions:
    """Stands in for the pool: answers the touch query with a session per token, unless expired."""

    def __init__(self) -> None:
        self.expired: set[bytes] = set()
        self.queries = 0

    async def fetchval(self, query: str, digest: bytes, *args: Any) -> uuid.UUID | None:
        self.queries += 1
        return None if digest in self.expired else uuid.UUID(bytes=digest[:16])


async def test_the_cache_never_holds_more_than_its_size() -> None:
    pool = _Sessions()
    store = SessionStore(pool, idle_seconds=3600, cache_size=50)  # type: ignore[arg-type]
    for i in range(1000):
        assert await store.resolve(f"token-{i}") is not None
        assert store.cached <= 50
    # The most recent tokens are served from memory.
    before = pool.queries
    await store.resolve("token-999")
    assert pool.queries == before


async def test_an_expired_session_leaves_the_cache() -> None:
    pool = _Sessions()
    # An idle time of zero: every call checks the database again.
    store = SessionStore(pool, idle_seconds=1e-9)  # type: ignore[arg-type]
    assert await store.resolve("token") is not None
    assert store.cached == 1
    pool.expired = {hashlib.sha256(b"token").digest()}
    assert await store.resolve("token") is None
    assert store.cached == 0
