"""Frames that fit: every layout shows each panel's own art over its whole frame (no
letterboxing, no blurred fill) and the frames fill the page."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from mangakai.v1 import common_pb2
from mangakai_renderer.page_composer import MIN_FRAME_EDGE, compose_pages, page_frames

PAGE = (827, 1170)  # A4 at 100 DPI: small enough to scan every pixel quickly
SQUARE, WIDE, TALL, STRIP = (300, 300), (400, 225), (300, 400), (420, 180)
# The shapes the orchestrator asks for per layout (wide shots 16:9, close-ups 3:4, others
# square; four-koma 21:9; single pages 3:4), and a few it does not.
SHAPES = {
    "classic mix": [WIDE, SQUARE, TALL, SQUARE, WIDE, TALL],
    "squares": [SQUARE] * 6,
    "all wide": [WIDE] * 5,
    "all tall": [TALL] * 4,
    "four-koma strips": [STRIP] * 4,
    "single portrait": [TALL],
}
LAYOUTS = {
    "classic": common_pb2.PAGE_LAYOUT_CLASSIC,
    "unspecified": common_pb2.PAGE_LAYOUT_UNSPECIFIED,
    "four-koma": common_pb2.PAGE_LAYOUT_FOUR_KOMA,
    "single": common_pb2.PAGE_LAYOUT_SINGLE,
    "webtoon": common_pb2.PAGE_LAYOUT_WEBTOON,
}


def _colour(index: int) -> tuple[int, int, int]:
    return (40 + 37 * index % 200, 200 - 29 * index % 180, 90 + 53 * index % 160)


def _panels(shapes: list[tuple[int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", shape, _colour(index)) for index, shape in enumerate(shapes)]


def _share_of(page: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> float:
    """The share of `box` (the frame inside its ink border) painted in exactly the panel's colour."""
    area = page.crop(box)
    difference = ImageChops.difference(area, Image.new("RGB", area.size, colour))
    red, green, blue = difference.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return largest.histogram()[0] / (area.width * area.height)


def _bounds(page: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels of exactly `colour` on `page`."""
    same = ImageChops.difference(page, Image.new("RGB", page.size, colour)).convert("L")
    return same.point(lambda v: 255 if v == 0 else 0).getbbox()


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_frame_is_covered_by_its_own_panel(
    layout: common_pb2.PageLayout.ValueType, shapes: list[tuple[int, int]]
) -> None:
    panels = _panels(shapes)
    pages = compose_pages(panels, None, layout, common_pb2.READING_ORDER_LEFT_TO_RIGHT, page_size=PAGE)
    border = 4  # the ink border drawn over each frame's edge
    if layout == common_pb2.PAGE_LAYOUT_WEBTOON:
        # The strip has no frames to ask for: each panel's colour must make one solid rectangle
        # the width of the strip.
        for index, panel in enumerate(panels):
            page = next(p for p in pages if _bounds(p, _colour(index)) is not None)
            bounds = _bounds(page, _colour(index))
            assert bounds is not None
            left, top, right, bottom = bounds
            assert right - left >= 700, f"panel {index} spans the strip"
            assert _share_of(page, bounds, _colour(index)) == 1.0
            assert abs((right - left) / (bottom - top) - panel.width / panel.height) < 0.05
        return
    frame_pages = page_frames(panels, None, layout, PAGE)
    assert len(frame_pages) == len(pages)
    for page, frames in zip(pages, frame_pages, strict=True):
        for frame in frames:
            inside = (
                frame.left + border,
                frame.top + border,
                frame.left + frame.width - border,
                frame.top + frame.height - border,
            )
            share = _share_of(page, inside, _colour(frame.panel))
            assert share == 1.0, f"panel {frame.panel} covers {share:.1%} of its frame"


@pytest.mark.parametrize(
    ("layout", "shapes"),
    [
        (common_pb2.PAGE_LAYOUT_CLASSIC, SHAPES["classic mix"]),
        (common_pb2.PAGE_LAYOUT_CLASSIC, SHAPES["squares"]),
        (common_pb2.PAGE_LAYOUT_CLASSIC, SHAPES["squares"][:4]),
        (common_pb2.PAGE_LAYOUT_CLASSIC, [WIDE, SQUARE, TALL, SQUARE, WIDE, TALL, SQUARE, WIDE]),
        (common_pb2.PAGE_LAYOUT_FOUR_KOMA, SHAPES["four-koma strips"]),
        (common_pb2.PAGE_LAYOUT_SINGLE, SHAPES["single portrait"]),
    ],
    ids=[
        "classic six",
        "classic squares",
        "classic four squares",
        "classic eight",
        "four-koma",
        "single",
    ],
)
def test_frames_fill_the_page(layout: common_pb2.PageLayout.ValueType, shapes: list[tuple[int, int]]) -> None:
    """Frames of the shapes the orchestrator draws cover at least 80 % of each page inside its
    margins: the single layout no longer leaves a third of the page empty, and classic pages
    stack two panels beside a taller one where rows alone would leave the page half empty."""
    for frames in page_frames(_panels(shapes), None, layout, PAGE):
        left = min(frame.left for frame in frames)
        margin = PAGE[0] * 0.08 if layout == common_pb2.PAGE_LAYOUT_FOUR_KOMA else min(left, PAGE[0] * 0.06)
        usable = (PAGE[0] - 2 * margin) * (PAGE[1] - 2 * margin)
        covered = sum(frame.width * frame.height for frame in frames)
        assert covered / usable >= 0.8, f"frames cover {covered / usable:.0%} of the page"
        assert all(frame.left >= 0 and frame.left + frame.width <= PAGE[0] for frame in frames)
        assert all(frame.top >= 0 and frame.top + frame.height <= PAGE[1] for frame in frames)
        # And every frame is large enough for dialogue lettered at 7 pt (see lettering).
        assert min(min(frame.width, frame.height) for frame in frames) >= MIN_FRAME_EDGE * PAGE[0] - 1
