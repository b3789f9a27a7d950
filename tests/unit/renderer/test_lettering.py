"""Lettering an editor accepts: dialogue never below 7 pt at print size, punctuation kept where
quotes merge, balloons in reading order, phrase-aware CJK line breaks (BudouX)."""

from __future__ import annotations

import asyncio

import budoux
import pytest
from PIL import Image, ImageChops

from mangakai.v1 import common_pb2, renderer_pb2
from mangakai_renderer import lettering, local_art, page_composer, story_planner
from mangakai_renderer.backend import LocalBackend, References

LONG_LINE = (
    "You are late again, and the storm is already over the harbour, so take the lamp, "
    "climb the stairs and light it before the fishing boats come home tonight."
)
CAST = [
    common_pb2.Character(name="Mara", description="short red hair, yellow raincoat"),
    common_pb2.Character(name="Tomas", description="old man, white beard"),
]


def test_dialogue_size_prints_at_seven_points_or_more() -> None:
    size = (1024, 1024)
    pixels = lettering.min_dialogue_px(size)
    # The smallest frame the composer gives a panel: MIN_FRAME_EDGE of the page's width.
    printed_points = pixels * page_composer.MIN_FRAME_EDGE * page_composer.A4_WIDTH_POINTS / min(size)
    assert printed_points >= lettering.MIN_DIALOGUE_POINTS
    assert lettering.min_dialogue_px((1024, 576)) < pixels, "follows the panel's shorter edge"


def test_a_long_line_grows_its_balloon_instead_of_shrinking_or_cutting_the_text() -> None:
    layout = lettering.layout_balloon((300, 200), LONG_LINE, "en", max_size=40, min_size=30)
    assert layout.block.font.size >= 30
    assert not layout.fits
    assert " ".join(layout.block.lines).split() == LONG_LINE.split(), "nothing cut"
    assert lettering.ELLIPSIS not in "".join(layout.block.lines)


@pytest.mark.parametrize(
    ("text", "language", "pieces"),
    [
        ("You are late. The storm is coming!", "en", ["You are late.", "The storm is coming!"]),
        ("遅いよ。嵐が来る！", "ja", ["遅いよ。", "嵐が来る！"]),
        (
            "we must light the lamp now before the storm",
            "en",
            ["we must light the lamp", "now before the storm"],
        ),
    ],
)
def test_a_long_line_splits_between_sentences_or_words(text: str, language: str, pieces: list[str]) -> None:
    assert lettering.split_speech(text, language) == pieces


def test_a_split_japanese_line_keeps_its_phrases_whole() -> None:
    text = "灯台の明かりが消えたので私たちは急いで階段を上った"
    first, second = lettering.split_speech(text, "ja")
    assert first + second == text
    phrases = budoux.load_default_japanese_parser().parse(text)
    assert first in {"".join(phrases[:n]) for n in range(1, len(phrases))}


def test_merged_quotes_keep_their_punctuation() -> None:
    plan = story_planner.plan_story(
        '"You\'re late," said Mara. "The storm is coming."', 1, common_pb2.StylePreferences()
    )
    assert [line.text for line in plan.scenes[0].dialogue] == ["You're late. The storm is coming."]
    assert lettering.join_speech("遅いよ", "嵐が来る", "ja") == "遅いよ。嵐が来る"
    assert lettering.join_speech("Wait", "please wait", "en") == "Wait, please wait"
    assert lettering.join_speech("Wait!", "Please.", "en") == "Wait! Please."


@pytest.mark.parametrize("language", ["ja", "zh"])
def test_cjk_lines_break_between_phrases(language: str) -> None:
    text = {
        "ja": "灯台の明かりが消えたので、私たちは急いで階段を上った。",
        "zh": "暴风雨就要来了，我们必须马上点亮灯塔的灯。",
    }[language]
    parser = {"ja": budoux.load_default_japanese_parser, "zh": budoux.load_default_simplified_chinese_parser}[
        language
    ]()
    boundaries = {0}
    for phrase in parser.parse(text):
        boundaries.add(max(boundaries) + len(phrase))
    font = lettering.font_for(40, language)
    for lines in (lettering.wrap_text(text, font, 330, language), lettering.wrap_vertical(text, 8, language)):
        assert "".join(lines) == text
        assert len(lines) > 1
        ends = {sum(len(line) for line in lines[: n + 1]) for n in range(len(lines))}
        assert ends <= boundaries, f"a line ends inside a phrase: {lines}"


