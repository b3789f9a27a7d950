"""Tests for page layout: frames per layout, reading order, shots."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_renderer.page_composer import compose_pages

PAGE = (400, 566)
COLOURS = [(230, 30, 30), (30, 160, 40), (30, 60, 220), (240, 200, 20), (160, 40, 200), (20, 200, 200)]


def _panels(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (200, 200), COLOURS[index % len(COLOURS)]) for index in range(count)]


def _scenes(*shots: common_pb2.ShotType.ValueType) -> list[common_pb2.Scene]:
    return [common_pb2.Scene(number=index + 1, shot=shot) for index, shot in enumerate(shots)]


def _find(page: Image.Image, colour: tuple[int, int, int]) -> tuple[float, float]:
    """Centre of the pixels of `colour` on `page` (panels are solid colours)."""
    xs: list[int] = []
    ys: list[int] = []
    small = page.resize((page.width // 4, page.height // 4), Image.Resampling.NEAREST)
    data = small.load()
    assert data is not None
    for y in range(small.height):
        for x in range(small.width):
            if data[x, y] == colour:
                xs.append(x * 4)
                ys.append(y * 4)
    assert xs, f"colour {colour} not on the page"
    return sum(xs) / len(xs), sum(ys) / len(ys)


@pytest.mark.parametrize(
    ("layout", "count", "pages"),
    [
        (common_pb2.PAGE_LAYOUT_FOUR_KOMA, 12, 3),
        (common_pb2.PAGE_LAYOUT_FOUR_KOMA, 6, 2),
        (common_pb2.PAGE_LAYOUT_SINGLE, 12, 12),
        (common_pb2.PAGE_LAYOUT_CLASSIC, 6, 1),
        (common_pb2.PAGE_LAYOUT_CLASSIC, 12, 2),
        (common_pb2.PAGE_LAYOUT_CLASSIC, 13, 3),
        (common_pb2.PAGE_LAYOUT_UNSPECIFIED, 12, 2),
        (common_pb2.PAGE_LAYOUT_WEBTOON, 12, 3),
        (common_pb2.PAGE_LAYOUT_WEBTOON, 3, 1),
    ],
)
def test_page_counts_per_layout(layout: common_pb2.PageLayout.ValueType, count: int, pages: int) -> None:
    result = compose_pages(
        _panels(count), None, layout, common_pb2.READING_ORDER_LEFT_TO_RIGHT, page_size=PAGE
    )
    assert len(result) == pages


def test_every_panel_appears_exactly_once_in_reading_order() -> None:
    pages = compose_pages(
        _panels(6),
        None,
        common_pb2.PAGE_LAYOUT_CLASSIC,
        common_pb2.READING_ORDER_LEFT_TO_RIGHT,
        page_size=PAGE,
    )
    centres = [_find(pages[0], colour) for colour in COLOURS]
    # Left to right within a row, rows top to bottom.
    order = sorted(range(6), key=lambda i: (round(centres[i][1] / 60), centres[i][0]))
    assert order == list(range(6))


def test_right_to_left_puts_the_first_panel_on_the_right() -> None:
    panels = _panels(6)
    rtl = compose_pages(
        panels, None, common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.READING_ORDER_RIGHT_TO_LEFT, page_size=PAGE
    )[0]
    ltr = compose_pages(
        panels, None, common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.READING_ORDER_LEFT_TO_RIGHT, page_size=PAGE
    )[0]
    assert _find(rtl, COLOURS[0])[0] > _find(rtl, COLOURS[1])[0]
    assert _find(ltr, COLOURS[0])[0] < _find(ltr, COLOURS[1])[0]
    # UNSPECIFIED reading order is manga order.
    default = compose_pages(
        panels, None, common_pb2.PAGE_LAYOUT_CLASSIC, common_pb2.READING_ORDER_UNSPECIFIED, page_size=PAGE
    )[0]
    assert _find(default, COLOURS[0])[0] > _find(default, COLOURS[1])[0]


def test_establishing_shot_gets_a_full_width_frame() -> None:
    scenes = _scenes(
        common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_MEDIUM, common_pb2.SHOT_TYPE_CLOSE_UP
    )
    page = compose_pages(
        _panels(3),
        scenes,
        common_pb2.PAGE_LAYOUT_CLASSIC,
        common_pb2.READING_ORDER_LEFT_TO_RIGHT,
        page_size=PAGE,
    )[0]
    first_row = page.crop((0, 0, PAGE[0], PAGE[1] // 4))
    # The establishing frame spans the page: its colour (or its soft extension) reaches both sides.
    left, right = first_row.getpixel((30, 70)), first_row.getpixel((PAGE[0] - 30, 70))
    assert left != (255, 255, 255) and right != (255, 255, 255)
    # The close-up gets the narrower frame of its row.
    medium_x = _find(page, COLOURS[1])[0]
    close_x = _find(page, COLOURS[2])[0]
    assert close_x > medium_x


def test_four_koma_is_one_column_of_equal_frames() -> None:
    page = compose_pages(
        _panels(4),
        None,
        common_pb2.PAGE_LAYOUT_FOUR_KOMA,
        common_pb2.READING_ORDER_RIGHT_TO_LEFT,
        page_size=PAGE,
    )[0]
    centres = [_find(page, colour) for colour in COLOURS[:4]]
    xs = {round(x / 10) for x, _ in centres}
    assert len(xs) == 1
    ys = [y for _, y in centres]
    assert ys == sorted(ys)
    gaps = [b - a for a, b in itertools.pairwise(ys)]
    assert max(gaps) - min(gaps) < 12


def test_webtoon_pages_are_800_wide_strips() -> None:
    pages = compose_pages(
        _panels(5), None, common_pb2.PAGE_LAYOUT_WEBTOON, common_pb2.READING_ORDER_LEFT_TO_RIGHT
    )
    assert [page.width for page in pages] == [800, 800]
    assert pages[0].height > pages[1].height >= 720
