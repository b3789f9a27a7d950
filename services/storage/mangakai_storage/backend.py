"""What a blob backend does: the interface the servicer and the HTTP server use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from mangakai_storage.staging import StagedUpload

READ_CHUNK_BYTES = 256 * 1024
"""Size of the pieces a blob is read in (and streamed to clients)."""

ContentCheck = Callable[[Path], None]
"""Called in a worker thread with the staged bytes of an upload before it becomes
visible; raises (InvalidArgument) to refuse the upload."""


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob's metadata."""

    key: str
    size: int
    sha256: str
    content_type: str
    created: datetime


@dataclass(frozen=True)
class SignedLocation:
    """A URL that reads one blob until `expires` (unix seconds)."""

    uri: str
    expires: int


class BlobReader(Protocol):
    """An opened blob: its metadata, and its bytes as they were when it was opened."""

    @property
    def info(self) -> BlobInfo: ...

    def chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = READ_CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        """The bytes from `start` up to (not including) `end`, default the whole blob."""
        ...


class BlobBackend(Protocol):
    """Durable blob storage. Every method raises NotFound for a missing key."""

    @property
    def name(self) -> str:
        """ "fs" or "s3", the label of the storage metrics."""
        ...

    async def start(self) -> None:
        """Connects and prepares; called once before any other method."""

    async def close(self) -> None:
        """Releases connections; called once at shutdown."""

    def stage(self, chunks: AsyncIterator[bytes]) -> AbstractAsyncContextManager[StagedUpload]:
        """Writes `chunks` to a private temporary file, hashing them; the file goes away on exit.

        Nothing is visible to readers until `commit`.
        """
        ...

    async def commit(self, key: str, content_type: str, staged: StagedUpload) -> BlobInfo:
        """Makes a staged upload the blob at `key`, atomically (readers see the old blob or the
        new one, never part of it). Committing the same bytes again changes nothing."""
        ...

    def open(self, key: str) -> AbstractAsyncContextManager[BlobReader]:
        """Opens a blob for reading."""
        ...

    async def stat(self, key: str) -> BlobInfo:
        """A blob's metadata."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes every blob whose key starts with `prefix`; returns how many."""
        ...

    async def delete_keys(self, keys: list[str]) -> int:
        """Deletes the blobs of `keys` (skipping keys without one); returns how many."""
        ...

    async def sign(self, key: str, ttl_seconds: int) -> SignedLocation:
        """A URL that downloads the blob for `ttl_seconds`; the blob need not exist yet."""
        ...


async def put(
    backend: BlobBackend,
    key: str,
    content_type: str,
    chunks: AsyncIterator[bytes],
    *,
    check: ContentCheck | None = None,
) -> BlobInfo:
    """Writes a blob from `chunks`: visible only once `chunks` is exhausted without an error
    and `check` (run on the staged file) accepts the bytes."""
    async with backend.stage(chunks) as staged:
        if check is not None:
            await asyncio.to_thread(check, staged.path)
        return await backend.commit(key, content_type, staged)
