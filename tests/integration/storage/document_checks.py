"""What a comic reader and a PDF viewer need from an export, checked the way they read it.

`check_cbz` reads a CBZ as a comic reader does: a flat zip of images in name
order and a ComicInfo.xml, which must be valid against the ComicInfo v2.0
schema and agree with the images. `check_pdf` reads a PDF with pypdf: every
font it uses is embedded, the metadata is set, and page images are at print
resolution.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pypdf
import xmlschema
from PIL import Image

COMIC_INFO_XSD = Path(__file__).with_name("ComicInfo-v2.0.xsd")
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


@lru_cache(maxsize=1)
def comic_info_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(COMIC_INFO_XSD))


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass
class ComicArchive:
    """A CBZ as a reader sees it."""

    images: list[Image.Image]
    names: list[str]
    info: ElementTree.Element

    def text(self, element: str) -> str | None:
        return self.info.findtext(element)

    @property
    def page_types(self) -> list[str]:
        return [page.get("Type", "Story") for page in self.info.findall("Pages/Page")]


def check_cbz(data: bytes) -> ComicArchive:
    """Fails unless `data` is a CBZ a comic reader accepts; returns what it holds."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None, "a zip entry is corrupt"
        entries = archive.infolist()
        names = [entry.filename for entry in entries]
        assert len(set(names)) == len(names), f"duplicate entries: {names}"
        for name in names:
            assert "/" not in name and "\\" not in name and not name.startswith("."), f"not flat: {name}"
        assert "ComicInfo.xml" in names, names
        image_names = [n for n in names if n != "ComicInfo.xml"]
        assert image_names, "no pages"
        # Readers order pages by name, some naturally (2 before 10), some plainly: both must agree.
        assert image_names == sorted(image_names, key=_natural_key), "pages are not named in reading order"
        assert image_names == sorted(image_names), "page names need zero-padding for plain sorting"
        images: list[Image.Image] = []
        sizes: list[int] = []
        for name in image_names:
            extension = Path(name).suffix.lower()
            assert extension in IMAGE_FORMATS, f"{name} is not an image readers open"
            body = archive.read(name)
            image = Image.open(io.BytesIO(body))
            assert image.format == IMAGE_FORMATS[extension], f"{name} holds {image.format}"
            image.load()
            images.append(image)
            sizes.append(len(body))
        xml = archive.read("ComicInfo.xml")

    assert xml.startswith(b"<?xml"), "ComicInfo.xml lacks its XML declaration"
    comic_info_schema().validate(xml.decode("utf-8"))  # raises with the reason when invalid
    info = ElementTree.fromstring(xml)
    assert info.findtext("PageCount") == str(len(images))
    pages = info.findall("Pages/Page")
    assert [p.get("Image") for p in pages] == [str(i) for i in range(len(images))]
    for page, image, size in zip(pages, images, sizes, strict=True):
        if page.get("ImageWidth") is not None:
            assert (int(page.get("ImageWidth", "")), int(page.get("ImageHeight", ""))) == image.size
        if page.get("ImageSize") is not None:
            assert int(page.get("ImageSize", "")) == size
    return ComicArchive(images, image_names, info)


@dataclass
class PdfDocument:
    """What `check_pdf` found in a PDF."""

    reader: pypdf.PdfReader
    fonts: dict[str, str]  # base font name -> font file kind (FontFile2 for TrueType)
    metadata: dict[str, str]
    page_sizes: list[tuple[float, float]]
    image_dpi: list[float]  # per page after the first: pixels per inch of its largest image
    title_text: str


def _fonts_of(resources: Any, found: dict[str, str]) -> None:
    fonts = resources.get("/Font") if resources is not None else None
    if fonts is None:
        return
    for ref in fonts.get_object().values():
        font = ref.get_object()
        name = str(font.get("/BaseFont", ""))
        descriptor = font.get("/FontDescriptor")
        if descriptor is None and "/DescendantFonts" in font:
            descriptor = font["/DescendantFonts"][0].get_object().get("/FontDescriptor")
        kinds = [
            k
            for k in ("/FontFile", "/FontFile2", "/FontFile3")
            if descriptor and k in descriptor.get_object()
        ]
        assert font.get("/Subtype") == "/Type3" or kinds, f"font {name} is not embedded"
        found[name] = kinds[0].lstrip("/") if kinds else "Type3"


def check_pdf(data: bytes) -> PdfDocument:
    """Fails unless every font of `data` is embedded and its metadata is set; returns what it found."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    fonts: dict[str, str] = {}
    page_sizes: list[tuple[float, float]] = []
    image_dpi: list[float] = []
    for number, page in enumerate(reader.pages):
        _fonts_of(page.get("/Resources"), fonts)
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        page_sizes.append((width, height))
        if number == 0:
            continue
        pixel_widths = [image.image.width for image in page.images if image.image is not None]
        assert pixel_widths, f"page {number + 1} has no image"
        image_dpi.append(max(pixel_widths) / (width / 72))
    meta = reader.metadata
    assert meta is not None, "the PDF has no document information"
    metadata = {key.lstrip("/"): str(value) for key, value in meta.items()}
    for key in ("Title", "Author", "Subject", "Creator"):
        assert metadata.get(key), f"metadata {key} is not set"
    return PdfDocument(reader, fonts, metadata, page_sizes, image_dpi, reader.pages[0].extract_text())
