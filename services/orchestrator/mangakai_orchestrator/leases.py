"""Who runs which job: claims, leases that run out on their own, and the jobs nobody holds.

A worker claims an active job for `lease_seconds` and renews the lease with
each heartbeat; a lease not renewed runs out, and the job is then anyone's
(the sweeper queues it again at once). A claim counts an attempt of the run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mangakai.v1 import common_pb2
from mangakai_orchestrator import states

ACTIVE_STATES = sorted(int(state) for state in states.ACTIVE)


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job it has claimed."""

    id: uuid.UUID
    state: int
    story: str
    panel_count: int
    style: common_pb2.StylePreferences
    layout: int
    reading_order: int
    plan: common_pb2.ScenePlan | None
    cancel_requested: bool
    attempts: int
    run: int
    character_sheet: common_pb2.Image | None = None


class JobLeases:
    """The `owner`, `lease_expires_at` and `attempts` columns of the jobs."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lease_left(self, job_id: uuid.UUID) -> float | None:
        """Seconds until another worker's lease on an active job runs out; None when the job has ended."""
        row = await self._pool.fetchrow(
            """SELECT GREATEST(0, EXTRACT(EPOCH FROM lease_expires_at - now()))::float8 AS left
               FROM jobs WHERE id = $1 AND state = ANY($2::smallint[])""",
            job_id,
            ACTIVE_STATES,
        )
        return None if row is None else float(row["left"] or 0.0)

    async def claim(self, job_id: uuid.UUID, owner: str, lease_seconds: float) -> ClaimedJob | None:
        """Takes the job for this worker unless it has ended or another live worker holds it."""
        row = await self._pool.fetchrow(
            """UPDATE jobs SET owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                      attempts = attempts + 1
               WHERE id = $1 AND state = ANY($4::smallint[])
                 AND (owner IS NULL OR owner = $2 OR lease_expires_at < now())
               RETURNING *""",
            job_id,
            owner,
            lease_seconds,
            ACTIVE_STATES,
        )
        if row is None:
            return None
        return ClaimedJob(
            id=row["id"],
            state=row["state"],
            story=row["story"],
            panel_count=row["panel_count"],
            style=common_pb2.StylePreferences.FromString(row["style"]),
            layout=row["layout"],
            reading_order=row["reading_order"],
            plan=common_pb2.ScenePlan.FromString(row["plan"]) if row["plan"] is not None else None,
            cancel_requested=row["cancel_requested"],
            attempts=row["attempts"],
            run=row["run"],
            character_sheet=(
                common_pb2.Image.FromString(row["character_sheet"])
                if row["character_sheet"] is not None
                else None
            ),
        )

    async def renew_lease(self, job_id: uuid.UUID, owner: str, lease_seconds: float) -> bool:
        """Extends this worker's lease; False when another worker has taken the job meanwhile."""
        taken = await self._pool.fetchval(
            """WITH renewed AS (
                   UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
                   WHERE id = $1 AND owner = $2 RETURNING id)
               SELECT NOT EXISTS (SELECT 1 FROM renewed)
                  AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND owner IS NOT NULL AND owner <> $2)""",
            job_id,
            owner,
            lease_seconds,
        )
        return not taken

    async def release(self, job_id: uuid.UUID, owner: str) -> None:
        await self._pool.execute(
            "UPDATE jobs SET owner = NULL, lease_expires_at = NULL WHERE id = $1 AND owner = $2",
            job_id,
            owner,
        )

    async def expired_leases(self, limit: int = 100) -> list[tuple[uuid.UUID, datetime]]:
        """Active jobs still owned by a worker whose lease has run out, with when it ran out."""
        rows = await self._pool.fetch(
            """SELECT id, lease_expires_at FROM jobs WHERE state = ANY($1::smallint[])
                 AND owner IS NOT NULL AND lease_expires_at < now()
               ORDER BY lease_expires_at LIMIT $2""",
            ACTIVE_STATES,
            limit,
        )
        return [(r["id"], r["lease_expires_at"]) for r in rows]

    async def stale_jobs(self, idle_seconds: float, limit: int = 100) -> list[uuid.UUID]:
        """Active jobs that no live worker holds and that have not changed for a while."""
        rows = await self._pool.fetch(
            """SELECT id FROM jobs WHERE state = ANY($1::smallint[])
                 AND (owner IS NULL OR lease_expires_at < now())
                 AND update_time < now() - make_interval(secs => $2)
               ORDER BY update_time LIMIT $3""",
            ACTIVE_STATES,
            idle_seconds,
            limit,
        )
        return [r["id"] for r in rows]
