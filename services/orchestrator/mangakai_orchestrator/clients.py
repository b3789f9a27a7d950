"""The orchestrator's connections to the renderer and storage services."""

from __future__ import annotations

from mangakai.v1 import renderer_pb2_grpc
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.clients import channel


class Backends:
    """The renderer stub and the storage client, opened once per process."""

    def __init__(self, renderer_addr: str, storage_addr: str) -> None:
        self._renderer_channel = channel(renderer_addr)
        self.renderer = renderer_pb2_grpc.RendererServiceStub(self._renderer_channel)
        self.blobs = BlobClient(storage_addr)

    async def close(self) -> None:
        await self._renderer_channel.close()
        await self.blobs.close()
