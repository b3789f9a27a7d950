"""Tests for the exports: the PDF (title page in embedded type, print resolution, metadata) and the CBZ."""

from __future__ import annotations

import datetime
import io
import zipfile

import pytest
import xmlschema
from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_renderer import documents
from mangakai_renderer.page_composer import compose_pages
from tests.integration.storage.document_checks import check_cbz, check_pdf, comic_info_schema

PAGE = (400, 566)
COLOURS = [(230, 30, 30), (30, 160, 40), (30, 60, 220), (240, 200, 20), (160, 40, 200), (20, 200, 200)]
DATE = datetime.date(2025, 8, 31)


def _panels(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (200, 200), COLOURS[index % len(COLOURS)]) for index in range(count)]


def _single_pages(count: int, size: tuple[int, int] = PAGE) -> list[Image.Image]:
    return compose_pages(
        _panels(count),
        None,
        common_pb2.PAGE_LAYOUT_SINGLE,
        common_pb2.READING_ORDER_RIGHT_TO_LEFT,
        page_size=size,
    )


def test_title_page_image_draws_a_cjk_title() -> None:
    page = documents.title_page("夏祭りの約束", 6, DATE, "ja", PAGE)
    blank = documents.title_page("", 6, DATE, "ja", PAGE)
    assert page.size == PAGE
    band = (40, int(PAGE[1] * 0.3) + 4, PAGE[0] - 40, int(PAGE[1] * 0.52) - 4)
    assert page.crop(band).tobytes() != blank.crop(band).tobytes()
    white_in_band = sum(1 for v in page.crop(band).convert("L").tobytes() if v > 200)
    assert white_in_band > 200  # the title's strokes, white on the ink band


def test_pdf_title_page_is_real_text_in_an_embedded_font() -> None:
    pages = _single_pages(2, documents.print_page_pixels())
    pdf = documents.write_pdf(pages, title="夏祭りの約束", panel_count=2, date=DATE, language="ja")
    found = check_pdf(pdf)
    assert len(found.page_sizes) == 3
    # Every font is embedded (check_pdf), and it is IPAex as a TrueType subset.
    assert list(found.fonts.values()) == ["FontFile2"]
    (name,) = found.fonts
    assert name.endswith("+IPAexGothic"), name
    text = found.title_text
    assert "夏祭りの約束" in text
    assert "全2コマ" in text and "2025年8月31日" in text
    assert found.metadata["Title"] == "夏祭りの約束"
    assert found.metadata["Author"] == "MangakAI"
    assert found.metadata["Creator"] == "MangakAI"
    assert "夏祭りの約束" in found.metadata["Subject"]
    assert found.reader.trailer["/Root"].get("/Lang") == "ja"


