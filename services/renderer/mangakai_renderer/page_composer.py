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
        return [_justified([[index]], aspects, box) for index in range(len(panels))]
    margin = width * 0.05
    box = _Box(margin, margin, width - 2 * margin, height - 2 * margin, width * 0.018, width)
    return [
        _justified(_best_rows(group, aspects, wide, box), aspects, box)
        for group in _classic_groups(len(panels))
    ]


def _classic_groups(count: int) -> list[list[int]]:
    """Panel indexes per page: as few pages of at most six as possible, evenly filled."""
    pages = math.ceil(count / CLASSIC_PANELS_PER_PAGE)
    groups: list[list[int]] = []
    start = 0
    for page in range(pages):
        size = count // pages + (1 if page < count % pages else 0)
        groups.append(list(range(start, start + size)))
        start += size
    return groups


def _partitions(indexes: list[int]) -> list[list[list[int]]]:
    """Every way to cut `indexes` into consecutive rows of one to MAX_PANELS_PER_ROW panels."""
    if not indexes:
        return [[]]
    result: list[list[list[int]]] = []
    for size in range(1, min(MAX_PANELS_PER_ROW, len(indexes)) + 1):
        for rest in _partitions(indexes[size:]):
            result.append([indexes[:size], *rest])
    return result


def _best_rows(
    indexes: list[int], aspects: Sequence[float], wide: Sequence[bool], box: _Box
) -> list[list[int]]:
    """The rows that fill the page best: the largest share of `box` covered by frames."""
    candidates = [
        rows
        for rows in _partitions(indexes)
        if all(len(row) == 1 or not any(wide[index] for index in row) for row in rows)
    ]
    # Frames large enough for legible lettering first, then the fullest page; fewer rows among
    # equals, so a page does not become a column of strips.
    return max(
        candidates,
        key=lambda rows: (
            _smallest_edge(rows, aspects, box) >= MIN_FRAME_EDGE * box.page_width,
            round(_coverage(rows, aspects, box), 3),
            -len(rows),
        ),
    )


def _smallest_edge(rows: list[list[int]], aspects: Sequence[float], box: _Box) -> float:
    """The shorter edge of the smallest frame of `rows`, in pixels."""
    stretch, scale = _fit(rows, aspects, box)
    return min(
        min(row_height * stretch * scale, aspects[index] * row_height * scale)
        for row, row_height in zip(rows, _row_heights(rows, aspects, box), strict=True)
        for index in row
    )


def _row_heights(rows: list[list[int]], aspects: Sequence[float], box: _Box) -> list[float]:
    """The height at which each row's frames, at their panels' shapes, span the box's width."""
    return [(box.width - box.gutter * (len(row) - 1)) / sum(aspects[index] for index in row) for row in rows]


def _fit(rows: list[list[int]], aspects: Sequence[float], box: _Box) -> tuple[float, float]:
    """(stretch, scale): rows are `stretch` times their natural height (within MAX_CROP) and,
    when they are still too tall for the box, every frame is scaled by `scale` < 1."""
    natural = _row_heights(rows, aspects, box)
    gaps = box.gutter * (len(rows) - 1)
    wanted = (box.height - gaps) / sum(natural)
    stretch = min(max(wanted, 1 - MAX_CROP), 1 / (1 - MAX_CROP))
    scale = min(1.0, (box.height - gaps) / (sum(natural) * stretch))
    return stretch, scale


def _coverage(rows: list[list[int]], aspects: Sequence[float], box: _Box) -> float:
    natural = _row_heights(rows, aspects, box)
    stretch, scale = _fit(rows, aspects, box)
    used_height = sum(natural) * stretch * scale + box.gutter * (len(rows) - 1)
    return min(1.0, used_height / box.height) * scale


def _justified(rows: list[list[int]], aspects: Sequence[float], box: _Box) -> list[Frame]:
    """Frames for `rows`, each row spanning the box's width (or centred when scaled down), the
    rows centred vertically in the box."""
    natural = _row_heights(rows, aspects, box)
    stretch, scale = _fit(rows, aspects, box)
    used_height = sum(natural) * stretch * scale + box.gutter * (len(rows) - 1)
    top = box.top + (box.height - used_height) / 2
    frames: list[Frame] = []
    for row, row_height in zip(rows, natural, strict=True):
        frame_height = row_height * stretch * scale
        widths = [aspects[index] * row_height * scale for index in row]
        left = box.left + (box.width - sum(widths) - box.gutter * (len(row) - 1)) / 2
        for index, frame_width in zip(row, widths, strict=True):
            frames.append(_frame(index, left, top, frame_width, frame_height))
            left += frame_width + box.gutter
        top += frame_height + box.gutter
    return frames


def _four_koma_frames(indexes: list[int], aspects: Sequence[float], box: _Box) -> list[Frame]:
    """One column of four frames of equal height, sized for a full page of panels of the
    first one's shape, so a short last page has the same strips as the others."""
    strip = [aspects[indexes[0]]] * FOUR_KOMA_PANELS_PER_PAGE
    rows = [[slot] for slot in range(FOUR_KOMA_PANELS_PER_PAGE)]
    stretch, scale = _fit(rows, strip, box)
    natural = box.width / strip[0]
    frame_height = natural * stretch * scale
    top = box.top + (box.height - frame_height * len(rows) - box.gutter * (len(rows) - 1)) / 2
    frames: list[Frame] = []
    for index in indexes:
        frame_width = min(box.width, aspects[index] * natural * scale)
        frames.append(_frame(index, box.left + (box.width - frame_width) / 2, top, frame_width, frame_height))
        top += frame_height + box.gutter
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
