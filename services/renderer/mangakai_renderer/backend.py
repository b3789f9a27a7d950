"""The image backends' contract and the backends that draw locally.

`LocalBackend` is the default without a Gemini key: it plans with the story
planner and draws storyboard panels with Pillow. `FixedLatencyBackend` plans
the same way but "draws" a small plain panel after a fixed delay; benchmarks
use it to measure the pipeline around a backend of known latency.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_renderer import local_art, story_planner


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


class ImageBackend(Protocol):
    """Plans stories and draws panels."""

    name: str

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan: ...

    async def draw(self, spec: PanelSpec, references: Sequence[bytes]) -> Image.Image: ...


class LocalBackend:
    """Deterministic storyboard panels drawn on the CPU, no network."""

    name = "local"

    def __init__(self, panel_size: int = 1024) -> None:
        self._size = (panel_size, panel_size)

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        return await asyncio.to_thread(story_planner.plan_story, story, panel_count, style)

    async def draw(self, spec: PanelSpec, references: Sequence[bytes]) -> Image.Image:
        return await asyncio.to_thread(
            local_art.draw_panel,
            spec.scene,
            list(spec.characters),
            spec.style,
            language=spec.language,
            size=self._size,
            instruction=spec.instruction,
        )


class FixedLatencyBackend:
    """A backend that takes exactly `latency` seconds per panel (benchmarks only)."""

    name = "fixed-latency"

    def __init__(self, latency: float) -> None:
        self._latency = latency

    async def plan(
        self, story: str, panel_count: int, style: common_pb2.StylePreferences
    ) -> common_pb2.ScenePlan:
        return story_planner.plan_story(story, panel_count, style)

    async def draw(self, spec: PanelSpec, references: Sequence[bytes]) -> Image.Image:
        if self._latency:
            await asyncio.sleep(self._latency)
        shade = 40 + (spec.scene.number * 37) % 180
        return Image.new("RGB", (64, 64), (shade, shade, shade))


def decode_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
