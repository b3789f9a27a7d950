"""Sessions: anonymous owners of jobs, identified by an opaque bearer token, expiring when idle.

Only the sha256 of a token is stored. A session expires `idle_seconds` after
its last call; every replica sweeps the expired ones. Resolved tokens are
cached in memory (a bounded LRU, whatever the number of sessions) so that
authenticating a call costs no database round trip in the common case: a
cached token is checked again, and its last use recorded, once per touch
interval (a tenth of the idle time, at most five minutes), so a session swept
by another replica stops working here within that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from typing import Any

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from mangakai.v1 import sessions_pb2
from mangakai_runtime.errors import Unauthenticated

log = logging.getLogger(__name__)

CACHE_SIZE = 100_000
MAX_TOUCH_SECONDS = 300.0
# Errors of an unreachable or restarting database: a sweep is tried again next time.
_STORE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class SessionStore:
    """Creates sessions, resolves bearer tokens to session ids and sweeps idle sessions."""

    def __init__(self, pool: asyncpg.Pool, *, idle_seconds: float, cache_size: int = CACHE_SIZE) -> None:
        self._pool = pool
        self._idle = datetime.timedelta(seconds=idle_seconds)
        self._touch_seconds = min(idle_seconds / 10, MAX_TOUCH_SECONDS)
        self._cache_size = cache_size
        # token sha256 -> (session id, monotonic time of its last check and touch)
        self._cache: OrderedDict[bytes, tuple[uuid.UUID, float]] = OrderedDict()

    @property
    def cached(self) -> int:
        """How many tokens are cached (never more than the cache size)."""
        return len(self._cache)

    async def create(self, client: str) -> sessions_pb2.Session:
        token = secrets.token_urlsafe(32)
        session_id = uuid.uuid4()
        created = await self._pool.fetchval(
            "INSERT INTO sessions (id, token_sha256, client) VALUES ($1, $2, $3) RETURNING create_time",
            session_id,
            hashlib.sha256(token.encode()).digest(),
            client,
        )
        when = timestamp_pb2.Timestamp()
        when.FromDatetime(created)
        return sessions_pb2.Session(name=f"sessions/{session_id}", token=token, create_time=when)

    async def resolve(self, token: str) -> uuid.UUID | None:
        """The session of `token`, or None if there is none or it has expired."""
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._touch_seconds:
            self._cache.move_to_end(digest)
            return cached[0]
        session_id: uuid.UUID | None = await self._pool.fetchval(
            """UPDATE sessions SET last_use_time = now()
               WHERE token_sha256 = $1 AND last_use_time > now() - $2::interval RETURNING id""",
            digest,
            self._idle,
        )
        if session_id is None:
            self._cache.pop(digest, None)
            return None
        self._cache[digest] = (session_id, now)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return session_id

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> uuid.UUID:
        """The session a gRPC call acts for, from its `authorization: Bearer <token>` metadata."""
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = str(value)
                break
        return await self.authenticate_header(header)

    async def authenticate_header(self, header: str) -> uuid.UUID:
        """The session an `authorization` header (gRPC metadata or HTTP header) names."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "missing session token: call SessionService.CreateSession and send "
                "'authorization: Bearer <token>' metadata"
            )
        session_id = await self.resolve(token.strip())
        if session_id is None:
            raise Unauthenticated(
                "unknown or expired session token: call SessionService.CreateSession for a new one"
            )
        return session_id

    async def sweep(self) -> int:
        """Deletes the sessions idle for longer than the idle time; returns how many."""
        status: str = await self._pool.execute(
            "DELETE FROM sessions WHERE last_use_time < now() - $1::interval", self._idle
        )
        return int(status.rsplit(" ", 1)[-1])

    async def sweep_forever(self, every_seconds: float) -> None:
        """Sweeps every `every_seconds` until cancelled (every replica does; a sweep is idempotent)."""
        while True:
            await asyncio.sleep(every_seconds)
            with contextlib.suppress(*_STORE_ERRORS):
                swept = await self.sweep()
                if swept:
                    log.info("swept %d idle sessions", swept)
