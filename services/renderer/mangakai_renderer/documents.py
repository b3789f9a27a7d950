"""Export documents: the PDF and the comic book archive (CBZ) a person downloads and keeps.

The PDF is made with reportlab: a title page set in real, embedded type
(IPAex Gothic, a TrueType face covering Latin, kana and the kanji/hanzi of
Japanese and most Chinese text), then one composed page per PDF page, each
embedded as a JPEG at print resolution, with the document's metadata
(title, author, subject, creator, language). reportlab embeds only TrueType
outlines, which is why the title page does not use the Noto CJK faces the
panels are lettered with. A title with characters IPAex lacks (Korean, rare
hanzi) is drawn with Noto into an image instead, so it is never missing.

The CBZ is a zip of page images named in reading order (a drawn cover
first) and a ComicInfo.xml following the ComicInfo v2.0 schema. Its pages are
PNG: lossless, so small lettering stays as sharp as it was drawn (JPEG rings
and blurs thin strokes, which readers zoom into).
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from mangakai_renderer import lettering

A4_POINTS = (595.2756, 841.8898)
POINTS_PER_INCH = 72.0
PRINT_DPI = 300
"""Resolution the PDF's pages are composed at: A4 at 300 DPI is 2480 x 3508 pixels."""
SCREEN_DPI = 200
"""Resolution of the CBZ's pages: comic readers show them on screens."""
JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 6
"""zlib's default: a fraction of the size of level 1 for flat comic art, a second or so a page."""
TITLE_FONT = "IPAexGothic"
AUTHOR = "MangakAI"
# Zip entries get a fixed time, so the same pages always make the same archive.
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)

_INK = (0, 0, 0)
_BAND = (20 / 255, 20 / 255, 24 / 255)
_GREY = (90 / 255, 90 / 255, 90 / 255)


def print_page_pixels(dpi: int = PRINT_DPI) -> tuple[int, int]:
    """The pixel size of an A4 page at `dpi`."""
    return (round(A4_POINTS[0] * dpi / POINTS_PER_INCH), round(A4_POINTS[1] * dpi / POINTS_PER_INCH))


class FontMissingError(RuntimeError):
    """The TrueType face of the title page is not installed."""


