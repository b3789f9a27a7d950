"""Lettering: the fonts, line breaking and balloons that put words on a panel.

It owns font loading (Noto Sans CJK, one face per language), line wrapping for
CJK (phrase by phrase with BudouX, so a word is never split between lines or
columns, plus kinsoku) and Latin text, vertical Japanese columns, and drawing
speech, shout and thought balloons and narration captions.

Dialogue is never set below MIN_DIALOGUE_POINTS at print size (see
`min_dialogue_px`): a balloon grows to hold its text, and a line too long for
one balloon is split over two (`split_speech`). Captions may shrink to their
minimum and are then cut with an ellipsis.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import budoux
import noto_cjk_sans_otc
from PIL import Image, ImageDraw, ImageFont

from mangakai_renderer import page_composer

Box = tuple[int, int, int, int]
Point = tuple[float, float]

# Face indexes inside NotoSansCJK-Regular.ttc (checked with FreeTypeFont.getname()).
_FACE_INDEX = {"ja": 0, "ko": 1, "zh": 2, "zh-hans": 2, "zh-cn": 2, "zh-hant": 3, "zh-tw": 3, "zh-hk": 4}

# Kinsoku shori: characters that may not start a line, and ones that may not end it.
NO_LINE_START = frozenset(
    "、。，．！？」』）】〕〉》”’ー…‥・：；,.!?)]}ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ々〜～﹂﹄︶︒︑"
)
NO_LINE_END = frozenset("「『（【〔〈《“‘([{﹁﹃︵")

# Vertical presentation forms: what a horizontal glyph becomes in a top-to-bottom column.
_VERTICAL_FORMS = {
    "「": "﹁",
    "」": "﹂",
    "『": "﹃",
    "』": "﹄",
    "（": "︵",
    "）": "︶",
    "(": "︵",
    ")": "︶",
    "、": "︑",
    "。": "︒",
    "，": "︐",
    "ー": "丨",
    "―": "︱",
    "—": "︱",
    "…": "︙",
    "‥": "︰",
    "！": "︕",
    "？": "︖",
    "：": "︓",
    "；": "︔",
    "【": "︻",
    "】": "︼",
    "〜": "≀",
    "～": "≀",
    "“": "﹁",
    "”": "﹂",
    "!": "︕",
    "?": "︖",
}

_CJK_RANGE = "\u2e80-\u2fff\u3000-\u30ff\u3100-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
_TOKEN = re.compile(rf"[{_CJK_RANGE}]|[^\s{_CJK_RANGE}]+|\s+")
ELLIPSIS = "…"
MIN_DIALOGUE_POINTS = 7.0
"""The smallest dialogue type an editor accepts in print."""
_SENTENCE_END = frozenset(".!?…。！？」』”’)）")
_CJK_CHAR = re.compile(f"[{_CJK_RANGE}]")


class BalloonKind(Enum):
    """The shape of a balloon, which tells the reader how the line is spoken."""

    SPEECH = "speech"
    SHOUT = "shout"
    THOUGHT = "thought"


def face_index(language: str) -> int:
    """The face of the Noto Sans CJK collection that draws `language` with the right glyph forms."""
    tag = language.lower()
    return _FACE_INDEX.get(tag, _FACE_INDEX.get(tag.split("-")[0], 0))


@lru_cache(maxsize=256)
def font_for(size: int, language: str) -> ImageFont.FreeTypeFont:
    """Noto Sans CJK at `size` pixels in the face for `language`; cached per (size, face)."""
    return _load_font(max(6, int(size)), face_index(language))


@lru_cache(maxsize=256)
def _load_font(size: int, index: int) -> ImageFont.FreeTypeFont:
    # BASIC layout is enough for CJK, Latin and Hangul and much faster than Raqm.
    return ImageFont.truetype(
        str(noto_cjk_sans_otc.FONT_PATH), size, index=index, layout_engine=ImageFont.Layout.BASIC
    )


def line_height(font: ImageFont.FreeTypeFont) -> int:
    return max(1, round(font.size * 1.3))


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def min_dialogue_px(panel_size: tuple[int, int]) -> int:
    """The smallest font size, in the panel's pixels, that prints at MIN_DIALOGUE_POINTS.

    The page composer gives no frame a shorter edge than MIN_FRAME_EDGE of the
    page's width, and a panel's shorter edge fills its frame's, so the panel
    prints at least that large.
    """
    printed_points = page_composer.A4_WIDTH_POINTS * page_composer.MIN_FRAME_EDGE
    # 2 % to spare for the crop and rounding of the composer.
    return math.ceil(MIN_DIALOGUE_POINTS / printed_points * min(panel_size) * 1.02)


@lru_cache(maxsize=4)
def _phrase_parser(language: str) -> budoux.Parser | None:
    tag = language.lower()
    if tag.startswith("ja"):
        return budoux.load_default_japanese_parser()
    if tag.startswith(("zh-hant", "zh-tw", "zh-hk", "zh-mo")):
        return budoux.load_default_traditional_chinese_parser()
    if tag.startswith("zh"):
        return budoux.load_default_simplified_chinese_parser()
    return None


def break_units(text: str, language: str) -> list[str]:
    """The pieces a line may break between: BudouX phrases in Japanese and Chinese (a
    word or bunsetsu stays whole), words and spaces elsewhere."""
    parser = _phrase_parser(language)
    if parser is None:
        return _tokens(text)
    units: list[str] = []
    for phrase in parser.parse(text):
        if any(char.isspace() for char in phrase) or not _CJK_CHAR.search(phrase):
            units.extend(_tokens(phrase))
        else:
            units.append(phrase)
    return units


def join_speech(first: str, second: str, language: str) -> str:
    """Two quotations spoken in a row as one balloon's text, with the punctuation that
    the attribution between them took away ("You're late," she said. "The storm..." ->
    "You're late. The storm...")."""
    first, second = first.rstrip(), second.lstrip()
    if not first or not second:
        return first or second
    no_spaces = language.lower().startswith(("ja", "zh"))
    if first[-1] not in _SENTENCE_END:
        if no_spaces:
            first += "。"
        else:
            first += "." if second[:1].isupper() else ","
    return first + ("" if no_spaces else " ") + second


def split_speech(text: str, language: str) -> list[str]:
    """`text` cut in two near its middle for two balloons: between sentences where it has
    more than one, else between phrases (CJK) or words; one piece when it cannot be cut."""
    text = text.strip()
    middle = len(text) / 2
    sentence_cuts = [
        match.end() for match in re.finditer(r"[.!?…。！？]+[」』”’)）]*\s*", text) if match.end() < len(text)
    ]
    cuts = sentence_cuts or list(itertools.accumulate(len(unit) for unit in break_units(text, language)))[:-1]
    cuts = [cut for cut in cuts if text[:cut].strip() and text[cut:].strip()]
    if not cuts:
        return [text]
    cut = min(cuts, key=lambda cut: abs(cut - middle))
    return [text[:cut].strip(), text[cut:].strip()]


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: float, language: str = "") -> list[str]:
    """Breaks `text` into lines no wider than `max_width`.

    Japanese and Chinese break between BudouX phrases, and inside a phrase
    (between characters, with kinsoku) only when it is wider than a line;
    other CJK between any two characters except where kinsoku forbids it.
    Latin breaks on spaces, and a word longer than a line is hyphenated.
    Explicit newlines are kept.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap_paragraph(paragraph.strip(), font, max_width, language))
    return lines or [""]


