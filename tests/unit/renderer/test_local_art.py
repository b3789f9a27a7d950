"""Tests for the local art backend and the lettering it uses."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from mangakai.v1 import common_pb2
from mangakai_renderer import lettering
from mangakai_renderer.local_art import draw_panel, encode_png
from mangakai_renderer.story_planner import look_from_description

STYLE = common_pb2.StylePreferences(
    mood=common_pb2.MOOD_PEACEFUL, color_palette=common_pb2.COLOR_PALETTE_FULL_COLOR
)
SIZE = (384, 384)


def _scene(
    *names: str, shot: common_pb2.ShotType.ValueType = common_pb2.SHOT_TYPE_CLOSE_UP, **fields: str
) -> common_pb2.Scene:
    scene = common_pb2.Scene(
        number=1, setting=fields.get("setting", "a quiet park"), shot=shot, action="They talk."
    )
    scene.characters.extend(names)
    return scene


def _luma(image: Image.Image) -> bytes:
    return image.convert("L").tobytes()


def _cast(*names: str) -> list[common_pb2.Character]:
    return [common_pb2.Character(name=name) for name in names]


def test_panel_is_rgb_of_the_requested_size_with_a_black_border() -> None:
    image = draw_panel(_scene("Mara"), _cast("Mara"), STYLE, language="en", size=(400, 300))
    assert image.mode == "RGB"
    assert image.size == (400, 300)
    assert image.getpixel((1, 150)) == (18, 16, 20)
    assert image.getpixel((200, 1)) == (18, 16, 20)


def test_same_input_gives_identical_png_bytes() -> None:
    scene = _scene("Mara", "Tomas", shot=common_pb2.SHOT_TYPE_MEDIUM)
    scene.dialogue.add(speaker="Mara", text="Who is there?")
    first = encode_png(draw_panel(scene, _cast("Mara", "Tomas"), STYLE, language="en", size=SIZE))
    second = encode_png(draw_panel(scene, _cast("Mara", "Tomas"), STYLE, language="en", size=SIZE))
    assert first == second
    assert Image.open(io.BytesIO(first)).size == SIZE


def test_instruction_changes_the_drawing() -> None:
    scene = _scene("Mara", shot=common_pb2.SHOT_TYPE_WIDE)
    plain = draw_panel(scene, _cast("Mara"), STYLE, language="en", size=SIZE)
    at_night = draw_panel(scene, _cast("Mara"), STYLE, language="en", size=SIZE, instruction="make it night")
    assert ImageChops.difference(plain, at_night).getbbox() is not None
    # Night darkens the sky.
    assert sum(_luma(at_night.crop((20, 20, 360, 120)))) < sum(_luma(plain.crop((20, 20, 360, 120))))


def _colours(image: Image.Image) -> set[tuple[int, int, int]]:
    raw = image.tobytes()
    return {(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)}


def _face_colours(name: str) -> set[tuple[int, int, int]]:
    return _colours(draw_panel(_scene(name), _cast(name), STYLE, language="en", size=SIZE))


def test_different_names_give_different_figures_and_a_name_looks_the_same_everywhere() -> None:
    mara, tomas = look_from_description("Mara", ""), look_from_description("Tomas", "")
    assert (mara.hair_colour, mara.clothes_colour) != (tomas.hair_colour, tomas.clothes_colour)
    mara_colours = _face_colours("Mara")
    tomas_colours = _face_colours("Tomas")
    assert mara.hair_colour in mara_colours
    assert mara.hair_colour not in tomas_colours or mara.clothes_colour not in tomas_colours

    # The same character keeps hair and clothes colours in a different scene.
    other = common_pb2.Scene(number=5, setting="a lighthouse at night", shot=common_pb2.SHOT_TYPE_MEDIUM)
    other.characters.append("Mara")
    colours = _colours(draw_panel(other, _cast("Mara"), STYLE, language="en", size=SIZE))
    assert mara.hair_colour in colours
    assert mara.clothes_colour in colours


def test_dialogue_is_lettered_in_a_balloon_near_the_top() -> None:
    scene = _scene("美咲", shot=common_pb2.SHOT_TYPE_MEDIUM)
    silent = draw_panel(scene, _cast("美咲"), STYLE, language="ja", size=(512, 512))
    scene.dialogue.add(speaker="美咲", text="花火、始まっちゃうよ")
    speaking = draw_panel(scene, _cast("美咲"), STYLE, language="ja", size=(512, 512))
    changed = ImageChops.difference(silent, speaking).getbbox()
    assert changed is not None
    assert changed[1] < 512 * 0.3


def test_balloon_text_is_drawn_and_fits() -> None:
    image = Image.new("RGB", (400, 300), (200, 200, 200))
    box = lettering.draw_balloon(
        image, (20, 20, 380, 280), "遅いよ。花火、始まっちゃうじゃない", "ja", tail_to=(200, 299)
    )
    left, top, right, bottom = box
    assert 20 <= left < right <= 380
    assert 20 <= top < bottom <= 280
    centre = image.convert("L").crop(
        (
            left + (right - left) // 4,
            top + (bottom - top) // 4,
            right - (right - left) // 4,
            bottom - (bottom - top) // 4,
        )
    )
    dark = sum(1 for value in centre.tobytes() if value < 80)
    assert dark > 100  # glyph strokes, not an empty balloon
    assert image.getpixel(((left + right) // 2, top + 3)) != (200, 200, 200)


def test_overlong_text_is_shrunk_then_truncated_with_an_ellipsis() -> None:
    block = lettering.layout_text("word " * 400, "en", 200, 100, max_size=30, min_size=12)
    assert block.font.size == 12
    assert block.height <= 100
    assert block.width <= 200
    assert block.lines[-1].endswith(lettering.ELLIPSIS)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("小雨，快走！桥那边开始猜灯谜了，今年的头奖是一盏走马灯。", "zh"),
        ("「ごめん、遅くなった！」と健太が走ってきた。額には汗が光っていた。", "ja"),
        ("Supercalifragilisticexpialidocious lighthouse keepers keep lights.", "en"),
    ],
)
@pytest.mark.parametrize("width", [60, 110, 230])
def test_wrapping_never_exceeds_the_width_and_keeps_every_character(
    text: str, language: str, width: int
) -> None:
    font = lettering.font_for(20, language)
    lines = lettering.wrap_text(text, font, width)
    assert all(font.getlength(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "").replace("-", "") == text.replace(" ", "").replace("-", "")


def test_kinsoku_no_line_starts_with_closing_punctuation() -> None:
    font = lettering.font_for(20, "ja")
    text = "あいうえお、かきくけこ。さしすせそ」たちつてと！なにぬねの"
    for width in range(60, 200, 7):
        lines = lettering.wrap_text(text, font, width)
        assert not any(line[0] in lettering.NO_LINE_START for line in lines[1:]), (width, lines)


def test_vertical_columns_respect_capacity_and_kinsoku() -> None:
    columns = lettering.wrap_vertical("遅いよ。花火、始まっちゃうじゃない", 5)
    assert all(len(column) <= 5 for column in columns)
    assert not any(column[0] in lettering.NO_LINE_START for column in columns[1:])
    assert "".join(columns) == "遅いよ。花火、始まっちゃうじゃない"


def test_font_faces_follow_the_language() -> None:
    assert "JP" in str(lettering.font_for(20, "ja").getname()[0])
    assert "SC" in str(lettering.font_for(20, "zh").getname()[0])
    assert "KR" in str(lettering.font_for(20, "ko").getname()[0])


@pytest.mark.parametrize(
    "palette",
    [common_pb2.COLOR_PALETTE_BLACK_AND_WHITE, common_pb2.COLOR_PALETTE_SEPIA],
)
def test_monochrome_palettes_have_no_free_colour(palette: common_pb2.ColorPalette.ValueType) -> None:
    style = common_pb2.StylePreferences(color_palette=palette)
    image = draw_panel(
        _scene("Mara", shot=common_pb2.SHOT_TYPE_MEDIUM), _cast("Mara"), style, language="en", size=SIZE
    )
    interior = image.crop((10, 10, SIZE[0] - 10, SIZE[1] - 10))
    red, green, blue = (channel.tobytes() for channel in interior.split())
    if palette == common_pb2.COLOR_PALETTE_BLACK_AND_WHITE:
        assert all(abs(r - g) <= 4 and abs(g - b) <= 4 for r, g, b in zip(red, green, blue, strict=True))
        # Screentone: mostly pure ink and paper, not a smooth grey photo.
        luma = interior.convert("L").tobytes()
        assert sum(1 for v in luma if v < 30 or v > 225) > 0.85 * len(luma)
    else:
        # Sepia: warm everywhere (red >= green >= blue, within rounding).
        assert all(r + 3 >= g and g + 3 >= b for r, g, b in zip(red, green, blue, strict=True))