def test_pdf_pages_are_a4_at_print_resolution() -> None:
    pages = _single_pages(3, documents.print_page_pixels())
    pdf = documents.write_pdf(pages, title="The Lighthouse Keeper", panel_count=3, date=DATE)
    found = check_pdf(pdf)
    for width, height in found.page_sizes:
        assert (round(width), round(height)) == (595, 842)
    assert len(found.image_dpi) == 3
    assert all(round(dpi) == 300 for dpi in found.image_dpi), found.image_dpi
    assert "3 panels" in found.title_text and "31 August 2025" in found.title_text
    assert pdf.count(b"/DCTDecode") == 3  # the pages' JPEGs are embedded as they are
    # The pages keep their order: the middle of each shows its panel's colour.
    for number, page in enumerate(found.reader.pages[1:]):
        (image,) = page.images
        assert image.image is not None
        r, g, b = image.image.convert("RGB").getpixel((image.image.width // 2, image.image.height // 2))  # type: ignore[misc]
        expected = COLOURS[number]
        assert abs(r - expected[0]) + abs(g - expected[1]) + abs(b - expected[2]) < 40


def test_pdf_title_without_ipaex_glyphs_is_drawn_not_dropped() -> None:
    pdf = documents.write_pdf(_single_pages(1), title="등대지기", panel_count=1, date=DATE, language="ko")
    found = check_pdf(pdf)
    # Korean is not in IPAex: the title and the line under it are images on the title page.
    assert len(found.reader.pages[0].images) == 2
    assert "등대지기" not in found.title_text
    assert found.metadata["Title"] == "등대지기"


def test_long_titles_wrap_inside_the_band_and_shrink() -> None:
    short = documents.fit_title("Short", _width, (400, 200))
    long = documents.fit_title(
        "The Very Long and Winding Tale of the Lantern Keeper of Haverford Bay", _width, (400, 200)
    )
    assert len(short.lines) == 1 and short.size == 44
    assert 1 < len(long.lines) <= 4
    assert long.size < short.size
    assert all(_width(line, long.size) <= 400 for line in long.lines)
    assert " ".join(long.lines) == "The Very Long and Winding Tale of the Lantern Keeper of Haverford Bay"


def test_cjk_lines_do_not_start_with_closing_punctuation() -> None:
    text = "あいうえおかきくけこ。さしすせそ"
    lines = documents.wrap_line(text, lambda line: 10.0 * len(line), 100)
    # "。" would start the second line: the character before it goes down with it.
    assert lines == ["あいうえおかきくけ", "こ。さしすせそ"]
    assert "".join(lines) == text


def _width(text: str, size: float) -> float:
    return len(text) * size * 0.5


def test_cbz_is_a_cover_then_pages_in_order_with_valid_comic_info() -> None:
    pages = _single_pages(8)
    cover = documents.title_page("灯笼", 8, DATE, "zh", PAGE)
    data = documents.write_cbz(
        pages, title="灯笼", language="zh-Hans", right_to_left=True, cover=cover, date=DATE
    )
    archive = check_cbz(data)
    assert archive.names == [f"{n:03d}.png" for n in range(1, 10)]
    assert archive.page_types == ["FrontCover"] + ["Story"] * 8
    for number, image in enumerate(archive.images[1:]):
        r, g, b = image.convert("RGB").getpixel((PAGE[0] // 2, PAGE[1] // 2))  # type: ignore[misc]
        expected = COLOURS[number % len(COLOURS)]
        assert abs(r - expected[0]) + abs(g - expected[1]) + abs(b - expected[2]) < 40
    assert archive.text("Title") == "灯笼"
    assert archive.text("PageCount") == "9"
    assert archive.text("LanguageISO") == "zh"
    assert archive.text("Manga") == "YesAndRightToLeft"
    assert (archive.text("Year"), archive.text("Month"), archive.text("Day")) == ("2025", "8", "31")


def test_cbz_pages_are_lossless() -> None:
    """Lettering is thin black strokes on white: the archive keeps every pixel of it."""
    page = documents.title_page("The Lighthouse Keeper", 3, DATE, "en", PAGE)
    archive = check_cbz(documents.write_cbz([page], title="T", language="en", right_to_left=False))
    (stored,) = archive.images
    assert stored.format == "PNG"
    assert stored.convert("RGB").tobytes() == page.tobytes()


def test_cbz_left_to_right_is_manga_read_left_to_right() -> None:
    archive = check_cbz(documents.write_cbz(_panels(1), title="T", language="en", right_to_left=False))
    assert archive.text("Manga") == "Yes"
    assert archive.page_types == ["Story"]


def test_the_same_pages_make_the_same_archive() -> None:
    first = documents.write_cbz(_single_pages(2), title="T", language="en", right_to_left=True, date=DATE)
    again = documents.write_cbz(_single_pages(2), title="T", language="en", right_to_left=True, date=DATE)
    assert first == again


def test_the_schema_check_catches_what_readers_reject() -> None:
    """The ComicInfo schema the export tests use refuses the mistakes that matter."""
    schema = comic_info_schema()
    good = b'<?xml version="1.0"?><ComicInfo><Title>T</Title><Manga>YesAndRightToLeft</Manga></ComicInfo>'
    schema.validate(good.decode())
    wrong_order = b"<ComicInfo><Manga>No</Manga><Title>T</Title></ComicInfo>"
    wrong_value = b"<ComicInfo><Manga>RightToLeft</Manga></ComicInfo>"
    bad_page = b'<ComicInfo><Pages><Page Type="Cover"/></Pages></ComicInfo>'
    for document in (wrong_order, wrong_value, bad_page):
        with pytest.raises(xmlschema.XMLSchemaValidationError):
            schema.validate(document.decode())


def test_an_archive_with_a_folder_or_unsorted_names_is_refused() -> None:
    data = documents.write_cbz(_single_pages(2), title="T", language="en", right_to_left=True)
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    for rename in ({"001.png": "pages/001.png"}, {"001.png": "2.png", "002.png": "10.png"}):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            for name, body in entries:
                target.writestr(rename.get(name, name), body)
        with pytest.raises(AssertionError):
            check_cbz(buffer.getvalue())
