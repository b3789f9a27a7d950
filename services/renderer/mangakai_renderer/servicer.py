"""The renderer's gRPC API: translates requests to backend calls and stores what is drawn."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from PIL import Image

from mangakai.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from mangakai_renderer import local_art, page_composer
from mangakai_renderer.backend import BackendError, ImageBackend, decode_image
from mangakai_renderer.metrics import DRAW_SECONDS, IN_FLIGHT, PANELS_DRAWN, PANELS_REUSED
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

MAX_STORY_CHARS = 20_000
MAX_PANELS = 24


class RendererServicer(renderer_pb2_grpc.RendererServiceServicer):
    """Plans stories and draws panels with the configured backend."""

    def __init__(self, backend: ImageBackend, blobs: BlobClient, *, concurrency: int) -> None:
        self._backend = backend
        self._blobs = blobs
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: dict[str, asyncio.Lock] = {}

    async def PlanStory(
        self, request: renderer_pb2.PlanStoryRequest, context: Context
    ) -> common_pb2.ScenePlan:
        violations = []
        if not request.story.strip() or len(request.story) > MAX_STORY_CHARS:
            violations.append(FieldViolation("story", f"must be 1 to {MAX_STORY_CHARS} characters"))
        if not 1 <= request.panel_count <= MAX_PANELS:
            violations.append(FieldViolation("panel_count", f"must be 1 to {MAX_PANELS}"))
        if violations:
            raise InvalidArgument(violations)
        try:
            return await self._backend.plan(request.story, request.panel_count, request.style)
        except BackendError as exc:
            raise _status(exc) from exc

    async def RenderPanel(
        self, request: renderer_pb2.RenderPanelRequest, context: Context
    ) -> renderer_pb2.RenderPanelResponse:
        if not request.output_blob_key:
            raise InvalidArgument([FieldViolation("output_blob_key", "is required")])
        if not request.HasField("scene"):
            raise InvalidArgument([FieldViolation("scene", "is required")])
        key = request.output_blob_key
        async with self._single_flight(key):
            existing = await self._blobs.stat(key)
            if existing is not None:
                # Drawn before (e.g. by a call whose caller died): never draw a panel twice.
                PANELS_REUSED.inc()
                _, data = await self._blobs.get(key)
                return renderer_pb2.RenderPanelResponse(
                    image=_image_ref(existing, decode_image(data)), backend=self._backend.name, drawn=False
                )
            references = [
                data
                for _, data in await asyncio.gather(
                    *(self._blobs.get(k) for k in request.reference_blob_keys)
                )
            ]
            async with self._slots:
                IN_FLIGHT.inc()
                started = time.perf_counter()
                try:
                    image = await self._backend.draw(request, references)
                except BackendError as exc:
                    raise _status(exc) from exc
                finally:
                    IN_FLIGHT.dec()
                DRAW_SECONDS.labels(self._backend.name).observe(time.perf_counter() - started)
            png = await asyncio.to_thread(local_art.encode_png, image)
            blob = await self._blobs.put(key, "image/png", png)
            PANELS_DRAWN.labels(self._backend.name).inc()
            return renderer_pb2.RenderPanelResponse(
                image=_image_ref(blob, image), backend=self._backend.name, drawn=True
            )

    async def ComposeDocument(
        self, request: renderer_pb2.ComposeDocumentRequest, context: Context
    ) -> renderer_pb2.ComposeDocumentResponse:
        violations = []
        if not request.panel_blob_keys:
            violations.append(FieldViolation("panel_blob_keys", "at least one panel is required"))
        if request.format not in (common_pb2.EXPORT_FORMAT_PDF, common_pb2.EXPORT_FORMAT_CBZ):
            violations.append(FieldViolation("format", "must be EXPORT_FORMAT_PDF or EXPORT_FORMAT_CBZ"))
        if not request.output_blob_key:
            violations.append(FieldViolation("output_blob_key", "is required"))
        if violations:
            raise InvalidArgument(violations)
        fetched = await asyncio.gather(*(self._blobs.get(k) for k in request.panel_blob_keys))
        panels = [decode_image(data) for _, data in fetched]
        document, content_type, pages = await asyncio.to_thread(_compose, request, panels)
        blob = await self._blobs.put(request.output_blob_key, content_type, document)
        return renderer_pb2.ComposeDocumentResponse(blob=blob, page_count=pages)

    @asynccontextmanager
    async def _single_flight(self, key: str) -> AsyncIterator[None]:
        lock = self._in_flight.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._in_flight.get(key) is lock:
                del self._in_flight[key]


def _compose(
    request: renderer_pb2.ComposeDocumentRequest, panels: list[Image.Image]
) -> tuple[bytes, str, int]:
    pages = page_composer.compose_pages(panels, None, request.layout, request.reading_order)
    title = request.title or "MangakAI"
    language = request.language or "en"
    if request.format == common_pb2.EXPORT_FORMAT_CBZ:
        right_to_left = request.reading_order != common_pb2.READING_ORDER_LEFT_TO_RIGHT
        return (
            page_composer.write_cbz(pages, title=title, language=language, right_to_left=right_to_left),
            "application/vnd.comicbook+zip",
            len(pages),
        )
    cover = page_composer.title_page(
        title, len(panels), datetime.date.today(), language, pages[0].size if pages else (1654, 2339)
    )
    document = [cover, *pages]
    return page_composer.write_pdf(document, title=title), "application/pdf", len(document)


def _image_ref(blob: common_pb2.Blob, image: Image.Image) -> common_pb2.Image:
    return common_pb2.Image(
        blob_key=blob.key,
        content_type=blob.content_type or "image/png",
        width=image.width,
        height=image.height,
        sha256=blob.sha256,
    )


def _status(exc: BackendError) -> Exception:
    if exc.retry_after is not None:
        return ResourceExhausted(str(exc), retry_after=exc.retry_after, reason=exc.reason)
    if exc.retryable:
        return Unavailable(str(exc), reason=exc.reason)
    return FailedPrecondition(str(exc), reason=exc.reason)
