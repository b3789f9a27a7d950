"""The page composer: lays drawn panels out on manga pages.

It owns the page layouts (classic, four-koma, webtoon strip, single) and
reading order on the page (the export formats are in `documents`). Panels are
fitted into their frames by cover-cropping, so frames of any shape are filled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from mangakai.v1 import common_pb2

A4_200_DPI = (1654, 2339)
WEBTOON_WIDTH = 800
WEBTOON_PANELS_PER_PAGE = 4
CLASSIC_PANELS_PER_PAGE = 6
INK = (0, 0, 0)
GUTTER_COLOUR = (255, 255, 255)

_WIDE_SHOTS = (common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_WIDE)
_NARROW_SHOTS = (common_pb2.SHOT_TYPE_CLOSE_UP, common_pb2.SHOT_TYPE_EXTREME_CLOSE_UP)


@dataclass(frozen=True)
class Frame:
    """Where one panel goes on a page, in pixels."""

    panel: int  # index into the panels
    left: int
    top: int
    width: int
    height: int


def compose_pages(
    panels: Sequence[Image.Image],
    scenes: Sequence[common_pb2.Scene] | None,
    layout: common_pb2.PageLayout.ValueType,
    reading_order: common_pb2.ReadingOrder.ValueType,
    *,
    page_size: tuple[int, int] = A4_200_DPI,
) -> list[Image.Image]:
    """The panels laid out on pages, in reading order.

    `scenes` (parallel to `panels`) lets the classic layout give wide shots
    full-width frames and close-ups narrow ones; without them, a panel drawn
    wide or tall gets a frame of its shape. UNSPECIFIED layout is CLASSIC;
    UNSPECIFIED reading order is RIGHT_TO_LEFT (manga order).
    """
    if not panels:
        return []
    if scenes is not None and len(scenes) != len(panels):
        raise ValueError("scenes must be parallel to panels")
    right_to_left = reading_order != common_pb2.READING_ORDER_LEFT_TO_RIGHT
    shots = [scene.shot for scene in scenes] if scenes is not None else [shot_of_shape(p) for p in panels]
    if layout == common_pb2.PAGE_LAYOUT_WEBTOON:
        return [
            _webtoon_page(panels[start : start + WEBTOON_PANELS_PER_PAGE])
            for start in range(0, len(panels), WEBTOON_PANELS_PER_PAGE)
        ]
    if layout == common_pb2.PAGE_LAYOUT_FOUR_KOMA:
        frame_pages = [
            _four_koma_frames(list(range(start, min(start + 4, len(panels)))), page_size)
            for start in range(0, len(panels), 4)
        ]
    elif layout == common_pb2.PAGE_LAYOUT_SINGLE:
        frame_pages = [[_single_frame(index, page_size)] for index in range(len(panels))]
    else:
        frame_pages = [_classic_frames(group, shots, page_size) for group in _classic_groups(len(panels))]
    pages: list[Image.Image] = []
    for frames in frame_pages:
        if right_to_left:
            frames = [_mirror(frame, page_size[0]) for frame in frames]
        pages.append(_render_page(panels, frames, page_size))
    return pages


def shot_of_shape(panel: Image.Image) -> common_pb2.ShotType.ValueType:
    """The frame a panel's own shape asks for: wide art a wide frame, tall art a narrow one."""
    aspect = panel.width / panel.height
    if aspect >= 1.5:
        return common_pb2.SHOT_TYPE_WIDE
    if aspect <= 0.85:
        return common_pb2.SHOT_TYPE_CLOSE_UP
    return common_pb2.SHOT_TYPE_UNSPECIFIED


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


