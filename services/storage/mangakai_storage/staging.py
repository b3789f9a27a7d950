"""Staging an upload: its bytes go to a temp file, hashed, before any backend commits them.

Staged files live in one directory that belongs to this process; whatever is
there at start-up was left by a crash in the middle of an upload and is
removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


@dataclass
class StagedUpload:
    """The bytes of one upload in a temp file, flushed to disk."""

    path: Path
    sha256: str
    size: int


def clean_staging_dir(directory: Path) -> int:
    """Creates `directory`, removing what an earlier process left in it; returns how many entries."""
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.warning("removed %d stale staged files from %s", removed, directory)
    return removed


def _write(file: BinaryIO, hasher: hashlib._Hash, chunk: bytes) -> None:
    hasher.update(chunk)
    file.write(chunk)


def _finish(file: BinaryIO, sync: bool) -> None:
    file.flush()
    if sync:
        os.fsync(file.fileno())
    file.close()


@asynccontextmanager
async def stage(
    directory: Path, chunks: AsyncIterator[bytes], *, sync: bool = True
) -> AsyncIterator[StagedUpload]:
    """Writes `chunks` to a new file in `directory` while hashing them.

    The file is removed on exit unless the body moved it elsewhere.
    """
    fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=directory, prefix="upload-", suffix=".part")
    path = Path(name)
    try:
        file = os.fdopen(fd, "wb")
        try:
            hasher = hashlib.sha256()
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                await asyncio.to_thread(_write, file, hasher, chunk)
            await asyncio.to_thread(_finish, file, sync)
        finally:
            file.close()
        yield StagedUpload(path, hasher.hexdigest(), size)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