def _first_balloon_x(reading_order: common_pb2.ReadingOrder.ValueType) -> float:
    """Where across the panel the topmost balloon is: on plain dark art, the white pixels of
    the highest rows that have any."""
    scene = common_pb2.Scene(
        number=1,
        setting="a lighthouse at night",
        characters=["Mara", "Tomas"],
        shot=common_pb2.SHOT_TYPE_MEDIUM,
        dialogue=[
            common_pb2.DialogueLine(speaker="Mara", text="Where is the lamp?"),
            common_pb2.DialogueLine(speaker="Tomas", text="On the top shelf."),
        ],
    )
    art = Image.new("RGB", (512, 512), (40, 40, 90))
    lettered = local_art.letter_art(
        art, scene, CAST, common_pb2.StylePreferences(), language="en", reading_order=reading_order
    )
    white = [(x, y) for y in range(512) for x in range(512) if lettered.getpixel((x, y)) == (255, 255, 255)]
    top = min(y for _, y in white)
    xs = [x for x, y in white if y < top + 6]
    return sum(xs) / len(xs)


def test_balloons_follow_the_reading_order() -> None:
    """The first line's balloon is the highest, at the side the page is read from: top-right
    when it reads right to left (and for UNSPECIFIED, manga order), top-left otherwise."""
    assert _first_balloon_x(common_pb2.READING_ORDER_RIGHT_TO_LEFT) > 256
    assert _first_balloon_x(common_pb2.READING_ORDER_UNSPECIFIED) > 256
    assert _first_balloon_x(common_pb2.READING_ORDER_LEFT_TO_RIGHT) < 256


def test_a_balloon_never_covers_one_drawn_before_it() -> None:
    """No room below the first balloon: the second moves beside it, not over it."""
    image = Image.new("RGB", (900, 420), (40, 40, 90))
    region = (20, 20, 300, 200)
    first = lettering.draw_balloon(image, region, LONG_LINE, "en", max_size=24, min_size=24)
    second = lettering.draw_balloon(image, region, LONG_LINE, "en", max_size=24, min_size=24, avoid=[first])
    assert second[3] <= image.height and second[2] <= image.width
    apart = first[2] <= second[0] or second[2] <= first[0] or first[3] <= second[1] or second[3] <= first[1]
    assert apart, (first, second)


@pytest.mark.parametrize(
    ("reading_order", "first_on_the_right"),
    [
        (common_pb2.READING_ORDER_RIGHT_TO_LEFT, True),
        (common_pb2.READING_ORDER_UNSPECIFIED, True),
        (common_pb2.READING_ORDER_LEFT_TO_RIGHT, False),
    ],
)
def test_the_local_backend_letters_in_the_jobs_reading_order(
    reading_order: common_pb2.ReadingOrder.ValueType, first_on_the_right: bool
) -> None:
    """The RenderPanelRequest carries the job's reading order to the letterer."""
    request = renderer_pb2.RenderPanelRequest(
        scene=common_pb2.Scene(
            number=1,
            setting="a lighthouse at night",
            characters=["Mara", "Tomas"],
            shot=common_pb2.SHOT_TYPE_MEDIUM,
            dialogue=[
                common_pb2.DialogueLine(speaker="Mara", text="Where is the lamp?"),
                common_pb2.DialogueLine(speaker="Tomas", text="On the top shelf."),
            ],
        ),
        characters=CAST,
        language="en",
        reading_order=reading_order,
    )
    artwork = asyncio.run(LocalBackend(panel_size=512).draw(request, References()))
    # The lettering is what differs between the two layers; its highest rows are the first balloon.
    difference = (
        ImageChops.difference(artwork.art, artwork.lettered).convert("L").point(lambda v: 255 if v else 0)
    )
    box = difference.crop((0, 0, 512, 28)).getbbox()
    assert box is not None
    assert ((box[0] + box[2]) / 2 > 256) == first_on_the_right
