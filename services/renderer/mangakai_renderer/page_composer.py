"""The page composer: lays drawn panels out on manga pages.

It owns the page layouts (classic, four-koma, webtoon strip, single) and
reading order on the page (the export formats are in `documents`). Frames are
sized from the panels' own shapes: the frames of a row share one height and
each is as wide as its panel's aspect ratio makes it at that height (justified
rows), so a panel fills its frame without letterboxing. To fill the page
exactly, a row may be a little taller or shorter than its panels' shapes; the
panel is then cover-cropped by at most `MAX_CROP`, less than the inset of the
lettering, so no balloon or caption is cut.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

from mangakai.v1 import common_pb2

A4_200_DPI = (1654, 2339)
A4_WIDTH_POINTS = 595.2756
"""The width of the page every layout but the webtoon strip is printed on (the webtoon strip
is printed at this width too)."""
WEBTOON_WIDTH = 800
WEBTOON_PANELS_PER_PAGE = 4
CLASSIC_PANELS_PER_PAGE = 6
FOUR_KOMA_PANELS_PER_PAGE = 4
MAX_CROP = 0.03
"""The largest share of a panel's width or height a frame may cut away, half on each side.
The lettering keeps about 2 % of the panel clear at every edge, so a crop of 1.5 % a side
never reaches a balloon."""
MAX_PANELS_PER_ROW = 3
MIN_FRAME_EDGE = 0.25
"""No frame's shorter edge is less than this share of the page's width (when the panels'
shapes allow it): the lettering sizes its text from it so that dialogue prints at 7 pt or more."""
INK = (0, 0, 0)
GUTTER_COLOUR = (255, 255, 255)

_WIDE_SHOTS = (common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_WIDE)


@dataclass(frozen=True)
class Frame:
    """Where one panel goes on a page, in pixels."""

    panel: int  # index into the panels
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class _Box:
    """The area of a page frames may use, and the gutter between them."""

    left: float
    top: float
    width: float
    height: float
    gutter: float
    page_width: float


def compose_pages(
    panels: Sequence[Image.Image],
    scenes: Sequence[common_pb2.Scene] | None,
    layout: common_pb2.PageLayout.ValueType,
    reading_order: common_pb2.ReadingOrder.ValueType,
    *,
    page_size: tuple[int, int] = A4_200_DPI,
) -> list[Image.Image]:
    """The panels laid out on pages, in reading order.

    `scenes` (parallel to `panels`) gives a wide or establishing shot a row of
    its own; without them, rows are chosen from the panels' shapes alone.
    UNSPECIFIED layout is CLASSIC; UNSPECIFIED reading order is RIGHT_TO_LEFT
    (manga order).
    """
    if not panels:
        return []
    if scenes is not None and len(scenes) != len(panels):
        raise ValueError("scenes must be parallel to panels")
    if layout == common_pb2.PAGE_LAYOUT_WEBTOON:
        return [
            _webtoon_page(panels[start : start + WEBTOON_PANELS_PER_PAGE])
            for start in range(0, len(panels), WEBTOON_PANELS_PER_PAGE)
        ]
    right_to_left = reading_order != common_pb2.READING_ORDER_LEFT_TO_RIGHT
    pages: list[Image.Image] = []
    for frames in page_frames(panels, scenes, layout, page_size):
        if right_to_left:
            frames = [_mirror(frame, page_size[0]) for frame in frames]
        pages.append(_render_page(panels, frames, page_size))
    return pages


def page_frames(
    panels: Sequence[Image.Image],
    scenes: Sequence[common_pb2.Scene] | None,
    layout: common_pb2.PageLayout.ValueType,
    page_size: tuple[int, int],
) -> list[list[Frame]]:
    """The frames of each page of a paged layout (not the webtoon strip), left to right."""
    aspects = [panel.width / panel.height for panel in panels]
    wide = [scene.shot in _WIDE_SHOTS for scene in scenes] if scenes is not None else [False] * len(panels)
    width, height = page_size
    if layout == common_pb2.PAGE_LAYOUT_FOUR_KOMA:
        margin = width * 0.08
        box = _Box(margin, margin, width - 2 * margin, height - 2 * margin, height * 0.015, width)
        return [
            _four_koma_frames(
                list(range(start, min(start + FOUR_KOMA_PANELS_PER_PAGE, len(panels)))), aspects, box
            )
            for start in range(0, len(panels), FOUR_KOMA_PANELS_PER_PAGE)
        ]
    if layout == common_pb2.PAGE_LAYOUT_SINGLE:
        margin = width * 0.06
        box = _Box(margin, margin, width - 2 * margin, height - 2 * margin, 0, width)
        return [_justified([[(index,)]], aspects, box) for index in range(len(panels))]
    margin = width * 0.05
    box = _Box(margin, margin, width - 2 * margin, height - 2 * margin, width * 0.018, width)
    pages = _classic_pages(len(panels), aspects, wide, box)
    return [_justified(rows, aspects, box) for rows in pages]


# A cell of a row: one panel, or two stacked one above the other (read top to bottom).
Cell = tuple[int, ...]
Row = list[Cell]


@dataclass(frozen=True)
class _Candidate:
    """A way to lay out one page, and how well it does."""

    rows: list[Row]
    legible: bool  # every frame's shorter edge at least MIN_FRAME_EDGE of the page's width
    coverage: float  # share of the box covered by frames

    @property
    def score(self) -> float:
        return self.coverage + (1.0 if self.legible else 0.0)


def _classic_pages(count: int, aspects: Sequence[float], wide: Sequence[bool], box: _Box) -> list[list[Row]]:
    """The rows of each page: as few pages of at most six panels as possible, each page nearly
    as full as the others, split where the pages fill best."""
    pages = math.ceil(count / CLASSIC_PANELS_PER_PAGE)
    even = count / pages
    sizes = range(max(1, math.floor(even) - 1), min(CLASSIC_PANELS_PER_PAGE, math.ceil(even) + 1) + 1)

    @functools.cache
    def best_page(start: int, size: int) -> _Candidate:
        return _best_page(list(range(start, start + size)), aspects, wide, box)

    @functools.cache
    def best(start: int, pages_left: int) -> tuple[float, tuple[int, ...]]:
        """(score, page sizes) of the best split of panels from `start` into `pages_left` pages."""
        remaining = count - start
        if pages_left == 0:
            return (0.0, ()) if remaining == 0 else (-math.inf, ())
        options = [
            (best_page(start, size).score + rest[0], (size, *rest[1]))
            for size in sizes
            if size <= remaining
            for rest in [best(start + size, pages_left - 1)]
        ]
        return max(options, default=(-math.inf, ()))

    _, split = best(0, pages)
    result: list[list[Row]] = []
    start = 0
    for size in split:
        result.append(best_page(start, size).rows)
        start += size
    return result


def _cells(indexes: list[int]) -> list[list[Cell]]:
    """Every way to cut `indexes` into consecutive cells of one panel or two stacked."""
    if not indexes:
        return [[]]
    result: list[list[Cell]] = []
    for size in (1, 2):
        if size <= len(indexes):
            result.extend([tuple(indexes[:size]), *rest] for rest in _cells(indexes[size:]))
    return result


def _rows(cells: list[Cell]) -> list[list[Row]]:
    """Every way to cut `cells` into consecutive rows of one to MAX_PANELS_PER_ROW cells."""
    if not cells:
        return [[]]
    result: list[list[Row]] = []
    for size in range(1, min(MAX_PANELS_PER_ROW, len(cells)) + 1):
        result.extend([cells[:size], *rest] for rest in _rows(cells[size:]))
    return result


def _best_page(indexes: list[int], aspects: Sequence[float], wide: Sequence[bool], box: _Box) -> _Candidate:
    """The layout of one page that keeps its frames legible and fills the page best; among
    equals, fewer rows and fewer stacked cells."""
    candidates: list[tuple[tuple[bool, float, int, int], _Candidate]] = []
    for cells in _cells(indexes):
        if any(len(cell) > 1 and any(wide[index] for index in cell) for cell in cells):
            continue
        for rows in _rows(cells):
            # A wide or establishing shot of the plan takes a row to itself.
            if any(len(row) > 1 and any(wide[index] for cell in row for index in cell) for row in rows):
                continue
            frames = _justified(rows, aspects, box)
            legible = (
                min(min(frame.width, frame.height) for frame in frames) >= MIN_FRAME_EDGE * box.page_width
            )
            coverage = sum(frame.width * frame.height for frame in frames) / (box.width * box.height)
            candidate = _Candidate(rows, legible, coverage)
            candidates.append(
                ((legible, round(coverage, 2), -len(rows), -len(indexes) + len(cells)), candidate)
            )
    return max(candidates, key=lambda pair: pair[0])[1]


def _cell_width(cell: Cell, aspects: Sequence[float], height: float, gutter: float) -> float:
    """The width at which a cell's panels, at their own shapes, are `height` tall together."""
    if len(cell) == 1:
        return aspects[cell[0]] * height
    return max(1.0, height - gutter * (len(cell) - 1)) / sum(1 / aspects[index] for index in cell)


