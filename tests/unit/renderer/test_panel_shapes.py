"""Tests for panel shapes and layers: frame sizes, frames chosen from a panel's shape, art kept apart."""

from __future__ import annotations

import pytest
from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_renderer import local_art
from mangakai_renderer.backend import frame_size
from mangakai_renderer.page_composer import compose_pages
from mangakai_renderer.servicer import art_blob_key

PAGE = (400, 566)
CAST = [
    common_pb2.Character(name="Mara", description="short red hair, yellow raincoat"),
    common_pb2.Character(name="Tomas", description="old man, white beard, navy sweater"),
]
SCENE = common_pb2.Scene(
    number=1,
    setting="a lighthouse at night",
    characters=["Mara", "Tomas"],
    action="Mara hands Tomas the lamp",
    shot=common_pb2.SHOT_TYPE_MEDIUM,
    dialogue=[common_pb2.DialogueLine(speaker="Mara", text="Hold it steady!")],
    narration="The storm came at midnight.",
)


@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        ("", (1024, 1024)),
        ("1:1", (1024, 1024)),
        ("16:9", (1024, 576)),
        ("3:4", (768, 1024)),
        ("21:9", (1024, 439)),
    ],
)
def test_frame_size_keeps_the_long_edge(ratio: str, size: tuple[int, int]) -> None:
    assert frame_size(ratio, 1024) == size


def test_art_is_stored_beside_the_panel() -> None:
    assert art_blob_key("jobs/j/panels/03/v2.png") == "jobs/j/panels/03/v2.art.png"


def test_a_wide_panel_without_scenes_gets_a_frame_of_its_own_shape() -> None:
    wide = Image.new("RGB", (320, 140), (230, 30, 30))
    square = [Image.new("RGB", (200, 200), colour) for colour in ((30, 160, 40), (30, 60, 220))]

    page = compose_pages(
        [wide, *square],
        None,
        common_pb2.PAGE_LAYOUT_CLASSIC,
        common_pb2.READING_ORDER_LEFT_TO_RIGHT,
        page_size=PAGE,
    )[0]

    red = [(x, y) for y in range(PAGE[1]) for x in range(PAGE[0]) if page.getpixel((x, y)) == (230, 30, 30)]
    xs = [x for x, _ in red]
    ys = [y for _, y in red]
    shown = (max(xs) - min(xs) + 1) / (max(ys) - min(ys) + 1)
    assert abs(shown - 320 / 140) < 0.12, "the wide art keeps its shape: no letterbox, no strong crop"
    assert max(ys) < PAGE[1] / 2, "in the first row"


def test_local_layers_are_the_same_art_with_and_without_lettering() -> None:
    art, lettered = local_art.draw_panel_layers(
        SCENE, CAST, common_pb2.StylePreferences(), language="en", size=(512, 288)
    )

    assert art.size == lettered.size == (512, 288)
    differing = sum(1 for a, b in zip(art.getdata(), lettered.getdata(), strict=True) if a != b)
    # Only the balloon and caption differ: a visible but small part of the panel.
    assert 0.01 < differing / (512 * 288) < 0.5


def test_lettering_model_art_puts_the_dialogue_in_a_white_balloon() -> None:
    art = Image.new("RGB", (640, 360), (40, 40, 90))

    lettered = local_art.letter_art(art, SCENE, CAST, common_pb2.StylePreferences(), language="en")

    assert lettered.size == art.size
    assert art.getpixel((320, 180)) == (40, 40, 90), "the art itself is not touched"
    white = sum(1 for pixel in lettered.getdata() if pixel == (255, 255, 255))
    assert white > 2000, "a balloon was drawn"


def test_the_character_sheet_shows_every_character_apart() -> None:
    sheet = local_art.draw_character_sheet(
        CAST, common_pb2.StylePreferences(), language="en", size=(600, 400)
    )

    assert sheet.size == (600, 400)
    left = sheet.crop((0, 0, 300, 340)).convert("L").getextrema()
    right = sheet.crop((300, 0, 600, 340)).convert("L").getextrema()
    assert left[0] < 60 and right[0] < 60, "a figure (with ink lines) stands in each half"
    assert (
        local_art.draw_character_sheet(
            CAST, common_pb2.StylePreferences(), language="en", size=(600, 400)
        ).tobytes()
        == sheet.tobytes()
    ), "deterministic"