def title_font_path() -> Path:
    """IPAexGothic from the matplotlib-fontja package (installed without matplotlib)."""
    # find_spec does not import the package, whose __init__ would import matplotlib.
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        raise FontMissingError("the matplotlib-fontja package (IPAexGothic) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "ipaexg.ttf"
    if not path.is_file():
        raise FontMissingError(f"{path} is missing")
    return path


@functools.lru_cache(maxsize=1)
def _title_font() -> TTFont:
    font = TTFont(TITLE_FONT, str(title_font_path()))
    pdfmetrics.registerFont(font)
    return font


def _covers(font: TTFont, text: str) -> bool:
    glyphs = font.face.charToGlyph
    return all(ord(char) in glyphs or char.isspace() for char in text)


# Line breaking: a CJK character, a run of other non-space characters, or spaces, is one unit;
# a unit that may not start a line (closing punctuation, small kana) sticks to the one before.
_UNITS = re.compile(
    r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+|\s+"
)


def _units(text: str) -> list[str]:
    units: list[str] = []
    for unit in _UNITS.findall(text):
        sticks = unit[0] in lettering.NO_LINE_START or (
            units[-1][-1] in lettering.NO_LINE_END and not unit.isspace() if units else False
        )
        if units and sticks:
            units[-1] += unit
        else:
            units.append(unit)
    return units


def wrap_line(text: str, width_of: Callable[[str], float], max_width: float) -> list[str]:
    """`text` broken into lines no wider than `max_width` where possible (a single unit may be wider)."""
    lines: list[str] = []
    current = ""
    for unit in _units(" ".join(text.split())):
        candidate = current + unit
        if current and not unit.isspace() and width_of(candidate.rstrip()) > max_width:
            lines.append(current.rstrip())
            current = unit
        elif current or not unit.isspace():
            current = candidate
    if current.strip():
        lines.append(current.rstrip())
    return lines


@dataclass(frozen=True)
class TitleBlock:
    """The title broken into lines at the largest size that fits the band."""

    lines: list[str]
    size: float

    @property
    def leading(self) -> float:
        return self.size * 1.25


def _width_at(width_of: Callable[[str, float], float], size: float, line: str) -> float:
    return width_of(line, size)


def fit_title(
    text: str,
    width_of: Callable[[str, float], float],
    box: tuple[float, float],
    *,
    max_size: float = 44,
    min_size: float = 16,
    max_lines: int = 4,
) -> TitleBlock:
    """The largest size (down to `min_size`) at which `text` fits `box` in at most `max_lines` lines."""
    size = max_size
    while True:
        lines = wrap_line(text, functools.partial(_width_at, width_of, size), box[0])
        fits = len(lines) <= max_lines and len(lines) * size * 1.25 <= box[1]
        fits = fits and all(width_of(line, size) <= box[0] for line in lines)
        if fits or size <= min_size:
            if len(lines) > max_lines:
                lines = [*lines[: max_lines - 1], lines[max_lines - 1].rstrip() + "…"]
            return TitleBlock(lines, size)
        size = max(min_size, size - 2)


def _meta_line(panel_count: int, date: datetime.date, language: str) -> str:
    if language.startswith("ja"):
        return f"全{panel_count}コマ ・ {date.year}年{date.month}月{date.day}日"
    if language.startswith("zh"):
        return f"共{panel_count}格 · {date.year}年{date.month}月{date.day}日"
    if language.startswith("ko"):
        return f"{panel_count}컷 · {date.isoformat()}"
    noun = "panel" if panel_count == 1 else "panels"
    return f"{panel_count} {noun} · {date.day} {date.strftime('%B %Y')}"


class _TitleText:
    """Draws lines of one script: as embedded TrueType text when IPAex has every glyph, else as an image."""

    def __init__(self, canvas: Canvas, language: str, text: str) -> None:
        self._canvas = canvas
        self._language = language
        font = _title_font()
        self.vector = _covers(font, text)

    def width(self, text: str, size: float) -> float:
        if self.vector:
            return float(pdfmetrics.stringWidth(text, TITLE_FONT, size))
        return float(lettering.font_for(max(1, round(size * 4)), self._language).getlength(text)) / 4

    def draw_centred(
        self, text: str, centre_x: float, baseline: float, size: float, rgb: tuple[float, ...]
    ) -> None:
        if self.vector:
            self._canvas.setFillColorRGB(*rgb)
            self._canvas.setFont(TITLE_FONT, size)
            self._canvas.drawCentredString(centre_x, baseline, text)
            return
        # Four pixels per point is 288 DPI: print quality for the few lines of a title.
        scale = 4
        font = lettering.font_for(max(1, round(size * scale)), self._language)
        left, _, right, _ = font.getbbox(text)
        ascent, descent = font.getmetrics()
        image = Image.new("RGBA", (max(1, round(right - left)), ascent + descent), (0, 0, 0, 0))
        colour = tuple(round(c * 255) for c in rgb)
        ImageDraw.Draw(image).text((-left, 0), text, font=font, fill=(*colour, 255))
        width, height = image.width / scale, image.height / scale
        self._canvas.drawImage(
            ImageReader(image), centre_x - width / 2, baseline - descent / scale, width, height, mask="auto"
        )


def _draw_title_page(
    canvas: Canvas, title: str, panel_count: int, date: datetime.date, language: str
) -> None:
    width, height = A4_POINTS
    canvas.setPageSize(A4_POINTS)
    margin = 32.0
    canvas.setStrokeColorRGB(*_INK)
    canvas.setLineWidth(3.5)
    canvas.rect(margin, margin, width - 2 * margin, height - 2 * margin)
    inner = margin + 8.5
    canvas.setLineWidth(1)
    canvas.rect(inner, inner, width - 2 * inner, height - 2 * inner)
    # A band of ink behind the title, as on a tankobon cover.
    band_top, band_bottom = height * 0.70, height * 0.48
    canvas.setFillColorRGB(*_BAND)
    canvas.rect(inner, band_bottom, width - 2 * inner, band_top - band_bottom, stroke=0, fill=1)

    text = title.strip() or "Untitled"
    title_text = _TitleText(canvas, language, text)
    block = fit_title(text, title_text.width, (width - 2 * inner - 60, band_top - band_bottom - 30))
    block_height = block.leading * (len(block.lines) - 1) + block.size
    baseline = (band_top + band_bottom) / 2 + block_height / 2 - block.size * 0.88
    for line in block.lines:
        title_text.draw_centred(line, width / 2, baseline, block.size, (1.0, 1.0, 1.0))
        baseline -= block.leading

    meta = _meta_line(panel_count, date, language)
    _TitleText(canvas, language, meta).draw_centred(meta, width / 2, band_bottom - 48, 17, _INK)
    _TitleText(canvas, "en", AUTHOR).draw_centred(AUTHOR, width / 2, margin + 40, 13, _GREY)


def _jpeg(page: Image.Image, dpi: int) -> bytes:
    buffer = io.BytesIO()
    (page if page.mode == "RGB" else page.convert("RGB")).save(
        buffer, format="JPEG", quality=JPEG_QUALITY, dpi=(dpi, dpi)
    )
    return buffer.getvalue()


def _png(page: Image.Image, dpi: int) -> bytes:
    buffer = io.BytesIO()
    (page if page.mode == "RGB" else page.convert("RGB")).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, dpi=(dpi, dpi)
    )
    return buffer.getvalue()