def _natural_height(row: Row, aspects: Sequence[float], box: _Box) -> float:
    """The height at which a row's cells, at their panels' shapes, span the box's width."""
    singles = sum(aspects[cell[0]] for cell in row if len(cell) == 1)
    stacks = [1 / sum(1 / aspects[index] for index in cell) for cell in row if len(cell) > 1]
    # width(h) = h * singles + (h - gutter) * sum(stacks) + gutter * (cells - 1), solved for width(h) = box.width
    return (box.width - box.gutter * (len(row) - 1) + box.gutter * sum(stacks)) / (singles + sum(stacks))


def _justified(rows: list[Row], aspects: Sequence[float], box: _Box) -> list[Frame]:
    """Frames for `rows`: each row spans the box's width at its panels' shapes, all rows made
    taller or shorter together (within MAX_CROP) to fill the box's height; rows still too tall
    are scaled down and centred. The rows are centred vertically in the box."""
    natural = [_natural_height(row, aspects, box) for row in rows]
    gaps = box.gutter * (len(rows) - 1)
    wanted = (box.height - gaps) / sum(natural)
    stretch = min(max(wanted, 1 - MAX_CROP), 1 / (1 - MAX_CROP))
    scale = min(1.0, (box.height - gaps) / (sum(natural) * stretch))
    top = box.top + (box.height - sum(natural) * stretch * scale - gaps) / 2
    frames: list[Frame] = []
    for row, row_height in zip(rows, natural, strict=True):
        drawn = row_height * scale  # the height the panels' shapes are laid out at
        frame_height = drawn * stretch
        widths = [_cell_width(cell, aspects, drawn, box.gutter) for cell in row]
        left = box.left + (box.width - sum(widths) - box.gutter * (len(row) - 1)) / 2
        for cell, cell_width in zip(row, widths, strict=True):
            shares = [1 / aspects[index] for index in cell]
            inner = frame_height - box.gutter * (len(cell) - 1)
            cell_top = top
            for index, share in zip(cell, shares, strict=True):
                height = inner * share / sum(shares)
                frames.append(_frame(index, left, cell_top, cell_width, height))
                cell_top += height + box.gutter
            left += cell_width + box.gutter
        top += frame_height + box.gutter
    return frames