def _wrap_paragraph(text: str, font: ImageFont.FreeTypeFont, max_width: float, language: str) -> list[str]:
    lines: list[list[str]] = []
    current: list[str] = []

    def width(tokens: list[str]) -> float:
        return float(font.getlength("".join(tokens)))

    units = break_units(text, language)
    units.reverse()
    while units:
        token = units.pop()
        if len(token) > 1 and _CJK_CHAR.match(token) and width([token]) > max_width:
            # A phrase wider than a line: its characters break as in any CJK text.
            units.extend(reversed(_tokens(token)))
            continue
        if token.isspace():
            if current:
                current.append(" ")
            continue
        if width([*current, token]) <= max_width:
            current.append(token)
            continue
        trimmed = _rstrip_tokens(current)
        if not trimmed:
            # A single word wider than the line: hyphenate it.
            pieces = _split_long_word(token, font, max_width)
            lines.extend([piece] for piece in pieces[:-1])
            current = [pieces[-1]]
            continue
        carried: list[str] = []
        if token[0] in NO_LINE_START and len(trimmed) > 1 and len(trimmed[-1]) == 1:
            # Oidashi: take the last character down with the forbidden one rather than overflow.
            carried.append(trimmed.pop())
        while len(trimmed) > 1 and trimmed[-1][-1] in NO_LINE_END:
            carried.insert(0, trimmed.pop())
        lines.append(trimmed)
        current = [*carried, token]
        if width(current) > max_width and len(current) > 1:
            # The carried characters no longer fit: give up on kinsoku rather than overflow.
            lines.append(current[:-1])
            current = [token]
        if width(current) > max_width:
            pieces = _split_long_word(token, font, max_width)
            lines.extend([piece] for piece in pieces[:-1])
            current = [pieces[-1]]
    if _rstrip_tokens(current):
        lines.append(_rstrip_tokens(current))
    return ["".join(line) for line in lines]


