"""Blobs in an S3 bucket (or any S3-compatible store), with presigned URLs.

An upload is staged to a local temp file first: S3 needs the sha256 (kept in
the object's metadata) before the first byte is sent, and the content check
must pass before anything is written. Objects over 8 MiB go up as multipart
uploads, aborted on error; an upload cut short by a crash stays invisible,
and a bucket lifecycle rule (AbortIncompleteMultipartUpload) frees its parts.
Credentials come from the standard AWS environment variables and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from mangakai_runtime.errors import NotFound
from mangakai_storage.backend import READ_CHUNK_BYTES, BlobInfo, BlobReader, SignedLocation
from mangakai_storage.staging import StagedUpload, clean_staging_dir, stage

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 8 * 1024 * 1024
PART_BYTES = 8 * 1024 * 1024
SHA256_METADATA = "sha256"
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES


def _read_part(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(size)


def rewrite_host(url: str, base_url: str) -> str:
    """`url` with the scheme and host of `base_url`, and its path under `base_url`'s path."""
    target = urlsplit(url)
    base = urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + target.path, target.query, ""))


class S3BlobReader:
    """A blob read with the ETag it had when opened, so a concurrent overwrite fails the read."""

    def __init__(self, backend: S3BlobBackend, info: BlobInfo, etag: str) -> None:
        self._backend = backend
        self._info = info
        self._etag = etag

    @property
    def info(self) -> BlobInfo:
        return self._info

    async def chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = READ_CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        stop = self._info.size if end is None else min(end, self._info.size)
        if start >= stop:
            return
        response = await self._backend.client.get_object(
            Bucket=self._backend.bucket,
            Key=self._backend.object_key(self._info.key),
            Range=f"bytes={start}-{stop - 1}",
            IfMatch=self._etag,
        )
        body = response["Body"]
        # Entering the body returns the raw HTTP response; keep the wrapper for its chunking.
        async with body:
            async for chunk in body.iter_chunks(chunk_size):
                yield chunk


class S3BlobBackend:
    """Blob storage in one bucket, every key under `prefix`."""

    def __init__(
        self,
        *,
        bucket: str,
        staging_dir: Path,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str | None = None,
        cdn_base_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self._staging = staging_dir
        self._prefix = prefix
        self._endpoint_url = endpoint_url
        self._region = region
        self._sse = sse
        self._cdn_base_url = cdn_base_url
        self._stack = AsyncExitStack()
        self._client: Any = None

    @property
    def name(self) -> str:
        return "s3"

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobBackend.start() was not called")
        return self._client

    def object_key(self, key: str) -> str:
        return self._prefix + key

    async def start(self) -> None:
        await asyncio.to_thread(clean_staging_dir, self._staging)
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=self._endpoint_url,
                region_name=self._region,
                config=Config(signature_version="s3v4"),
            )
        )
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            await self.close()
            raise RuntimeError(f"cannot use S3 bucket {self.bucket!r}: {exc}") from exc

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    # Metadata.

    def _info(self, key: str, head: dict[str, Any]) -> BlobInfo:
        modified = head.get("LastModified")
        return BlobInfo(
            key=key,
            size=int(head["ContentLength"]),
            sha256=str(head.get("Metadata", {}).get(SHA256_METADATA, "")),
            content_type=str(head.get("ContentType", "application/octet-stream")),
            created=modified if isinstance(modified, datetime) else datetime.now(UTC),
        )

    async def _head(self, key: str) -> tuple[BlobInfo, str] | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise
        return self._info(key, head), str(head["ETag"])

    async def stat(self, key: str) -> BlobInfo:
        found = await self._head(key)
        if found is None:
            raise NotFound(f"blob {key} not found")
        return found[0]

    # Writing.

    def stage(self, chunks: AsyncIterator[bytes]) -> AbstractAsyncContextManager[StagedUpload]:
        # Only read back to upload it: the bucket, not this file, is what must be durable.
        return stage(self._staging, chunks, sync=False)

    async def commit(self, key: str, content_type: str, staged: StagedUpload) -> BlobInfo:
        current = await self._head(key)
        if (
            current is not None
            and current[0].sha256 == staged.sha256
            and current[0].content_type == content_type
        ):
            return current[0]
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "Metadata": {SHA256_METADATA: staged.sha256},
        }
        if self._sse:
            extra["ServerSideEncryption"] = self._sse
        if staged.size <= MULTIPART_THRESHOLD:
            body = await asyncio.to_thread(staged.path.read_bytes)
            await self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body, **extra)
        else:
            await self._put_multipart(key, staged.path, staged.size, extra)
        written = await self._head(key)
        if written is None:
            raise RuntimeError(f"blob {key} vanished right after it was written")
        return written[0]

    async def _put_multipart(self, key: str, path: Path, size: int, extra: dict[str, Any]) -> None:
        object_key = self.object_key(key)
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=object_key, **extra)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, PART_BYTES), start=1):
                data = await asyncio.to_thread(_read_part, path, offset, PART_BYTES)
                part = await self.client.upload_part(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts.append({"ETag": part["ETag"], "PartNumber": number})
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
                )
            raise

    # Reading.

    def open(self, key: str) -> AbstractAsyncContextManager[BlobReader]:
        return self._open(key)

    @asynccontextmanager
    async def _open(self, key: str) -> AsyncIterator[BlobReader]:
        found = await self._head(key)
        if found is None:
            raise NotFound(f"blob {key} not found")
        yield S3BlobReader(self, *found)

    # Deleting.

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.object_key(prefix)):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not objects:
                continue
            result = await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
            errors = result.get("Errors", [])
            deleted += len(objects) - len(errors)
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"could not delete {len(errors)} objects, e.g. {first.get('Key')}: {first.get('Message')}"
                )
        return deleted

    async def delete_keys(self, keys: list[str]) -> int:
        # S3 reports a key without an object as deleted too: count the ones that exist first.
        found = await asyncio.gather(*(self._head(key) for key in keys))
        existing = [key for key, head in zip(keys, found, strict=True) if head is not None]
        if not existing:
            return 0
        result = await self.client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": self.object_key(key)} for key in existing], "Quiet": True},
        )
        errors = result.get("Errors", [])
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"could not delete {len(errors)} objects, e.g. {first.get('Key')}: {first.get('Message')}"
            )
        return len(existing)

    # Signing.

    async def sign(self, key: str, ttl_seconds: int) -> SignedLocation:
        expires = int(time.time()) + ttl_seconds
        url = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)}, ExpiresIn=ttl_seconds
        )
        if self._cdn_base_url:
            url = rewrite_host(url, self._cdn_base_url)
        return SignedLocation(str(url), expires)