def write_pdf(
    pages: Sequence[Image.Image],
    *,
    title: str,
    panel_count: int,
    date: datetime.date,
    language: str = "en",
    author: str = AUTHOR,
    dpi: int = PRINT_DPI,
) -> bytes:
    """A PDF: a title page, then each of `pages` as one page `dpi` pixels to the inch."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    buffer = io.BytesIO()
    # The initial font is the embedded face too, so the PDF names no font it does not carry.
    canvas = Canvas(
        buffer,
        pagesize=A4_POINTS,
        lang=language or "en",
        pageCompression=1,
        initialFontName=_title_font().fontName,  # type: ignore[arg-type]  # the stubs say float
    )
    shown_title = title.strip() or "Untitled"
    canvas.setTitle(shown_title)
    canvas.setAuthor(author)
    canvas.setSubject(f"{shown_title}: a manga of {panel_count} panels made with MangakAI")
    canvas.setCreator("MangakAI")
    canvas.setKeywords("manga, MangakAI")
    _draw_title_page(canvas, shown_title, panel_count, date, language or "en")
    canvas.showPage()
    for page in pages:
        size = (page.width * POINTS_PER_INCH / dpi, page.height * POINTS_PER_INCH / dpi)
        canvas.setPageSize(size)
        # A JPEG reader is embedded as it is (DCTDecode), not decoded and re-compressed.
        canvas.drawImage(ImageReader(io.BytesIO(_jpeg(page, dpi))), 0, 0, size[0], size[1])
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def title_page(
    title: str,
    panel_count: int,
    date: datetime.date,
    language: str,
    size: tuple[int, int] = (1654, 2339),
) -> Image.Image:
    """A cover image (for the CBZ): the title in the story's script, the panel count and the date."""
    width, height = size
    page = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(page)
    unit = width / 1654
    margin = round(90 * unit)
    draw.rectangle((margin, margin, width - margin, height - margin), outline=_INK, width=round(10 * unit))
    inset = margin + round(24 * unit)
    draw.rectangle((inset, inset, width - inset, height - inset), outline=_INK, width=round(3 * unit))
    band_top, band_bottom = round(height * 0.3), round(height * 0.52)
    draw.rectangle((inset, band_top, width - inset, band_bottom), fill=(20, 20, 24))
    block = lettering.layout_text(
        title or "Untitled",
        language,
        width - 2 * margin - round(160 * unit),
        band_bottom - band_top - round(80 * unit),
        max_size=round(130 * unit),
        min_size=round(40 * unit),
    )
    lettering.draw_text_block(
        draw,
        block,
        ((width - block.width) / 2, band_top + (band_bottom - band_top - block.height) / 2),
        fill=(255, 255, 255),
    )
    meta = _meta_line(panel_count, date, language)
    meta_font = lettering.font_for(round(48 * unit), language)
    draw.text(
        ((width - meta_font.getlength(meta)) / 2, band_bottom + round(80 * unit)),
        meta,
        font=meta_font,
        fill=_INK,
    )
    credit_font = lettering.font_for(round(36 * unit), "en")
    draw.text(
        ((width - credit_font.getlength(AUTHOR)) / 2, height - margin - round(130 * unit)),
        AUTHOR,
        font=credit_font,
        fill=(90, 90, 90),
    )
    return page