def _rstrip_tokens(tokens: list[str]) -> list[str]:
    tokens = list(tokens)
    while tokens and tokens[-1].isspace():
        tokens.pop()
    return tokens


def _split_long_word(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    pieces: list[str] = []
    rest = word
    while rest:
        if font.getlength(rest) <= max_width:
            pieces.append(rest)
            break
        cut = 1
        while cut < len(rest) and font.getlength(rest[: cut + 1] + "-") <= max_width:
            cut += 1
        hyphen = "-" if rest[cut - 1].isalnum() and rest[cut : cut + 1].isalnum() else ""
        pieces.append(rest[:cut] + hyphen)
        rest = rest[cut:]
    return pieces


def vertical_form(char: str) -> str:
    return _VERTICAL_FORMS.get(char, char)


def wrap_vertical(text: str, max_chars: int, language: str = "") -> list[str]:
    """Breaks `text` into top-to-bottom columns of at most `max_chars` characters, with kinsoku.

    Columns are returned in reading order (the first is drawn rightmost).
    Japanese and Chinese phrases (BudouX) and Latin words are kept whole when
    they fit in a column.
    """
    max_chars = max(1, max_chars)
    columns: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        units: list[str] = []
        for unit in break_units(paragraph.strip(), language):
            units.extend(_tokens(unit) if len(unit) > max_chars and _CJK_CHAR.match(unit) else [unit])
        for token in units:
            if token.isspace():
                continue
            if len(current) + len(token) <= max_chars:
                current += token
                continue
            if not current:
                for start in range(0, len(token), max_chars):
                    columns.append(token[start : start + max_chars])
                continue
            carried = ""
            if token[0] in NO_LINE_START and len(current) > 1:
                carried, current = current[-1], current[:-1]
            while len(current) > 1 and current[-1] in NO_LINE_END:
                carried, current = current[-1] + carried, current[:-1]
            columns.append(current)
            current = carried + token
            while len(current) > max_chars:
                columns.append(current[:max_chars])
                current = current[max_chars:]
        if current:
            columns.append(current)
    return columns or [""]


@dataclass(frozen=True)
class TextBlock:
    """Text laid out for drawing: lines (or columns, when vertical) in one font."""

    lines: tuple[str, ...]
    font: ImageFont.FreeTypeFont
    vertical: bool
    width: int
    height: int

    @property
    def advance(self) -> int:
        """Distance between consecutive lines (or columns)."""
        return round(self.font.size * 1.25) if self.vertical else line_height(self.font)


def _horizontal_block(lines: list[str], font: ImageFont.FreeTypeFont) -> TextBlock:
    width = max((math.ceil(font.getlength(line)) for line in lines), default=0)
    height = line_height(font) * len(lines)
    return TextBlock(tuple(lines), font, False, width, height)


def _vertical_block(columns: list[str], font: ImageFont.FreeTypeFont) -> TextBlock:
    advance = round(font.size * 1.25)
    width = advance * len(columns)
    height = round(font.size * 1.05) * max((len(c) for c in columns), default=0)
    return TextBlock(tuple(columns), font, True, width, height)


def layout_text(
    text: str,
    language: str,
    max_width: int,
    max_height: int,
    *,
    max_size: int,
    min_size: int,
    vertical: bool = False,
    preferred_aspect: float | None = None,
    truncate: bool = True,
) -> TextBlock:
    """The largest layout of `text` that fits `max_width` x `max_height`.

    The font shrinks from `max_size` to `min_size`; if the text still does not
    fit, it is cut at the last line that fits and ends with an ellipsis, or,
    without `truncate`, laid out whole at `min_size` (taller, or for vertical
    text wider, than the box). `preferred_aspect` (width / height) narrows the
    wrap width so a short line does not become one long strip.
    """
    max_width = max(1, max_width)
    max_height = max(1, max_height)
    size = max(min_size, max_size)
    while True:
        font = font_for(size, language)
        block = _layout_at(text, language, font, max_width, max_height, vertical, preferred_aspect)
        if block.width <= max_width and block.height <= max_height:
            return block
        if size <= min_size:
            if not truncate:
                return _layout_at(text, language, font, max_width, max_height, vertical, None)
            return _truncated(text, language, font, max_width, max_height, vertical)
        size = max(min_size, int(size * 0.9))


def _layout_at(
    text: str,
    language: str,
    font: ImageFont.FreeTypeFont,
    max_width: int,
    max_height: int,
    vertical: bool,
    preferred_aspect: float | None,
) -> TextBlock:
    if vertical:
        char_height = round(font.size * 1.05)
        capacity = max(1, max_height // char_height)
        if preferred_aspect:
            # Balance columns: enough characters per column that the block is roughly the wanted shape.
            count = len(text)
            columns_wanted = max(1.0, math.sqrt(count * char_height * preferred_aspect / (font.size * 1.25)))
            capacity = min(capacity, max(4, math.ceil(count / columns_wanted)))
        return _vertical_block(wrap_vertical(text, capacity, language), font)
    wrap_width = float(max_width)
    if preferred_aspect:
        total = float(font.getlength(text.replace("\n", " ")))
        ideal = math.sqrt(total * line_height(font) * preferred_aspect)
        wrap_width = min(float(max_width), max(ideal, font.size * 5.0))
    block = _horizontal_block(wrap_text(text, font, wrap_width, language), font)
    if block.height > max_height and wrap_width < max_width:
        block = _horizontal_block(wrap_text(text, font, max_width, language), font)
    return block


def _truncated(
    text: str, language: str, font: ImageFont.FreeTypeFont, max_width: int, max_height: int, vertical: bool
) -> TextBlock:
    if vertical:
        char_height = round(font.size * 1.05)
        capacity = max(1, max_height // char_height)
        columns = wrap_vertical(text, capacity, language)
        keep = max(1, max_width // round(font.size * 1.25))
        if len(columns) > keep:
            columns = columns[:keep]
            columns[-1] = columns[-1][: max(0, capacity - 1)] + ELLIPSIS
        return _vertical_block(columns, font)
    lines = wrap_text(text, font, max_width, language)
    keep = max(1, max_height // line_height(font))
    if len(lines) > keep:
        lines = lines[:keep]
        last = lines[-1].rstrip()
        while last and font.getlength(last + ELLIPSIS) > max_width:
            last = last[:-1].rstrip()
        lines[-1] = last + ELLIPSIS
    return _horizontal_block(lines, font)


def draw_text_block(
    draw: ImageDraw.ImageDraw,
    block: TextBlock,
    origin: Point,
    *,
    fill: tuple[int, int, int] = (0, 0, 0),
    align: str = "center",
) -> None:
    """Draws `block` with its top-left corner at `origin`."""
    x0, y0 = origin
    if block.vertical:
        char_height = round(block.font.size * 1.05)
        advance = block.advance
        for index, column in enumerate(block.lines):
            # Right to left: the first column is the rightmost.
            x = x0 + block.width - (index + 1) * advance + (advance - block.font.size) / 2
            for row, char in enumerate(column):
                glyph = vertical_form(char)
                dx, dy = _vertical_offset(char, block.font.size)
                draw.text((x + dx, y0 + row * char_height + dy), glyph, font=block.font, fill=fill)
        return
    height = line_height(block.font)
    # The glyph box sits a little below the line top; centre it in the line.
    ascent_pad = (height - block.font.size) / 2 - block.font.size * 0.08
    for index, line in enumerate(block.lines):
        line_width = block.font.getlength(line)
        if align == "center":
            x = x0 + (block.width - line_width) / 2
        elif align == "right":
            x = x0 + block.width - line_width
        else:
            x = x0
        draw.text((x, y0 + index * height + ascent_pad), line, font=block.font, fill=fill)


def _vertical_offset(char: str, size: float) -> Point:
    # Small kana sit in the upper right of their cell in vertical text.
    if char in "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ":
        return size * 0.12, -size * 0.12
    return 0.0, 0.0


def _supersampled_masks(size: tuple[int, int], scale: int) -> tuple[Image.Image, Image.Image]:
    return Image.new("L", (size[0] * scale, size[1] * scale), 0), Image.new(
        "L", (size[0] * scale, size[1] * scale), 0
    )


def _ellipse_point(center: Point, radii: Point, angle: float, factor: float = 1.0) -> Point:
    return center[0] + radii[0] * factor * math.cos(angle), center[1] + radii[1] * factor * math.sin(angle)


def _shrink(points: list[Point], toward: Point, amount: float) -> list[Point]:
    """`points` pulled `amount` pixels toward `toward`, for the inner fill of an outlined shape."""
    result: list[Point] = []
    for x, y in points:
        dx, dy = toward[0] - x, toward[1] - y
        length = math.hypot(dx, dy) or 1.0
        result.append((x + dx / length * amount, y + dy / length * amount))
    return result


def balloon_kind_for(text: str) -> BalloonKind:
    """A shout balloon for short exclamations, a thought balloon for (parenthesised) thoughts."""
    stripped = text.strip()
    if stripped.startswith(("(", "（")) and stripped.endswith((")", "）")):
        return BalloonKind.THOUGHT
    exclamations = stripped.count("!") + stripped.count("！")
    if exclamations and (len(stripped) <= 14 or exclamations >= 2 or stripped.isupper()):
        return BalloonKind.SHOUT
    return BalloonKind.SPEECH


@dataclass(frozen=True)
class BalloonLayout:
    """A balloon's text laid out at dialogue size, and the balloon's size around it."""

    block: TextBlock
    width: int
    height: int
    pad: int
    fits: bool  # within the region it was laid out for


def layout_balloon(
    region_size: tuple[int, int],
    text: str,
    language: str,
    *,
    kind: BalloonKind = BalloonKind.SPEECH,
    vertical: bool = False,
    max_size: int = 34,
    min_size: int = 14,
) -> BalloonLayout:
    """The balloon for `text` in a region of `region_size`: the text as large as fits between
    `max_size` and `min_size`, never smaller; when even `min_size` does not fit, the balloon
    is larger than the region (`fits` is False) rather than the text smaller or cut."""
    region_w, region_h = region_size
    # An ellipse holds its inscribed rectangle at 1/sqrt(2) of its axes; the pads keep text off the ink.
    spread = 1.18 if kind == BalloonKind.SHOUT else 1.0
    pad = max(8, round(min_size * 0.45))
    text_w = int((region_w / spread - 2 * pad) / 1.36)
    text_h = int((region_h / spread - 2 * pad) / 1.36)
    block = layout_text(
        text,
        language,
        text_w,
        text_h,
        max_size=max(max_size, min_size),
        min_size=min_size,
        vertical=vertical,
        preferred_aspect=0.55 if vertical else 1.9,
        truncate=False,
    )
    width = round((block.width * 1.36 + 2 * pad) * spread)
    height = round((block.height * 1.36 + 2 * pad) * spread)
    return BalloonLayout(block, width, height, pad, width <= region_w and height <= region_h)


def draw_balloon(
    image: Image.Image,
    region: Box,
    text: str,
    language: str,
    *,
    tail_to: Point | None = None,
    kind: BalloonKind = BalloonKind.SPEECH,
    vertical: bool = False,
    max_size: int = 34,
    min_size: int = 14,
    line_width: int = 3,
    anchor: str = "center",
    avoid: Sequence[Box] = (),
) -> Box:
    """Draws a balloon holding `text` at the top of `region` and returns the balloon's box.

    The balloon is as small as its text allows at `min_size` or more (see
    `layout_balloon`); one larger than the region grows down and sideways,
    staying on the image, and moves down below any of the boxes in `avoid`
    (balloons drawn before it) that it would cover. `anchor` ("center",
    "left", "right") says where across the region it sits. The tail points toward `tail_to` (the
    speaker's mouth), or is left off when it is None.
    """
    left, top, right, _ = region
    spread = 1.18 if kind == BalloonKind.SHOUT else 1.0
    layout = layout_balloon(
        (right - left, region[3] - top),
        text,
        language,
        kind=kind,
        vertical=vertical,
        max_size=max_size,
        min_size=min_size,
    )
    balloon_w, balloon_h = min(layout.width, image.width), min(layout.height, image.height)
    if anchor == "left":
        bx0 = left
    elif anchor == "right":
        bx0 = right - balloon_w
    else:
        bx0 = left + (right - left - balloon_w) // 2
    bx0 = min(max(0, bx0), image.width - balloon_w)
    by0 = min(max(0, top), image.height - balloon_h)
    bx0, by0 = _free_place(image.size, (balloon_w, balloon_h), (bx0, by0), avoid, max(2, layout.pad // 2))
    box = (bx0, by0, bx0 + balloon_w, by0 + balloon_h)
    _draw_balloon_shape(image, box, kind, tail_to, line_width, spread)
    draw = ImageDraw.Draw(image)
    text_x = bx0 + (balloon_w - layout.block.width) / 2
    text_y = by0 + (balloon_h - layout.block.height) / 2
    draw_text_block(draw, layout.block, (text_x, text_y))
    return box


def _free_place(
    image_size: tuple[int, int],
    size: tuple[int, int],
    wanted: tuple[int, int],
    avoid: Sequence[Box],
    gap: int,
) -> tuple[int, int]:
    """Where a box of `size` goes: at `wanted` if it covers none of `avoid`, else the free place
    nearest it going down the image (then across), else the place that covers the least."""
    width, height = size
    xs = sorted(
        {wanted[0], *range(0, max(1, image_size[0] - width + 1), max(1, width // 3))},
        key=lambda x: abs(x - wanted[0]),
    )
    ys = range(wanted[1], max(wanted[1], image_size[1] - height) + 1, max(1, gap * 4))
    best, least = wanted, math.inf
    for y in ys:
        for x in xs:
            box = (x, y, x + width, y + height)
            covered = sum(_overlap_area(box, (a - gap, b - gap, c + gap, d + gap)) for a, b, c, d in avoid)
            if covered == 0:
                return x, y
            if covered < least:
                best, least = (x, y), covered
    return best


def _overlap_area(first: Box, second: Box) -> int:
    return max(0, min(first[2], second[2]) - max(first[0], second[0])) * max(
        0, min(first[3], second[3]) - max(first[1], second[1])
    )


def _draw_balloon_shape(
    image: Image.Image, box: Box, kind: BalloonKind, tail_to: Point | None, line_width: int, spread: float
) -> None:
    """Ink and paper of the balloon, drawn 3x on a mask and reduced so edges are smooth."""
    scale = 3
    margin = 6
    x0, y0, x1, y1 = box
    extent_x0, extent_y0, extent_x1, extent_y1 = x0, y0, x1, y1
    if tail_to is not None:
        extent_x0, extent_x1 = min(x0, int(tail_to[0])), max(x1, int(tail_to[0]) + 1)
        extent_y0, extent_y1 = min(y0, int(tail_to[1])), max(y1, int(tail_to[1]) + 1)
    extent_x0 = max(0, extent_x0 - margin)
    extent_y0 = max(0, extent_y0 - margin)
    extent_x1 = min(image.width, extent_x1 + margin)
    extent_y1 = min(image.height, extent_y1 + margin)
    width, height = extent_x1 - extent_x0, extent_y1 - extent_y0
    if width <= 0 or height <= 0:
        return
    ink, paper = _supersampled_masks((width, height), scale)
    ink_draw, paper_draw = ImageDraw.Draw(ink), ImageDraw.Draw(paper)

    def local(point: Point) -> Point:
        return (point[0] - extent_x0) * scale, (point[1] - extent_y0) * scale

    center = local(((x0 + x1) / 2, (y0 + y1) / 2))
    radii = ((x1 - x0) / 2 * scale, (y1 - y0) / 2 * scale)
    inset = line_width * scale
    body_radii = (radii[0] / spread, radii[1] / spread) if kind == BalloonKind.SHOUT else radii

    outline: list[Point] = []
    if kind == BalloonKind.SHOUT:
        spikes = max(14, int((radii[0] + radii[1]) / (18 * scale)))
        for index in range(spikes * 2):
            angle = math.pi * index / spikes
            factor = spread if index % 2 == 0 else 0.93
            outline.append(_ellipse_point(center, body_radii, angle, factor))
        ink_draw.polygon(outline, fill=255)
        paper_draw.polygon(_shrink(outline, center, inset * 1.3), fill=255)
    else:
        ink_draw.ellipse(_ellipse_box(center, radii), fill=255)
        paper_draw.ellipse(_ellipse_box(center, (radii[0] - inset, radii[1] - inset)), fill=255)

    if tail_to is not None:
        tip = local(tail_to)
        angle = math.atan2(tip[1] - center[1], tip[0] - center[0])
        edge = _ellipse_point(center, body_radii, angle)
        distance = math.hypot(tip[0] - edge[0], tip[1] - edge[1])
        if kind == BalloonKind.THOUGHT:
            # Thought bubbles trail off in shrinking circles instead of a tail.
            for step, size in ((0.3, 0.16), (0.62, 0.1), (0.88, 0.06)):
                point = (edge[0] + (tip[0] - edge[0]) * step, edge[1] + (tip[1] - edge[1]) * step)
                radius = min(radii) * size + inset
                ink_draw.ellipse(_ellipse_box(point, (radius, radius)), fill=255)
                paper_draw.ellipse(_ellipse_box(point, (radius - inset, radius - inset)), fill=255)
        elif distance > 4 * scale:
            reach = min(distance, max(radii) * 0.9)
            tip = (
                edge[0] + (tip[0] - edge[0]) * reach / distance,
                edge[1] + (tip[1] - edge[1]) * reach / distance,
            )
            half = 0.2 if kind == BalloonKind.SPEECH else 0.14
            base_a = _ellipse_point(center, body_radii, angle - half, 0.8)
            base_b = _ellipse_point(center, body_radii, angle + half, 0.8)
            # A slight bend makes the tail read as drawn rather than ruled.
            bend = (tip[0] + (base_a[0] - base_b[0]) * 0.25, tip[1] + (base_a[1] - base_b[1]) * 0.25)
            triangle = [base_a, base_b, bend]
            ink_draw.polygon(triangle, fill=255)
            tail_inner = [
                _shrink([base_a], base_b, inset)[0],
                _shrink([base_b], base_a, inset)[0],
                _shrink([bend], ((base_a[0] + base_b[0]) / 2, (base_a[1] + base_b[1]) / 2), inset * 2.2)[0],
            ]
            paper_draw.polygon(tail_inner, fill=255)
            if kind == BalloonKind.SPEECH:
                paper_draw.ellipse(_ellipse_box(center, (radii[0] - inset, radii[1] - inset)), fill=255)
            else:
                paper_draw.polygon(_shrink(outline, center, inset * 1.3), fill=255)

    ink_small = ink.reduce(scale)
    paper_small = paper.reduce(scale)
    region = (extent_x0, extent_y0)
    image.paste((0, 0, 0), (*region, extent_x1, extent_y1), ink_small)
    image.paste((255, 255, 255), (*region, extent_x1, extent_y1), paper_small)


def _ellipse_box(center: Point, radii: Point) -> tuple[float, float, float, float]:
    return center[0] - radii[0], center[1] - radii[1], center[0] + radii[0], center[1] + radii[1]


def draw_caption(
    image: Image.Image,
    region: Box,
    text: str,
    language: str,
    *,
    vertical: bool = False,
    max_size: int = 28,
    min_size: int = 13,
    line_width: int = 3,
    anchor: str = "left",
    fill: tuple[int, int, int] = (255, 253, 240),
) -> Box:
    """Draws a rectangular narration caption in `region`, sized to its text; returns its box."""
    left, top, right, bottom = region
    pad = max(6, round(max_size * 0.4))
    block = layout_text(
        text,
        language,
        right - left - 2 * pad,
        bottom - top - 2 * pad,
        max_size=max_size,
        min_size=min_size,
        vertical=vertical,
    )
    width = block.width + 2 * pad
    height = block.height + 2 * pad
    x0 = right - width if anchor == "right" else left
    box = (x0, top, x0 + width, top + height)
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, fill=fill, outline=(0, 0, 0), width=line_width)
    draw_text_block(draw, block, (x0 + pad, top + pad), align="left")
    return box
