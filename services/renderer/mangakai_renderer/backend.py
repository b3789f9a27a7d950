"""The image backends' contract and the backends that draw locally.

`LocalBackend` is the default without a Gemini key: it plans with the story
planner and draws storyboard panels with Pillow. `FixedLatencyBackend` plans
the same way but "draws" a small plain panel after a fixed delay; benchmarks
use it to measure the pipeline around a backend of known latency.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_renderer import local_art, story_planner

# The monotonic time by which the RPC being served must answer (None: no deadline). The servicer
# sets it from the gRPC deadline; a backend's retries and waits never outlast it.
REQUEST_DEADLINE: ContextVar[float | None] = ContextVar("request_deadline", default=None)


class BackendError(Exception):
    """A panel could not be drawn; `reason` is a short machine-readable cause (e.g. IMAGE_SAFETY)."""

    def __init__(
        self, reason: str, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class PanelSpec(Protocol):
    """What a backend needs to draw a panel (a RenderPanelRequest fits)."""

    @property
    def scene(self) -> common_pb2.Scene: ...
    @property
    def characters(self) -> Sequence[common_pb2.Character]: ...
    @property
    def style(self) -> common_pb2.StylePreferences: ...
    @property
    def instruction(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def aspect_ratio(self) -> str: ...
    @property
    def reading_order(self) -> common_pb2.ReadingOrder.ValueType: ...


@dataclass(frozen=True)
class References:
    """The images a panel is drawn with, by role (the prompt tells the model which is which)."""

    character_sheet: bytes | None = None
    user: Sequence[bytes] = ()
    previous_version: bytes | None = None


@dataclass(frozen=True)
class Artwork:
    """A drawn panel: the art without any text, and the same art lettered from the scene plan."""

    art: Image.Image
    lettered: Image.Image = field(repr=False)


# Frame shapes a panel can be drawn at (width:height), the ones Gemini's image models accept.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_RATIO = re.compile(r"(\d+):(\d+)")


def frame_size(aspect_ratio: str, long_edge: int) -> tuple[int, int]:
    """Pixel size of a frame of `aspect_ratio` ("W:H", empty = square) whose longer edge is `long_edge`."""
    match = _RATIO.fullmatch(aspect_ratio or "1:1")
    width, height = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
    if width >= height:
        return long_edge, max(1, round(long_edge * height / width))
    return max(1, round(long_edge * width / height)), long_edge


class ImageBackend(Protocol):
    """Plans stories, draws character sheets and panels."""

    name: str
    # A model backend draws from reference images (character sheet, the user's, the previous
    # version) and its un-lettered art is kept, since drawing it again costs a model call.
    model_backed: bool

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan: ...

    async def draw(self, spec: PanelSpec, references: References) -> Artwork: ...

    async def draw_character_sheet(
        self,
        characters: Sequence[common_pb2.Character],
        style: common_pb2.StylePreferences,
        language: str,
        references: Sequence[bytes],
    ) -> Image.Image: ...


class LocalBackend:
    """Deterministic storyboard panels drawn on the CPU, no network."""

    name = "local"
    # Draws from the scene plan alone, and redraws the same art from it in a tenth of a second.
    model_backed = False

    def __init__(self, panel_size: int = 1024) -> None:
        self._size = panel_size

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        return await asyncio.to_thread(story_planner.plan_story, story, panel_count, style)

    async def draw(self, spec: PanelSpec, references: References) -> Artwork:
        art, lettered = await asyncio.to_thread(
            local_art.draw_panel_layers,
            spec.scene,
            list(spec.characters),
            spec.style,
            language=spec.language,
            size=frame_size(spec.aspect_ratio, self._size),
            instruction=spec.instruction,
            reading_order=spec.reading_order,
        )
        return Artwork(art, lettered)

    async def draw_character_sheet(
        self,
        characters: Sequence[common_pb2.Character],
        style: common_pb2.StylePreferences,
        language: str,
        references: Sequence[bytes],
    ) -> Image.Image:
        return await asyncio.to_thread(
            local_art.draw_character_sheet,
            characters,
            style,
            language=language,
            size=frame_size("3:2", round(self._size * 1.5)),
        )


class FixedLatencyBackend:
    """A backend that takes exactly `latency` seconds per panel (benchmarks only)."""

    name = "fixed-latency"
    model_backed = False

    def __init__(self, latency: float) -> None:
        self._latency = latency

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        return story_planner.plan_story(story, panel_count, style)

    async def draw(self, spec: PanelSpec, references: References) -> Artwork:
        if self._latency:
            await asyncio.sleep(self._latency)
        shade = 40 + (spec.scene.number * 37) % 180
        image = Image.new("RGB", (64, 64), (shade, shade, shade))
        return Artwork(image, image)

    async def draw_character_sheet(
        self,
        characters: Sequence[common_pb2.Character],
        style: common_pb2.StylePreferences,
        language: str,
        references: Sequence[bytes],
    ) -> Image.Image:
        if self._latency:
            await asyncio.sleep(self._latency)
        return Image.new("RGB", (96, 64), (200, 200, 200))


def decode_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
