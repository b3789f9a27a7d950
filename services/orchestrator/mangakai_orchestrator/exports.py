"""The export cache: a job's composed PDF or CBZ, by format and by a fingerprint of what went in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from mangakai.v1 import common_pb2


@dataclass(frozen=True)
class ExportRecord:
    """A cached export."""

    blob: common_pb2.Blob
    page_count: int


class ExportCache:
    """The `job_exports` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def cached_export(self, job_id: uuid.UUID, fmt: int, fingerprint: str) -> ExportRecord | None:
        row = await self._pool.fetchrow(
            "SELECT blob, page_count FROM job_exports WHERE job_id = $1 AND format = $2 AND fingerprint = $3",
            job_id,
            fmt,
            fingerprint,
        )
        if row is None:
            return None
        return ExportRecord(common_pb2.Blob.FromString(row["blob"]), row["page_count"])

    async def save_export(
        self, job_id: uuid.UUID, fmt: int, fingerprint: str, blob: common_pb2.Blob, page_count: int
    ) -> None:
        await self._pool.execute(
            """INSERT INTO job_exports (job_id, format, fingerprint, blob, page_count) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (job_id, format, fingerprint) DO UPDATE SET blob = EXCLUDED.blob,
               page_count = EXCLUDED.page_count""",
            job_id,
            fmt,
            fingerprint,
            blob.SerializeToString(),
            page_count,
        )
