"""The StorageService gRPC servicer: requests to backend calls, results to protobuf."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from mangakai.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from mangakai_runtime.errors import FieldViolation, InvalidArgument
from mangakai_storage.backend import READ_CHUNK_BYTES, BlobBackend, BlobInfo, ContentCheck, put
from mangakai_storage.content import content_check, content_type_problem
from mangakai_storage.derivatives import WEBP_CONTENT_TYPE, derivable, make_derivatives
from mangakai_storage.keys import key_problem, prefix_problem, validate_key
from mangakai_storage.metrics import BLOBS_WRITTEN, BYTES_IN, BYTES_OUT, DERIVATIVES_WRITTEN

MAX_CHUNK_BYTES = 1024 * 1024
MAX_SIGN_KEYS = 500
MAX_DELETE_KEYS = 1000
MAX_TTL_SECONDS = 604800


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def blob_proto(info: BlobInfo) -> common_pb2.Blob:
    return common_pb2.Blob(
        key=info.key,
        size_bytes=info.size,
        sha256=info.sha256,
        content_type=info.content_type,
        create_time=_timestamp(info.created),
    )


async def _bytes_once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    """Serves StorageService from one backend."""

    def __init__(
        self,
        backend: BlobBackend,
        *,
        max_blob_bytes: int,
        default_ttl_seconds: int,
        webp_quality: int = 85,
        thumbnail_pixels: int = 320,
    ) -> None:
        self._backend = backend
        self._max_blob_bytes = max_blob_bytes
        self._default_ttl_seconds = default_ttl_seconds
        self._webp_quality = webp_quality
        self._thumbnail_pixels = thumbnail_pixels

    async def PutBlob(
        self,
        request_iterator: AsyncIterator[storage_pb2.PutBlobRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> common_pb2.Blob:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument([FieldViolation("header", "the first message must be a header")])
        header = first.header
        violations = []
        if problem := key_problem(header.key):
            violations.append(FieldViolation("header.key", problem))
        if problem := content_type_problem(header.content_type):
            violations.append(FieldViolation("header.content_type", problem))
        if header.size_bytes < 0:
            violations.append(FieldViolation("header.size_bytes", "must not be negative"))
        elif header.size_bytes > self._max_blob_bytes:
            violations.append(
                FieldViolation(
                    "header.size_bytes", f"exceeds the maximum blob size of {self._max_blob_bytes} bytes"
                )
            )
        if violations:
            raise InvalidArgument(violations)

        backend_name = self._backend.name
        max_bytes = self._max_blob_bytes
        expected = header.size_bytes

        async def chunks() -> AsyncIterator[bytes]:
            total = 0
            async for request in requests:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        [FieldViolation("header", "only the first message may be a header")]
                    )
                chunk = request.chunk
                if len(chunk) > MAX_CHUNK_BYTES:
                    raise InvalidArgument(
                        [FieldViolation("chunk", f"must be at most {MAX_CHUNK_BYTES} bytes")]
                    )
                total += len(chunk)
                BYTES_IN.labels(backend_name).inc(len(chunk))
                if total > max_bytes:
                    raise InvalidArgument(
                        [
                            FieldViolation(
                                "chunk", f"the blob exceeds the maximum blob size of {max_bytes} bytes"
                            )
                        ]
                    )
                yield chunk
            if expected and total != expected:
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "header.size_bytes", f"declared {expected} bytes but the stream had {total}"
                        )
                    ]
                )

        check = content_check(header.content_type, "header.content_type")
        if derivable(header.key, header.content_type):
            info = await self._put_with_derivatives(header.key, header.content_type, chunks(), check)
        else:
            info = await put(self._backend, header.key, header.content_type, chunks(), check=check)
        BLOBS_WRITTEN.labels(backend_name).inc()
        return blob_proto(info)

    async def _put_with_derivatives(
        self, key: str, content_type: str, chunks: AsyncIterator[bytes], check: ContentCheck | None
    ) -> BlobInfo:
        """Stores the WebP copy and thumbnail of a panel image, then the image itself.

        In this order, so that whoever sees the image (and a retried upload
        after a crash) finds its derivatives too.
        """
        async with self._backend.stage(chunks) as staged:
            if check is not None:
                await asyncio.to_thread(check, staged.path)
            derived = await asyncio.to_thread(
                make_derivatives,
                staged.path,
                key,
                quality=self._webp_quality,
                thumbnail_pixels=self._thumbnail_pixels,
            )
            await asyncio.gather(
                *(
                    put(self._backend, derivative.key, WEBP_CONTENT_TYPE, _bytes_once(derivative.data))
                    for derivative in derived
                )
            )
            DERIVATIVES_WRITTEN.labels(self._backend.name).inc(len(derived))
            return await self._backend.commit(key, content_type, staged)

    async def GetBlob(
        self, request: storage_pb2.GetBlobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[storage_pb2.GetBlobResponse]:
        validate_key(request.key)
        counter = BYTES_OUT.labels(self._backend.name)
        async with self._backend.open(request.key) as reader:
            yield storage_pb2.GetBlobResponse(blob=blob_proto(reader.info))
            async for chunk in reader.chunks(chunk_size=READ_CHUNK_BYTES):
                counter.inc(len(chunk))
                yield storage_pb2.GetBlobResponse(chunk=chunk)

    async def StatBlob(
        self, request: storage_pb2.StatBlobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Blob:
        validate_key(request.key)
        return blob_proto(await self._backend.stat(request.key))

    async def SignUrls(
        self, request: storage_pb2.SignUrlsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> storage_pb2.SignUrlsResponse:
        violations = []
        if not 1 <= len(request.keys) <= MAX_SIGN_KEYS:
            violations.append(FieldViolation("keys", f"must name 1 to {MAX_SIGN_KEYS} keys"))
        for index, key in enumerate(request.keys):
            if problem := key_problem(key):
                violations.append(FieldViolation(f"keys[{index}]", problem))
        if not 0 <= request.ttl_seconds <= MAX_TTL_SECONDS:
            violations.append(
                FieldViolation("ttl_seconds", f"must be 1 to {MAX_TTL_SECONDS}, or 0 for the default")
            )
        if violations:
            raise InvalidArgument(violations)
        ttl = request.ttl_seconds or self._default_ttl_seconds
        response = storage_pb2.SignUrlsResponse()
        for key in request.keys:
            location = await self._backend.sign(key, ttl)
            response.urls.append(
                storage_pb2.SignedUrl(
                    key=key, uri=location.uri, expire_time=timestamp_pb2.Timestamp(seconds=location.expires)
                )
            )
        return response

    async def DeleteBlobs(
        self, request: storage_pb2.DeleteBlobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> storage_pb2.DeleteBlobsResponse:
        violations = []
        if not request.prefix and not request.keys:
            violations.append(FieldViolation("prefix", "a prefix or keys are required"))
        if request.prefix and (problem := prefix_problem(request.prefix)):
            violations.append(FieldViolation("prefix", problem))
        if len(request.keys) > MAX_DELETE_KEYS:
            violations.append(FieldViolation("keys", f"must name at most {MAX_DELETE_KEYS} keys"))
        for index, key in enumerate(request.keys):
            if problem := key_problem(key):
                violations.append(FieldViolation(f"keys[{index}]", problem))
        if violations:
            raise InvalidArgument(violations)
        deleted = 0
        if request.keys:
            deleted += await self._backend.delete_keys(list(request.keys))
        if request.prefix:
            deleted += await self._backend.delete_prefix(request.prefix)
        return storage_pb2.DeleteBlobsResponse(deleted_count=deleted)
