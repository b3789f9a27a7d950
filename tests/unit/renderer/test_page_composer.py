"""Tests for page layout, the title page and the PDF and CBZ exports."""

from __future__ import annotations

import datetime
import io
import itertools
import re
import xml.etree.ElementTree as ElementTree
import zipfile

import pytest
from PIL import Image, PdfParser

from mangakai.v1 import common_pb2
from mangakai_renderer.page_composer import compose_pages, title_page, write_cbz, write_pdf

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
    panels = _panels(2)
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


def test_title_page_draws_a_cjk_title() -> None:
    page = title_page("夏祭りの約束", 6, datetime.date(2025, 8, 31), "ja", PAGE)
    blank = title_page("", 6, datetime.date(2025, 8, 31), "ja", PAGE)
    assert page.size == PAGE
    band = (40, int(PAGE[1] * 0.3) + 4, PAGE[0] - 40, int(PAGE[1] * 0.52) - 4)
    assert page.crop(band).tobytes() != blank.crop(band).tobytes()
    white_in_band = sum(1 for v in page.crop(band).convert("L").tobytes() if v > 200)
    assert white_in_band > 200  # the title's strokes, white on the ink band


def test_pdf_has_one_page_per_image_and_metadata() -> None:
    pages = compose_pages(
        _panels(12),
        None,
        common_pb2.PAGE_LAYOUT_FOUR_KOMA,
        common_pb2.READING_ORDER_RIGHT_TO_LEFT,
        page_size=PAGE,
    )
    pdf = write_pdf(pages, title="The Lighthouse Keeper")
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf)) == 3
    info = PdfParser.PdfParser(buf=pdf).info
    assert PdfParser.decode_text(info[b"Title"]) == "The Lighthouse Keeper"
    assert PdfParser.decode_text(info[b"Author"]) == "MangakAI"
    assert b"/DCTDecode" in pdf  # pages stored as JPEG


def test_cbz_holds_pages_in_order_and_comic_info() -> None:
    pages = compose_pages(
        _panels(8),
        None,
        common_pb2.PAGE_LAYOUT_SINGLE,
        common_pb2.READING_ORDER_RIGHT_TO_LEFT,
        page_size=PAGE,
    )
    data = write_cbz(pages, title="灯笼", language="zh", right_to_left=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == [f"{n:03d}.jpg" for n in range(1, 9)] + ["ComicInfo.xml"]
        for number, name in enumerate(names[:-1]):
            image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            r, g, b = image.crop((PAGE[0] // 2, PAGE[1] // 2, PAGE[0] // 2 + 1, PAGE[1] // 2 + 1)).tobytes()
            expected = COLOURS[number % len(COLOURS)]
            assert abs(r - expected[0]) + abs(g - expected[1]) + abs(b - expected[2]) < 40
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))
    assert info.tag == "ComicInfo"
    assert info.findtext("Title") == "灯笼"
    assert info.findtext("PageCount") == "8"
    assert info.findtext("LanguageISO") == "zh"
    assert info.findtext("Manga") == "YesAndRightToLeft"
    page_elements = info.findall("Pages/Page")
    assert [p.get("Image") for p in page_elements] == [str(n) for n in range(8)]
    assert page_elements[0].get("Type") == "FrontCover"


def test_cbz_left_to_right_is_not_manga() -> None:
    data = write_cbz(_panels(1), title="T", language="en", right_to_left=False)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert ElementTree.fromstring(archive.read("ComicInfo.xml")).findtext("Manga") == "No"