@dataclass(frozen=True)
class CbzPage:
    """One image of a CBZ, as ComicInfo describes it."""

    name: str
    kind: str  # a ComicPageType: FrontCover or Story
    size_bytes: int
    width: int
    height: int


def comic_info_xml(
    *,
    title: str,
    language: str,
    right_to_left: bool,
    pages: Sequence[CbzPage],
    date: datetime.date | None = None,
    summary: str = "",
) -> bytes:
    """ComicInfo.xml (schema v2.0) for a CBZ holding `pages` in this order."""
    root = ElementTree.Element(
        "ComicInfo",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
        },
    )

    def add(name: str, text: str) -> None:
        ElementTree.SubElement(root, name).text = text

    # The schema is one xs:sequence: elements must come in its order.
    add("Title", title)
    if summary:
        add("Summary", summary)
    add("Notes", "Created with MangakAI.")
    if date is not None:
        add("Year", str(date.year))
        add("Month", str(date.month))
        add("Day", str(date.day))
    add("Writer", AUTHOR)
    add("PageCount", str(len(pages)))
    add("LanguageISO", (language or "en").split("-")[0].lower())
    # Everything MangakAI draws is manga; "Yes" alone means it reads left to right.
    add("Manga", "YesAndRightToLeft" if right_to_left else "Yes")
    page_list = ElementTree.SubElement(root, "Pages")
    for index, page in enumerate(pages):
        ElementTree.SubElement(
            page_list,
            "Page",
            {
                "Image": str(index),
                "Type": page.kind,
                "ImageSize": str(page.size_bytes),
                "ImageWidth": str(page.width),
                "ImageHeight": str(page.height),
            },
        )
    ElementTree.indent(root)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def write_cbz(
    pages: Sequence[Image.Image],
    *,
    title: str,
    language: str,
    right_to_left: bool,
    cover: Image.Image | None = None,
    date: datetime.date | None = None,
) -> bytes:
    """A comic book archive: `cover` (if any) then `pages` as 001.png, 002.png, ..., and ComicInfo.xml."""
    images = ([("FrontCover", cover)] if cover is not None else []) + [("Story", page) for page in pages]
    if not images:
        raise ValueError("a CBZ needs at least one page")
    digits = max(3, len(str(len(images))))
    buffer = io.BytesIO()
    described: list[CbzPage] = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, (kind, image) in enumerate(images, start=1):
            data = _png(image, SCREEN_DPI)
            name = f"{number:0{digits}d}.png"
            # PNG is compressed already: storing it costs nothing and saves time.
            archive.writestr(
                zipfile.ZipInfo(name, date_time=_ZIP_TIME), data, compress_type=zipfile.ZIP_STORED
            )
            described.append(CbzPage(name, kind, len(data), image.width, image.height))
        info = comic_info_xml(
            title=title, language=language, right_to_left=right_to_left, pages=described, date=date
        )
        archive.writestr(
            zipfile.ZipInfo("ComicInfo.xml", date_time=_ZIP_TIME), info, compress_type=zipfile.ZIP_DEFLATED
        )
    return buffer.getvalue()
