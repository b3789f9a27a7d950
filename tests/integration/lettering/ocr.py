"""Reading lettering back the way an OCR pass over a scanned manga does.

A page is searched for its text regions (the white balloons and the captions:
large connected areas of paper-white pixels), each region is read by
tesseract with the script's model (`jpn_vert` for vertical Japanese), and each
word comes back with its box, so tests can check both what was read and how
large it was printed.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

# Paper white: balloons are pure white, captions a warm off-white.
_PAPER = 236
_STEP = 4  # regions are found on a quarter-size mask: fast enough in pure Python
_MIN_REGION = 90  # pixels, at full size, on the shorter side


@dataclass(frozen=True)
class Word:
    """One word (or CJK run) tesseract read, with its box in the page's pixels."""

    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float


def text_regions(page: Image.Image) -> list[Image.Image]:
    """The page's large paper-white areas (balloons and captions), each cut out with
    everything outside its outline whitened, so the art around it is not read."""
    small = page.convert("RGB").reduce(_STEP)
    width, height = small.size
    red, green, blue = small.split()
    paper = [
        min(r, g, b) >= _PAPER for r, g, b in zip(red.tobytes(), green.tobytes(), blue.tobytes(), strict=True)
    ]
    seen = bytearray(width * height)
    regions: list[Image.Image] = []
    for start in range(width * height):
        if not paper[start] or seen[start]:
            continue
        component = _flood(start, width, height, lambda index: paper[index] and not seen[index])
        for index in component:
            seen[index] = 1
        xs = [index % width for index in component]
        ys = [index // width for index in component]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs) + 1, max(ys) + 1
        # The page's own margins are paper too: a region touching the page edge is not lettering.
        if x0 == 0 or y0 == 0 or x1 == width or y1 == height:
            continue
        if min(x1 - x0, y1 - y0) * _STEP < _MIN_REGION:
            continue
        regions.append(_cut_out(page, set(component), (x0, y0, x1, y1), width))
    return regions


def _flood(start: int, width: int, height: int, inside: Callable[[int], bool]) -> list[int]:
    """The cells 4-connected to `start` for which `inside` holds (`start` included)."""
    found = [start]
    queued = {start}
    queue = deque([start])
    while queue:
        index = queue.popleft()
        y, x = divmod(index, width)
        for neighbour, valid in (
            (index - 1, x > 0),
            (index + 1, x + 1 < width),
            (index - width, y > 0),
            (index + width, y + 1 < height),
        ):
            if valid and neighbour not in queued and inside(neighbour):
                queued.add(neighbour)
                found.append(neighbour)
                queue.append(neighbour)
    return found


def _cut_out(
    page: Image.Image, component: set[int], box: tuple[int, int, int, int], width: int
) -> Image.Image:
    """The region `box` (in mask cells) of `page`, white wherever it is outside the component's outline."""
    x0, y0, x1, y1 = box
    box_width, box_height = x1 - x0 + 2, y1 - y0 + 2  # one cell of border all round

    def in_component(local: int) -> bool:
        y, x = divmod(local, box_width)
        return (y0 - 1 + y) * width + (x0 - 1 + x) in component

    # Outside: reachable from the border without crossing the component (ink and art included).
    outside = set(_flood(0, box_width, box_height, lambda local: not in_component(local)))
    mask = Image.new("L", (box_width, box_height), 0)
    mask.putdata([0 if local in outside else 255 for local in range(box_width * box_height)])
    full_box = ((x0 - 1) * _STEP, (y0 - 1) * _STEP, (x1 + 1) * _STEP, (y1 + 1) * _STEP)
    crop = page.convert("RGB").crop(full_box)
    white = Image.new("RGB", crop.size, (255, 255, 255))
    return Image.composite(crop, white, mask.resize(crop.size, Image.Resampling.NEAREST))


def read_words(image: Image.Image, model: str, *, vertical: bool) -> list[Word]:
    """The words tesseract reads in `image` (one balloon or caption)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    # One block of text; vertical Japanese is one block of columns (page segmentation mode 5).
    psm = "5" if vertical else "6"
    result = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", model, "--psm", psm, "--dpi", "200", "tsv"],
        input=buffer.getvalue(),
        capture_output=True,
        check=True,
        timeout=120,
        # One thread per tesseract: the tests run several at once on a small machine.
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    words: list[Word] = []
    for row in csv.DictReader(io.StringIO(result.stdout.decode()), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") == "5" and text:
            words.append(
                Word(
                    text,
                    int(row["left"]),
                    int(row["top"]),
                    int(row["width"]),
                    int(row["height"]),
                    float(row["conf"]),
                )
            )
    return words


def significant(text: str) -> str:
    """The characters that count: letters, digits and CJK, without spaces or punctuation, case folded."""
    return "".join(char for char in text.casefold() if char.isalnum())


def recovered(line: str, read: str) -> float:
    """The share of `line`'s significant characters found, in order, in the best-matching
    stretch of `read` (what OCR read on the page)."""
    wanted = significant(line)
    text = significant(read)
    if not wanted:
        return 1.0
    span = len(wanted) + max(2, len(wanted) // 3)
    best = 0
    for start in range(max(1, len(text) - len(wanted) + 1)):
        matcher = difflib.SequenceMatcher(None, wanted, text[start : start + span], autojunk=False)
        best = max(best, sum(block.size for block in matcher.get_matching_blocks()))
        if best == len(wanted):
            break
    return best / len(wanted)
