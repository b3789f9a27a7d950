"""Blobs on a local filesystem, content-addressed, with HMAC-signed URLs.

Layout under the data directory:

- `objects/ab/cdef...`: the bytes of each distinct content, named by sha256;
- `refs/{key}~ref`: per key, a small JSON file naming the object, size,
  content type and creation time ("~" never occurs in keys, so a ref file
  never collides with the directory of a longer key);
- `tmp/`: uploads being staged and refs being written.

Every file is written to `tmp/`, fsynced and renamed into place, so a blob is
either fully visible or absent; a crash leaves only files in `tmp/` (removed
at start-up) or, between the object's rename and its ref's, an object no ref
names (collected at start-up). One process owns a data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from mangakai_runtime.errors import NotFound
from mangakai_storage.backend import READ_CHUNK_BYTES, BlobInfo, BlobReader, SignedLocation
from mangakai_storage.signing import UrlSigner
from mangakai_storage.staging import StagedUpload, clean_staging_dir, stage

log = logging.getLogger(__name__)

REF_SUFFIX = "~ref"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FsBlobReader:
    """An open object file: reads stay consistent even if the key is overwritten meanwhile."""

    def __init__(self, info: BlobInfo, file: BinaryIO) -> None:
        self._info = info
        self._file = file

    @property
    def info(self) -> BlobInfo:
        return self._info

    def _read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self._file.fileno(), size, offset)

    async def chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = READ_CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        stop = self._info.size if end is None else min(end, self._info.size)
        offset = start
        while offset < stop:
            data = await asyncio.to_thread(self._read_at, offset, min(chunk_size, stop - offset))
            if not data:
                raise OSError(f"object of {self._info.key} is shorter than its recorded size")
            offset += len(data)
            yield data


class FsBlobBackend:
    """Blob storage in a local directory."""

    def __init__(self, data_dir: Path, signer: UrlSigner, *, sync: bool = True) -> None:
        # sync=False skips every fsync: only for throwaway data (tests, benchmarks), as
        # PostgreSQL's fsync=off; a crash of the machine may then lose recent blobs.
        self._sync = sync
        self._root = data_dir.resolve()
        self._objects = self._root / "objects"
        self._refs = self._root / "refs"
        self._tmp = self._root / "tmp"
        self._signer = signer
        # Serialises commits with deletions, so a sweep never removes an object a
        # commit is about to reference.
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return "fs"

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    async def close(self) -> None:
        return None

    def _prepare(self) -> None:
        for directory in (self._objects, self._refs):
            directory.mkdir(parents=True, exist_ok=True)
        clean_staging_dir(self._tmp)
        swept = self._sweep(None)
        if swept:
            log.warning("removed %d objects no key referenced", swept)

    # Paths.

    def _object_path(self, sha256: str) -> Path:
        return self._objects / sha256[:2] / sha256[2:]

    def _ref_path(self, key: str) -> Path:
        # Keys are validated before they reach a backend; this guards the filesystem anyway.
        path = self._refs / f"{key}{REF_SUFFIX}"
        if ".." in Path(key).parts or not path.resolve().is_relative_to(self._refs):
            raise ValueError(f"unsafe key {key!r}")
        return path

    def _iter_refs(self, directory: Path) -> Iterator[Path]:
        for dirpath, _dirnames, filenames in os.walk(directory):
            for filename in filenames:
                if filename.endswith(REF_SUFFIX):
                    yield Path(dirpath) / filename

    # Refs.

    def _read_ref(self, key: str) -> BlobInfo | None:
        try:
            data = json.loads(self._ref_path(key).read_text())
        except FileNotFoundError:
            return None
        return BlobInfo(
            key=key,
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            content_type=str(data["content_type"]),
            created=datetime.fromisoformat(data["created"]),
        )

    def _write_ref(self, info: BlobInfo) -> None:
        path = self._ref_path(info.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "sha256": info.sha256,
                "size": info.size,
                "content_type": info.content_type,
                "created": info.created.isoformat(),
            }
        ).encode()
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="ref-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                if self._sync:
                    os.fsync(file.fileno())
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        if self._sync:
            _fsync_dir(path.parent)

    # Writing.

    def _commit(self, staged: Path, key: str, content_type: str, sha256: str, size: int) -> BlobInfo:
        target = self._object_path(sha256)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            if self._sync:
                _fsync_dir(target.parent)
        # else: the same content is stored already; the staged copy is dropped on return.
        current = self._read_ref(key)
        if current is not None and current.sha256 == sha256 and current.content_type == content_type:
            return current
        info = BlobInfo(key, size, sha256, content_type, datetime.now(UTC))
        self._write_ref(info)
        if current is not None and current.sha256 != sha256:
            self._sweep({current.sha256})
        return info

    def stage(self, chunks: AsyncIterator[bytes]) -> AbstractAsyncContextManager[StagedUpload]:
        # In the data directory's own tmp/, so that commit is a rename on one filesystem.
        return stage(self._tmp, chunks, sync=self._sync)

    async def commit(self, key: str, content_type: str, staged: StagedUpload) -> BlobInfo:
        self._ref_path(key)
        async with self._lock:
            return await asyncio.to_thread(
                self._commit, staged.path, key, content_type, staged.sha256, staged.size
            )

    # Reading.

    async def stat(self, key: str) -> BlobInfo:
        info = await asyncio.to_thread(self._read_ref, key)
        if info is None:
            raise NotFound(f"blob {key} not found")
        return info

    def _open_object(self, key: str) -> tuple[BlobInfo, BinaryIO] | None:
        info = self._read_ref(key)
        if info is None:
            return None
        try:
            return info, self._object_path(info.sha256).open("rb")
        except FileNotFoundError:
            # Deleted between reading the ref and opening the object.
            return None

    def open(self, key: str) -> AbstractAsyncContextManager[BlobReader]:
        return self._open(key)

    @asynccontextmanager
    async def _open(self, key: str) -> AsyncIterator[BlobReader]:
        opened = await asyncio.to_thread(self._open_object, key)
        if opened is None:
            raise NotFound(f"blob {key} not found")
        info, file = opened
        try:
            yield FsBlobReader(info, file)
        finally:
            file.close()

    # Deleting.

    def _delete_refs(self, prefix: str) -> tuple[int, set[str]]:
        directory = self._refs / prefix.rstrip("/")
        if not directory.resolve().is_relative_to(self._refs):
            raise ValueError(f"unsafe prefix {prefix!r}")
        deleted = 0
        candidates: set[str] = set()
        for ref in list(self._iter_refs(directory)):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                candidates.add(str(json.loads(ref.read_text())["sha256"]))
            ref.unlink(missing_ok=True)
            deleted += 1
        # Remove the now empty directories, deepest first.
        for dirpath, _dirnames, _filenames in sorted(os.walk(directory), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        return deleted, candidates

    def _sweep(self, candidates: set[str] | None) -> int:
        """Removes the objects no ref names: among `candidates`, or all when None."""
        referenced: set[str] = set()
        for ref in self._iter_refs(self._refs):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                referenced.add(str(json.loads(ref.read_text())["sha256"]))
        if candidates is None:
            candidates = {
                path.parent.name + path.name for path in self._objects.glob("??/*") if path.is_file()
            }
        removed = 0
        for sha256 in candidates - referenced:
            path = self._object_path(sha256)
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def _delete_prefix(self, prefix: str) -> int:
        deleted, candidates = self._delete_refs(prefix)
        self._sweep(candidates)
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_keys(self, keys: list[str]) -> int:
        deleted = 0
        candidates: set[str] = set()
        for key in keys:
            info = self._read_ref(key)
            if info is None:
                continue
            self._ref_path(key).unlink(missing_ok=True)
            candidates.add(info.sha256)
            deleted += 1
        self._sweep(candidates)
        return deleted

    async def delete_keys(self, keys: list[str]) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._delete_keys, keys)

    # Signing.

    async def sign(self, key: str, ttl_seconds: int) -> SignedLocation:
        uri, expires = self._signer.sign(key, ttl_seconds)
        return SignedLocation(uri, expires)
