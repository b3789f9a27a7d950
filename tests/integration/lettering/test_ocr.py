"""Lettering read back by OCR: short stories in English, Chinese and Japanese made into manga
through the whole mesh (local backend), exported as PDF and CBZ with the `mangakai` CLI, the
pages rendered at 200 DPI and read by tesseract (eng, chi_sim, jpn_vert from Debian).

Each dialogue line must be recovered at 90 % of its characters or more on average per language
and format, and no dialogue glyph may print below 7 pt.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageFont

from mangakai_devstack.stack import Stack
from mangakai_renderer import lettering
from tests.integration.lettering.ocr import Word, read_words, recovered, significant, text_regions
from tests.integration.storage.test_exports import mangakai

DPI = 200
POINTS_PER_PIXEL = 72 / DPI
PANELS = 3
# Short stories of our own; the quotations are the dialogue lines OCR must find.
STORIES = {
    "en": (
        "The Lamp\n\n"
        "Mara climbed the lighthouse stairs as the storm rolled in.\n\n"
        '"We have ten minutes before the ferry reaches the rocks," said Mara.\n\n'
        'Old Tomas handed her the last match. "Then light it well, and keep your hands steady," he said.\n\n'
        'The flame caught. "The ferry is turning away!" Mara shouted.'
    ),
    "zh": (
        "灯塔\n\n"
        "暴风雨来临时，小雨爬上了灯塔的楼梯。\n\n"
        "小雨说：“渡船再过十分钟就会撞上礁石。”\n\n"
        "老陈递给她最后一根火柴，说：“那就好好点亮它。”\n\n"
        "火焰燃起来了。小雨大喊：“渡船转向了！”"
    ),
    "ja": (
        "灯台\n\n"
        "嵐が来る前に、美咲は灯台の階段を上った。\n\n"
        "「あと十分で船が岩にぶつかってしまう」と美咲は言った。\n\n"
        "老人の健二は最後のマッチを渡した。「それなら、しっかり火をつけなさい」と健二は言った。\n\n"
        "炎がついた。「船が向きを変えた！」と美咲は叫んだ。"
    ),
}
DIALOGUE = {
    "en": [
        "We have ten minutes before the ferry reaches the rocks",
        "Then light it well, and keep your hands steady",
        "The ferry is turning away!",
    ],
    "zh": ["渡船再过十分钟就会撞上礁石。", "那就好好点亮它。", "渡船转向了！"],
    "ja": ["あと十分で船が岩にぶつかってしまう", "それなら、しっかり火をつけなさい", "船が向きを変えた！"],
}
MODELS = {"en": "eng", "zh": "chi_sim", "ja": "jpn_vert"}
MIN_POINTS = lettering.MIN_DIALOGUE_POINTS


@dataclass(frozen=True)
class Reading:
    """What OCR read in one exported document: each text region's words, in page order."""

    regions: list[list[Word]]

    def text(self) -> str:
        return "\n".join(" ".join(word.text for word in words) for words in self.regions)


@pytest.fixture(scope="module")
def documents(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], list[Image.Image]]:
    """(language, format) -> the story pages of the exported PDF and CBZ, at 200 DPI."""
    home = tmp_path_factory.mktemp("lettering")

    def make(language: str) -> tuple[Path, Path]:
        folder = home / language
        folder.mkdir()
        story = folder / "story.txt"
        story.write_text(STORIES[language], encoding="utf-8")
        pdf, cbz = folder / "manga.pdf", folder / "manga.cbz"
        job = mangakai(stack, folder, "generate", str(story), "--panels", str(PANELS), "--out", str(pdf))
        assert job["state"] == "COMPLETED", job
        mangakai(stack, folder, "export", job["job"], "--format", "cbz", "--out", str(cbz))
        return pdf, cbz

    async def make_all() -> list[tuple[Path, Path]]:
        return await asyncio.gather(*(asyncio.to_thread(make, language) for language in STORIES))

    pages: dict[tuple[str, str], list[Image.Image]] = {}
    for language, (pdf, cbz) in zip(STORIES, asyncio.run(make_all()), strict=True):
        pages[language, "pdf"] = _pdf_pages(pdf)
        pages[language, "cbz"] = _cbz_pages(cbz)
    return pages


def _pdf_pages(pdf: Path) -> list[Image.Image]:
    """The PDF's pages after the title page, rendered by poppler at 200 DPI."""
    prefix = pdf.with_suffix("")
    subprocess.run(
        ["pdftoppm", "-r", str(DPI), "-png", "-f", "2", str(pdf), str(prefix)], check=True, timeout=120
    )
    return [Image.open(path).convert("RGB") for path in sorted(pdf.parent.glob(f"{prefix.name}-*.png"))]


