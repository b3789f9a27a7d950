"""The event outbox: job events stored with the changes they announce, read back and relayed.

The job store writes each event in the transaction of its change (`job_events`,
the job's `last_event_seq`); this module reads them for gap-filling
(ListJobEvents) and publishes the unpublished ones to JetStream in sequence
order (`published_seq` marks how far a job's events went out).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from mangakai.v1 import common_pb2


class EventOutbox:
    """The `job_events` table and each job's publication mark."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def events_after(self, job_id: uuid.UUID, after: int) -> list[common_pb2.JobEvent]:
        rows = await self._pool.fetch(
            "SELECT event FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq", job_id, after
        )
        return [common_pb2.JobEvent.FromString(r["event"]) for r in rows]

    async def jobs_with_unpublished_events(self, limit: int = 100) -> list[uuid.UUID]:
        rows = await self._pool.fetch(
            "SELECT id FROM jobs WHERE published_seq < last_event_seq ORDER BY update_time LIMIT $1", limit
        )
        return [r["id"] for r in rows]

    async def relay_events(
        self, job_id: uuid.UUID, publish: Callable[[common_pb2.JobEvent], Awaitable[None]]
    ) -> int:
        """Publishes the job's unpublished events in sequence order; returns how many.

        An advisory lock makes one relay at a time publish a given job's events,
        so they reach the stream in order whichever replica wrote them.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            key = job_id.int & 0x7FFF_FFFF_FFFF_FFFF
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key):
                return 0
            published = await conn.fetchval("SELECT published_seq FROM jobs WHERE id = $1", job_id)
            if published is None:
                return 0
            rows = await conn.fetch(
                "SELECT seq, event FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
                job_id,
                published,
            )
            if not rows:
                return 0
            for r in rows:
                await publish(common_pb2.JobEvent.FromString(r["event"]))
            await conn.execute(
                "UPDATE jobs SET published_seq = GREATEST(published_seq, $2) WHERE id = $1",
                job_id,
                rows[-1]["seq"],
            )
            return len(rows)
