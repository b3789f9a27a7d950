"""Entry point: `python -m mangakai_renderer`."""

from __future__ import annotations

import asyncio
import logging

from mangakai.v1 import renderer_pb2_grpc
from mangakai_renderer.backend import FixedLatencyBackend, ImageBackend, LocalBackend
from mangakai_renderer.servicer import RendererServicer
from mangakai_renderer.settings import RendererSettings
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.server import ServiceMain

log = logging.getLogger(__name__)


def choose_backend(settings: RendererSettings) -> ImageBackend:
    kind = settings.renderer_backend
    if kind == "auto":
        kind = "gemini" if settings.gemini_api_key else "local"
    if kind == "gemini":
        if not settings.gemini_api_key:
            raise SystemExit("RENDERER_BACKEND=gemini needs GEMINI_API_KEY")
        from mangakai_renderer.gemini_backend import GeminiBackend

        return GeminiBackend(settings)
    if kind == "fixed-latency":
        return FixedLatencyBackend(settings.fixed_latency_ms / 1000)
    return LocalBackend(settings.panel_size)


async def main() -> None:
    settings = RendererSettings.from_env()
    service = ServiceMain("renderer", settings)
    service.setup()
    backend = choose_backend(settings)
    log.info("renderer backend: %s", backend.name)
    blobs = BlobClient(settings.storage_addr)
    servicer = RendererServicer(backend, blobs, concurrency=settings.render_concurrency)
    service.on_shutdown.append(blobs.close)
    await service.serve(
        [(renderer_pb2_grpc.add_RendererServiceServicer_to_server, servicer, "mangakai.v1.RendererService")]
    )


if __name__ == "__main__":
    asyncio.run(main())
