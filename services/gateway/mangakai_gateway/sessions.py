"""Sessions: anonymous owners of jobs, identified by an opaque bearer token.

Only the sha256 of a token is stored. Resolved tokens are cached in memory so
that authenticating a call costs no database round trip in the common case.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import OrderedDict
from typing import Any

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from mangakai.v1 import sessions_pb2
from mangakai_runtime.errors import Unauthenticated

_CACHE_SIZE = 100_000


class SessionStore:
    """Creates sessions and resolves bearer tokens to session ids."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: OrderedDict[bytes, uuid.UUID] = OrderedDict()

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
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return cached
        session_id: uuid.UUID | None = await self._pool.fetchval(
            "SELECT id FROM sessions WHERE token_sha256 = $1", digest
        )
        if session_id is not None:
            self._cache[digest] = session_id
            if len(self._cache) > _CACHE_SIZE:
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
            raise Unauthenticated("unknown session token")
        return session_id