def _cbz_pages(cbz: Path) -> list[Image.Image]:
    """The CBZ's story pages (the cover left out): A4 at 200 DPI already."""
    with zipfile.ZipFile(cbz) as archive:
        names = sorted(name for name in archive.namelist() if name != "ComicInfo.xml")
        return [Image.open(io.BytesIO(archive.read(name))).convert("RGB") for name in names[1:]]


@pytest.fixture(scope="module")
def readings(documents: dict[tuple[str, str], list[Image.Image]]) -> dict[tuple[str, str], Reading]:
    """(language, format) -> what tesseract read, two tesseract processes at a time."""
    jobs = [
        (key, region) for key, pages in documents.items() for page in pages for region in text_regions(page)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        words = list(
            pool.map(lambda job: read_words(job[1], MODELS[job[0][0]], vertical=job[0][0] == "ja"), jobs)
        )
    result: dict[tuple[str, str], Reading] = {key: Reading([]) for key in documents}
    for (key, _), region_words in zip(jobs, words, strict=True):
        result[key].regions.append(region_words)
    return result


KEYS = [(language, form) for language in STORIES for form in ("pdf", "cbz")]


@pytest.mark.parametrize("key", KEYS, ids=[f"{language}-{form}" for language, form in KEYS])
def test_dialogue_reads_back(readings: dict[tuple[str, str], Reading], key: tuple[str, str]) -> None:
    language, _ = key
    text = readings[key].text()
    shares = {line: recovered(line, text) for line in DIALOGUE[language]}
    average = statistics.mean(shares.values())
    print(f"OCR {key}: {average:.1%} of dialogue characters recovered; per line {shares}")
    assert average >= 0.9, f"{average:.1%} recovered; read:\n{text}\nper line: {shares}"


@pytest.mark.parametrize("key", KEYS, ids=[f"{language}-{form}" for language, form in KEYS])
def test_no_dialogue_glyph_below_seven_points(
    readings: dict[tuple[str, str], Reading], key: tuple[str, str]
) -> None:
    """Every balloon's type, measured from what OCR read in it: each word's box against the ink
    box of the same text in the lettering font. A balloon is set in one size, so its size is the
    median of its words (single OCR boxes are off by a pixel or, in vertical text, more)."""
    language, _ = key
    spoken = significant("".join(DIALOGUE[language]))
    balloons: list[tuple[float, str]] = []
    for words in readings[key].regions:
        region_text = significant("".join(word.text for word in words))
        if not region_text or recovered(region_text, spoken) < 0.6:
            continue  # a caption, a cloud, the moon: not dialogue
        sizes = [
            _printed_points(word, core, language)
            for word in words
            if (core := significant(word.text))
            and (len(core) >= 2 or language != "en")
            and word.confidence >= 60
            and core in spoken
        ]
        if sizes:
            balloons.append((statistics.median(sizes), region_text))
    assert len(balloons) >= 2, f"too few balloons measured: {balloons}"
    smallest = min(balloons)
    print(f"glyphs {key}: smallest balloon {smallest[0]:.2f} pt ({smallest[1]!r}), {len(balloons)} balloons")
    # Half a pixel at 200 DPI is the precision of a median of OCR boxes.
    assert smallest[0] + POINTS_PER_PIXEL / 2 >= MIN_POINTS, f"{smallest} below {MIN_POINTS} pt"


def _printed_points(word: Word, core: str, language: str) -> float:
    """The font size a word was printed at: its OCR box against the ink of the same text in
    the lettering font (Noto Sans CJK) at 1000 pixels.

    A CJK glyph is measured across the line (or column) and, as tesseract's CJK boxes often
    merge neighbours or take in the line's spacing, along it too per character, keeping the
    smaller: a box is never smaller than its ink."""
    font = lettering.font_for(1000, language)
    if language == "en":
        _, top, _, bottom = _ink_box(font, core)
        return word.height / ((bottom - top) / 1000) * POINTS_PER_PIXEL
    vertical = language == "ja"
    across, along = (word.width, word.height) if vertical else (word.height, word.width)
    boxes = [_ink_box(font, char) for char in core]
    ink = max((box[2] - box[0]) if vertical else (box[3] - box[1]) for box in boxes)
    return min(across, along / len(core)) / (ink / 1000) * POINTS_PER_PIXEL


def _ink_box(font: ImageFont.FreeTypeFont, text: str) -> tuple[int, int, int, int]:
    box = font.getmask(text).getbbox()
    assert box is not None, f"no ink for {text!r}"
    return box
