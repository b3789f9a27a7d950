"""Retention: deleting what nobody needs any more, and never what a live job uses.

One sweep does two things, each job under a row lock so that nothing can
change the job meanwhile (a regeneration waits, then finds it gone):

- Expired jobs: a job that ended (COMPLETED, FAILED or CANCELLED) and has not
  changed for RETENTION_DAYS loses its blobs (everything under
  "jobs/{id}/") and then its rows (panels, versions, events and exports go
  with it). The blobs go first: if their deletion fails, the job stays
  whole and the next sweep tries again. Active jobs are never expired.
- Partial blobs: a FAILED or CANCELLED job that ended more than
  PARTIAL_BLOB_GRACE_SECONDS ago (so no renderer call of it is still
  writing) loses the images of its versions that did not succeed (the PNG,
  its art, WebP copy and thumbnail) and an unrecorded character sheet.
  Succeeded versions stay: they are what the job shows. The job is marked
  swept at its end time, so it is swept again only after it runs and ends
  again.

The sweep runs every RETENTION_SWEEP_SECONDS and on demand through the
operator RPC `SweepRetention`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from mangakai.v1 import common_pb2
from mangakai_orchestrator.runner import character_sheet_key, panel_blob_key
from mangakai_orchestrator.store import TERMINAL_STATES
from mangakai_runtime.blobs import BlobClient, thumbnail_key, webp_key

log = logging.getLogger(__name__)

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State

BATCH = 100
_ENDED_UNSUCCESSFULLY = (JobState.STATE_FAILED, JobState.STATE_CANCELLED)


@dataclass
class SweepReport:
    """What one sweep deleted."""

    expired_jobs: int = 0
    partial_jobs: int = 0
    blobs_deleted: int = 0


def image_keys(key: str) -> list[str]:
    """`key` and every blob stored beside it: the un-lettered art, the WebP copy, the thumbnail."""
    keys = [key, key.removesuffix(".png") + ".art.png"]
    keys += [k for k in (webp_key(key), thumbnail_key(key)) if k is not None]
    return keys


class RetentionSweeper:
    """Deletes expired jobs and the partial blobs of failed and cancelled ones."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        blobs: BlobClient,
        *,
        retention_days: float,
        partial_grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        self._pool = pool
        self._blobs = blobs
        self._retention_days = retention_days
        self._partial_grace_seconds = partial_grace_seconds
        self._interval_seconds = interval_seconds
        # One sweep at a time in this process; other replicas are kept apart by the row locks.
        self._running = asyncio.Lock()

    async def run(self) -> None:
        """Sweeps every `interval_seconds` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_seconds)
            try:
                report = await self.sweep()
            except Exception:
                log.warning("retention sweep failed", exc_info=True)
                continue
            if report.expired_jobs or report.partial_jobs:
                log.info(
                    "retention sweep: %d expired jobs deleted, %d failed or cancelled jobs cleaned, %d blobs deleted",
                    report.expired_jobs,
                    report.partial_jobs,
                    report.blobs_deleted,
                )

    async def sweep(self) -> SweepReport:
        """One full sweep."""
        async with self._running:
            report = SweepReport()
            if self._retention_days > 0:
                await self._expire_jobs(report)
            await self._sweep_partial_blobs(report)
            return report

    async def _expire_jobs(self, report: SweepReport) -> None:
        seconds = self._retention_days * 86400
        while True:
            candidates = await self._pool.fetch(
                """SELECT id FROM jobs
                   WHERE state = ANY($1::smallint[]) AND update_time < now() - make_interval(secs => $2)
                   ORDER BY update_time LIMIT $3""",
                list(TERMINAL_STATES),
                seconds,
                BATCH,
            )
            before = report.expired_jobs
            for row in candidates:
                report.blobs_deleted += await self._expire_job(row["id"], seconds, report)
            # Stop at the last batch, or when every candidate was locked by someone else.
            if len(candidates) < BATCH or report.expired_jobs == before:
                return

    async def _expire_job(self, job_id: uuid.UUID, seconds: float, report: SweepReport) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            # Checked again under the lock: the job may have been regenerated since it was listed.
            locked = await conn.fetchval(
                """SELECT id FROM jobs
                   WHERE id = $1 AND state = ANY($2::smallint[]) AND update_time < now() - make_interval(secs => $3)
                   FOR UPDATE SKIP LOCKED""",
                job_id,
                list(TERMINAL_STATES),
                seconds,
            )
            if locked is None:
                return 0
            deleted = await self._blobs.delete(prefix=f"jobs/{job_id}/")
            await conn.execute("DELETE FROM jobs WHERE id = $1", job_id)
        report.expired_jobs += 1
        log.info("job %s expired: %d blobs deleted", job_id, deleted)
        return deleted

    async def _sweep_partial_blobs(self, report: SweepReport) -> None:
        while True:
            candidates = await self._pool.fetch(
                """SELECT id FROM jobs
                   WHERE state = ANY($1::smallint[]) AND end_time < now() - make_interval(secs => $2)
                     AND (blobs_swept_at IS NULL OR blobs_swept_at < end_time)
                   ORDER BY end_time LIMIT $3""",
                list(_ENDED_UNSUCCESSFULLY),
                self._partial_grace_seconds,
                BATCH,
            )
            before = report.partial_jobs
            for row in candidates:
                report.blobs_deleted += await self._sweep_job(row["id"], report)
            if len(candidates) < BATCH or report.partial_jobs == before:
                return

    async def _sweep_job(self, job_id: uuid.UUID, report: SweepReport) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(
                """SELECT character_sheet IS NULL AS no_sheet FROM jobs
                   WHERE id = $1 AND state = ANY($2::smallint[])
                     AND (blobs_swept_at IS NULL OR blobs_swept_at < end_time)
                   FOR UPDATE SKIP LOCKED""",
                job_id,
                list(_ENDED_UNSUCCESSFULLY),
            )
            if job is None:
                return 0
            versions = await conn.fetch(
                "SELECT number, version FROM panel_versions WHERE job_id = $1 AND state <> $2",
                job_id,
                VersionState.STATE_SUCCEEDED,
            )
            keys = [
                k for v in versions for k in image_keys(panel_blob_key(job_id, v["number"], v["version"]))
            ]
            if job["no_sheet"]:
                keys += image_keys(character_sheet_key(job_id))
            deleted = 0
            for start in range(0, len(keys), 1000):
                deleted += await self._blobs.delete(keys=keys[start : start + 1000])
            await conn.execute("UPDATE jobs SET blobs_swept_at = end_time WHERE id = $1", job_id)
        report.partial_jobs += 1
        if deleted:
            log.info("job %s: %d partial blobs deleted", job_id, deleted)
        return deleted
