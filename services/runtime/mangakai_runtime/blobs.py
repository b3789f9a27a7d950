"""A typed client of the storage service, shared by the services that read and write blobs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mangakai.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from mangakai_runtime.clients import channel

CHUNK_BYTES = 512 * 1024


class BlobClient:
    """Puts, gets, stats and signs blobs over gRPC, with a deadline on every call."""

    def __init__(self, target: str, *, timeout: float = 60.0) -> None:
        self._channel = channel(target)
        self._stub = storage_pb2_grpc.StorageServiceStub(self._channel)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def put(self, key: str, content_type: str, data: bytes) -> common_pb2.Blob:
        async def parts() -> AsyncIterator[storage_pb2.PutBlobRequest]:
            yield storage_pb2.PutBlobRequest(
                header=storage_pb2.PutBlobHeader(key=key, content_type=content_type, size_bytes=len(data))
            )
            for start in range(0, len(data), CHUNK_BYTES):
                yield storage_pb2.PutBlobRequest(chunk=data[start : start + CHUNK_BYTES])

        blob: common_pb2.Blob = await self._stub.PutBlob(parts(), timeout=self._timeout)
        return blob

    async def get(self, key: str) -> tuple[common_pb2.Blob, bytes]:
        blob = common_pb2.Blob()
        chunks: list[bytes] = []
        async for part in self._stub.GetBlob(storage_pb2.GetBlobRequest(key=key), timeout=self._timeout):
            if part.HasField("blob"):
                blob.CopyFrom(part.blob)
            else:
                chunks.append(part.chunk)
        return blob, b"".join(chunks)

    async def stat(self, key: str) -> common_pb2.Blob | None:
        """The blob's metadata, or None when there is no such blob."""
        try:
            blob: common_pb2.Blob = await self._stub.StatBlob(
                storage_pb2.StatBlobRequest(key=key), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return blob

    async def sign(self, keys: list[str], ttl_seconds: int = 0) -> list[storage_pb2.SignedUrl]:
        response: storage_pb2.SignUrlsResponse = await self._stub.SignUrls(
            storage_pb2.SignUrlsRequest(keys=keys, ttl_seconds=ttl_seconds), timeout=10
        )
        return list(response.urls)

    async def delete(self, *, prefix: str = "", keys: list[str] | None = None) -> int:
        """Deletes the blobs under `prefix` (ending in "/") and those of `keys`; returns how many."""
        response: storage_pb2.DeleteBlobsResponse = await self._stub.DeleteBlobs(
            storage_pb2.DeleteBlobsRequest(prefix=prefix, keys=keys or []), timeout=self._timeout
        )
        return int(response.deleted_count)


# Derivatives: the storage service stores a WebP copy and a thumbnail beside each panel
# image it receives; the gateway signs their URLs. Both find them by these keys.

_DERIVED_FROM = "jobs/"


def webp_key(key: str) -> str | None:
    """The key of the WebP copy of the PNG image at `key`, or None when none is made for it.

    Made for the PNG images under "jobs/" (panels, character sheets), not for the
    un-lettered art ("….art.png"), which only the renderer reads.
    """
    if not key.startswith(_DERIVED_FROM) or not key.endswith(".png") or key.endswith(".art.png"):
        return None
    return key[: -len(".png")] + ".webp"


def thumbnail_key(key: str) -> str | None:
    """The key of the small WebP thumbnail of the PNG image at `key`, or None (see `webp_key`)."""
    webp = webp_key(key)
    return None if webp is None else webp[: -len(".webp")] + ".thumb.webp"