def _four_koma_frames(indexes: list[int], aspects: Sequence[float], box: _Box) -> list[Frame]:
    """One column of four frames of equal height, sized for a full page of panels of the
    first one's shape, so a short last page has the same strips as the others."""
    strip = [aspects[indexes[0]]] * FOUR_KOMA_PANELS_PER_PAGE
    full = _justified([[(slot,)] for slot in range(FOUR_KOMA_PANELS_PER_PAGE)], strip, box)
    frames: list[Frame] = []
    for index, slot in zip(indexes, full[: len(indexes)], strict=True):
        # Each frame keeps its own panel's shape at the strip's height (within the box).
        width = min(round(box.width), round(slot.width * aspects[index] / strip[0]))
        frames.append(Frame(index, round(box.left + (box.width - width) / 2), slot.top, width, slot.height))
    return frames


def _frame(index: int, left: float, top: float, width: float, height: float) -> Frame:
    # Edges are rounded, not sizes, so neighbouring frames keep their gutter exactly.
    x0, y0 = round(left), round(top)
    return Frame(index, x0, y0, max(1, round(left + width) - x0), max(1, round(top + height) - y0))


def _mirror(frame: Frame, page_width: int) -> Frame:
    return Frame(frame.panel, page_width - frame.left - frame.width, frame.top, frame.width, frame.height)


def cover_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to cover `size` and cropped to it evenly on both sides.

    The layouts keep the crop within MAX_CROP, so it only trims the edge of the art.
    """
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def _render_page(
    panels: Sequence[Image.Image], frames: list[Frame], page_size: tuple[int, int]
) -> Image.Image:
    page = Image.new("RGB", page_size, GUTTER_COLOUR)
    draw = ImageDraw.Draw(page)
    border = max(3, round(page_size[0] / 400))
    for frame in frames:
        page.paste(cover_crop(panels[frame.panel], (frame.width, frame.height)), (frame.left, frame.top))
        draw.rectangle(
            (frame.left, frame.top, frame.left + frame.width - 1, frame.top + frame.height - 1),
            outline=INK,
            width=border,
        )
    return page


def _webtoon_page(panels: Sequence[Image.Image]) -> Image.Image:
    """One column of panels at the strip width, each keeping its own aspect ratio."""
    margin = 40
    gutter = 60
    inner = WEBTOON_WIDTH - 2 * margin
    heights = [max(1, round(panel.height * inner / panel.width)) for panel in panels]
    page = Image.new(
        "RGB", (WEBTOON_WIDTH, sum(heights) + gutter * (len(panels) - 1) + 2 * margin), GUTTER_COLOUR
    )
    draw = ImageDraw.Draw(page)
    top = margin
    for panel, panel_height in zip(panels, heights, strict=True):
        page.paste(cover_crop(panel, (inner, panel_height)), (margin, top))
        draw.rectangle((margin, top, margin + inner - 1, top + panel_height - 1), outline=INK, width=3)
        top += panel_height + gutter
    return page
