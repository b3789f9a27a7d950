"""The renderer's gRPC API: translates requests to backend calls and stores what is drawn."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Sequence
from typing import Any

import grpc
from PIL import Image

from mangakai.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from mangakai_renderer import documents, local_art, page_composer
from mangakai_renderer.backend import (
    ASPECT_RATIOS,
    REQUEST_DEADLINE,
    BackendError,
    ImageBackend,
    References,
    decode_image,
)
from mangakai_renderer.draws import DrawBook
from mangakai_renderer.metrics import DRAW_SECONDS, PANELS_DRAWN, PANELS_REUSED, SHEETS_DRAWN, drawing
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.errors import (
    Aborted,
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
MAX_INSTRUCTION_CHARS = 1000
MAX_REFERENCES = 4


class RendererServicer(renderer_pb2_grpc.RendererServiceServicer):
    """Plans stories and draws panels with the configured backend."""

    def __init__(self, backend: ImageBackend, blobs: BlobClient, *, concurrency: int) -> None:
        self._backend = backend
        self._blobs = blobs
        self._slots = asyncio.Semaphore(concurrency)
        self.draws = DrawBook()

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
        violations = _output_violations(request.output_blob_key, request.reference_blob_keys)
        if not request.HasField("scene"):
            violations.append(FieldViolation("scene", "is required"))
        if request.aspect_ratio and request.aspect_ratio not in ASPECT_RATIOS:
            violations.append(FieldViolation("aspect_ratio", f"must be one of {', '.join(ASPECT_RATIOS)}"))
        if len(request.instruction) > MAX_INSTRUCTION_CHARS:
            violations.append(
                FieldViolation("instruction", f"must be at most {MAX_INSTRUCTION_CHARS} characters")
            )
        if violations:
            raise InvalidArgument(violations)
        _set_deadline(context)
        return await self.draws.run(request.output_blob_key, request.job, lambda: self._render_panel(request))

    async def _render_panel(
        self, request: renderer_pb2.RenderPanelRequest
    ) -> renderer_pb2.RenderPanelResponse:
        """Draws a panel and stores it (the art first, then the lettered panel), unless it is stored already."""
        key = request.output_blob_key
        art_key = art_blob_key(key)
        existing = None if request.fresh_output else await self._blobs.stat(key)
        if existing is not None:
            # Drawn before (e.g. by a call whose caller died): never draw a panel twice.
            PANELS_REUSED.inc()
            _, data = await self._blobs.get(key)
            response = renderer_pb2.RenderPanelResponse(
                image=_image_ref(existing, decode_image(data)), backend=self._backend.name, drawn=False
            )
            art_blob = await self._blobs.stat(art_key)
            if art_blob is not None:
                response.art.CopyFrom(_image_ref(art_blob, None, like=response.image))
            return response
        references = References()
        if self._backend.model_backed:
            sheet, previous, *user = await asyncio.gather(
                self._fetch(request.character_sheet_blob_key),
                self._fetch(request.previous_version_blob_key),
                *map(self._fetch, request.reference_blob_keys),
            )
            references = References(
                character_sheet=sheet, user=[d for d in user if d], previous_version=previous
            )
        async with self._slots:
            started = time.perf_counter()
            try:
                with drawing():
                    artwork = await self._backend.draw(request, references)
            except BackendError as exc:
                raise _status(exc) from exc
            DRAW_SECONDS.labels(self._backend.name).observe(time.perf_counter() - started)
        response = renderer_pb2.RenderPanelResponse(backend=self._backend.name, drawn=True)
        if self._backend.model_backed:
            # The art first: once the lettered panel exists the call counts as done.
            art_png = await asyncio.to_thread(local_art.encode_png, artwork.art)
            art_blob = await self._blobs.put(art_key, "image/png", art_png)
            response.art.CopyFrom(_image_ref(art_blob, artwork.art))
        lettered_png = await asyncio.to_thread(local_art.encode_png, artwork.lettered)
        blob = await self._blobs.put(key, "image/png", lettered_png)
        PANELS_DRAWN.labels(self._backend.name).inc()
        # One line per panel actually drawn: what an operator (and the replica tests,
        # whose killed replicas take their counters with them) counts draws by.
        log.info("panel drawn: %s", key, extra={"blob_key": key, "backend": self._backend.name})
        response.image.CopyFrom(_image_ref(blob, artwork.lettered))
        return response

    async def RenderCharacterSheet(
        self, request: renderer_pb2.RenderCharacterSheetRequest, context: Context
    ) -> renderer_pb2.RenderCharacterSheetResponse:
        violations = _output_violations(request.output_blob_key, request.reference_blob_keys)
        if not request.characters:
            violations.append(FieldViolation("characters", "at least one character is required"))
        if violations:
            raise InvalidArgument(violations)
        _set_deadline(context)
        return await self.draws.run(
            request.output_blob_key, request.job, lambda: self._render_character_sheet(request)
        )

    async def _render_character_sheet(
        self, request: renderer_pb2.RenderCharacterSheetRequest
    ) -> renderer_pb2.RenderCharacterSheetResponse:
        key = request.output_blob_key
        existing = await self._blobs.stat(key)
        if existing is not None:
            _, data = await self._blobs.get(key)
            return renderer_pb2.RenderCharacterSheetResponse(
                image=_image_ref(existing, decode_image(data)), backend=self._backend.name, drawn=False
            )
        references = [
            data for data in await asyncio.gather(*map(self._fetch, request.reference_blob_keys)) if data
        ]
        async with self._slots:
            try:
                with drawing():
                    sheet = await self._backend.draw_character_sheet(
                        request.characters, request.style, request.language or "en", references
                    )
            except BackendError as exc:
                raise _status(exc) from exc
        png = await asyncio.to_thread(local_art.encode_png, sheet)
        blob = await self._blobs.put(key, "image/png", png)
        SHEETS_DRAWN.labels(self._backend.name).inc()
        return renderer_pb2.RenderCharacterSheetResponse(
            image=_image_ref(blob, sheet), backend=self._backend.name, drawn=True
        )

    async def _fetch(self, key: str) -> bytes | None:
        if not key:
            return None
        _, data = await self._blobs.get(key)
        return data

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


def _compose(
    request: renderer_pb2.ComposeDocumentRequest, panels: list[Image.Image]
) -> tuple[bytes, str, int]:
    title = request.title or "Untitled"
    language = request.language or "en"
    today = datetime.date.today()
    right_to_left = request.reading_order != common_pb2.READING_ORDER_LEFT_TO_RIGHT
    if request.format == common_pb2.EXPORT_FORMAT_CBZ:
        pages = page_composer.compose_pages(panels, None, request.layout, request.reading_order)
        cover = documents.title_page(title, len(panels), today, language, pages[0].size)
        cbz = documents.write_cbz(
            pages, title=title, language=language, right_to_left=right_to_left, cover=cover, date=today
        )
        return cbz, "application/vnd.comicbook+zip", len(pages) + 1
    # Print resolution: A4 pages at 300 DPI; a webtoon strip keeps its width and fills the A4 width.
    print_size = documents.print_page_pixels()
    pages = page_composer.compose_pages(
        panels, None, request.layout, request.reading_order, page_size=print_size
    )
    dpi = documents.PRINT_DPI
    if request.layout == common_pb2.PAGE_LAYOUT_WEBTOON:
        dpi = max(1, round(pages[0].width * documents.POINTS_PER_INCH / documents.A4_POINTS[0]))
    pdf = documents.write_pdf(
        pages, title=title, panel_count=len(panels), date=today, language=language, dpi=dpi
    )
    return pdf, "application/pdf", len(pages) + 1


def _image_ref(
    blob: common_pb2.Blob, image: Image.Image | None, *, like: common_pb2.Image | None = None
) -> common_pb2.Image:
    """The Image of a stored blob; its size from `image`, or from `like` (the same picture lettered)."""
    width, height = (
        (image.width, image.height) if image is not None else (like.width, like.height) if like else (0, 0)
    )
    return common_pb2.Image(
        blob_key=blob.key,
        content_type=blob.content_type or "image/png",
        width=width,
        height=height,
        sha256=blob.sha256,
    )


def art_blob_key(output_blob_key: str) -> str:
    """Where the un-lettered art of a panel stored at `output_blob_key` goes."""
    stem = output_blob_key[:-4] if output_blob_key.endswith(".png") else output_blob_key
    return f"{stem}.art.png"


def _output_violations(output_blob_key: str, reference_blob_keys: Sequence[str]) -> list[FieldViolation]:
    violations = []
    if not output_blob_key:
        violations.append(FieldViolation("output_blob_key", "is required"))
    if len(reference_blob_keys) > MAX_REFERENCES:
        violations.append(FieldViolation("reference_blob_keys", f"at most {MAX_REFERENCES} references"))
    return violations


def _set_deadline(context: Context) -> None:
    """Lets the backend know how long the caller waits (this task's copy of the context variable)."""
    remaining = context.time_remaining()
    REQUEST_DEADLINE.set(None if remaining is None else time.monotonic() + remaining)


# A quota store (NATS) briefly away: the caller may come back after this long.
QUOTA_STORE_RETRY_SECONDS = 1.0


def _status(exc: BackendError) -> Exception:
    """The answer for a draw that failed. The renderer owns the retries of Gemini calls: the
    caller is told to retry (RetryInfo) only when nothing was paid for, never after a Gemini
    failure that has already used up this replica's GEMINI_ATTEMPTS."""
    if exc.retry_after is not None:
        return ResourceExhausted(str(exc), retry_after=exc.retry_after, reason=exc.reason)
    if exc.reason == "QUOTA_STORE_UNAVAILABLE":
        return Unavailable(str(exc), reason=exc.reason, retry_after=QUOTA_STORE_RETRY_SECONDS)
    if exc.retryable:
        # Retried here already (5xx, timeouts): ABORTED ("retry at a higher level", AIP-193),
        # so that neither the channel nor the orchestrator multiplies the Gemini calls;
        # the user may regenerate the panel later.
        return Aborted(str(exc), reason=exc.reason)
    return FailedPrecondition(str(exc), reason=exc.reason)