def _classic_frames(indexes: list[int], shots: Sequence[int], page_size: tuple[int, int]) -> list[Frame]:
    """Rows of one to three frames; a wide shot takes a row to itself, a close-up a narrow frame."""
    width, height = page_size
    margin = round(width * 0.05)
    gutter = round(width * 0.018)
    rows: list[list[int]] = []
    current: list[int] = []
    for index in indexes:
        if shots[index] in _WIDE_SHOTS:
            if current:
                rows.append(current)
                current = []
            rows.append([index])
            continue
        current.append(index)
        if len(current) == 2:
            rows.append(current)
            current = []
    if current:
        rows.append(current)
    # Too many rows for one page: fold single-panel rows of non-wide shots into threes.
    while len(rows) > 4:
        merged = False
        for row_index in range(len(rows) - 1):
            if len(rows[row_index]) + len(rows[row_index + 1]) <= 3 and not any(
                shots[i] in _WIDE_SHOTS for i in rows[row_index + 1]
            ):
                rows[row_index] = rows[row_index] + rows.pop(row_index + 1)
                merged = True
                break
        if not merged:
            break
    usable_height = height - 2 * margin - gutter * (len(rows) - 1)
    weights = [1.3 if len(row) == 1 and shots[row[0]] in _WIDE_SHOTS else 1.0 for row in rows]
    frames: list[Frame] = []
    top = float(margin)
    for row_index, row in enumerate(rows):
        row_height = usable_height * weights[row_index] / sum(weights)
        usable_width = width - 2 * margin - gutter * (len(row) - 1)
        shares = _row_shares(row, shots, row_index)
        left = float(margin)
        for index, share in zip(row, shares, strict=True):
            frame_width = usable_width * share
            frames.append(Frame(index, round(left), round(top), round(frame_width), round(row_height)))
            left += frame_width + gutter
        top += row_height + gutter
    return frames


def _row_shares(row: list[int], shots: Sequence[int], row_index: int) -> list[float]:
    if len(row) == 1:
        return [1.0]
    if len(row) == 3:
        return [0.3, 0.4, 0.3]
    first, second = (shots[i] in _NARROW_SHOTS for i in row)
    if first and not second:
        return [0.4, 0.6]
    if second and not first:
        return [0.6, 0.4]
    # Alternate the split so the page does not look ruled.
    return [0.56, 0.44] if row_index % 2 == 0 else [0.44, 0.56]


def _four_koma_frames(indexes: list[int], page_size: tuple[int, int]) -> list[Frame]:
    width, height = page_size
    margin = round(width * 0.08)
    gutter = round(height * 0.015)
    frame_height = (height - 2 * margin - 3 * gutter) / 4
    return [
        Frame(
            index,
            margin,
            round(margin + slot * (frame_height + gutter)),
            width - 2 * margin,
            round(frame_height),
        )
        for slot, index in enumerate(indexes)
    ]


def _single_frame(index: int, page_size: tuple[int, int]) -> Frame:
    width, height = page_size
    margin = round(width * 0.06)
    side = min(width, height) - 2 * margin
    return Frame(index, (width - side) // 2, (height - side) // 2, side, side)


def _mirror(frame: Frame, page_width: int) -> Frame:
    return Frame(frame.panel, page_width - frame.left - frame.width, frame.top, frame.width, frame.height)


def cover_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to cover `size` and cropped to it, keeping the upper middle (where faces are)."""
    return ImageOps.fit(image.convert("RGB"), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.42))


def fit_panel(image: Image.Image, size: tuple[int, int], *, max_crop: float = 0.08) -> Image.Image:
    """`image` filling a frame of `size`.

    A frame close to the panel's shape is filled by cover-cropping. When
    cropping would cut away more than `max_crop` of the panel (a square panel
    in a wide frame would lose its narration caption and balloons, which are
    drawn into the panel), the whole panel is shown and the rest of the frame
    is filled with a soft, blurred extension of it.
    """
    panel_aspect = image.width / image.height
    frame_aspect = size[0] / size[1]
    loss = 1 - min(panel_aspect, frame_aspect) / max(panel_aspect, frame_aspect)
    if loss <= max_crop:
        return cover_crop(image, size)
    backdrop = cover_crop(image, (max(1, size[0] // 8), max(1, size[1] // 8)))
    backdrop = backdrop.filter(ImageFilter.GaussianBlur(3)).resize(size, Image.Resampling.BILINEAR)
    backdrop = Image.blend(backdrop, Image.new("RGB", size, (255, 255, 255)), 0.55)
    contained = ImageOps.contain(image.convert("RGB"), size, method=Image.Resampling.LANCZOS)
    backdrop.paste(contained, ((size[0] - contained.width) // 2, (size[1] - contained.height) // 2))
    return backdrop


def _render_page(
    panels: Sequence[Image.Image], frames: list[Frame], page_size: tuple[int, int]
) -> Image.Image:
    page = Image.new("RGB", page_size, GUTTER_COLOUR)
    draw = ImageDraw.Draw(page)
    border = max(3, round(page_size[0] / 400))
    for frame in frames:
        page.paste(fit_panel(panels[frame.panel], (frame.width, frame.height)), (frame.left, frame.top))
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
        page.paste(fit_panel(panel, (inner, panel_height)), (margin, top))
        draw.rectangle((margin, top, margin + inner - 1, top + panel_height - 1), outline=INK, width=3)
        top += panel_height + gutter
    return page
