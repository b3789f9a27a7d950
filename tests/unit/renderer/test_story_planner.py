"""Tests for the local story planner: scene splitting, dialogue, characters and shots."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from mangakai.v1 import common_pb2
from mangakai_renderer.story_planner import detect_language, look_from_description, plan_story

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
STYLE = common_pb2.StylePreferences()


def _sample(relative: str) -> str:
    return (SAMPLES / relative).read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("relative", "language", "title"),
    [
        ("en/the_lighthouse_keeper.txt", "en", "The Lighthouse Keeper"),
        ("zh/lantern_festival.txt", "zh", "元宵节的灯笼"),
        ("ja/summer_festival.txt", "ja", "夏祭りの約束"),
    ],
)
@pytest.mark.parametrize("panel_count", [1, 4, 6, 9])
def test_plan_covers_the_story_in_order_with_exactly_n_scenes(
    relative: str, language: str, title: str, panel_count: int
) -> None:
    story = _sample(relative)
    plan = plan_story(story, panel_count, STYLE)

    assert plan.language == language
    assert plan.title == title
    assert [scene.number for scene in plan.scenes] == list(range(1, panel_count + 1))
    # The scenes' passages, in order and without repeats, are exactly the story after its title.
    body = story.split("\n", 1)[1]
    assert _squash("".join(scene.source_text for scene in plan.scenes)) == _squash(body)
    assert all(scene.source_text for scene in plan.scenes)


def test_scene_lengths_are_balanced() -> None:
    plan = plan_story(_sample("en/the_lighthouse_keeper.txt"), 6, STYLE)
    lengths = [len(scene.source_text) for scene in plan.scenes]
    assert max(lengths) < 3 * min(lengths)


def test_short_story_still_gets_every_panel_without_inventing_text() -> None:
    story = 'Mara ran to the door. "Who is there?" she asked.'
    plan = plan_story(story, 5, STYLE)

    assert len(plan.scenes) == 5
    for scene in plan.scenes:
        assert _squash(scene.source_text) in _squash(story)
    # Clause splitting happens before any passage is reused.
    assert len({scene.source_text for scene in plan.scenes}) >= 2
    # A reused passage does not repeat its dialogue.
    spoken = [line.text for scene in plan.scenes for line in scene.dialogue]
    assert spoken.count("Who is there?") == 1


def test_english_dialogue_and_speakers() -> None:
    story = (
        "Harbor Lights\n\n"
        'Mara climbed the stairs. "The lamp is out," said Mara.\n\n'
        'Tomas laughed. "Then we light it," Tomas replied.\n\n'
        "Mara nodded and Tomas smiled."
    )
    plan = plan_story(story, 3, STYLE)
    lines = [(line.speaker, line.text) for scene in plan.scenes for line in scene.dialogue]

    assert ("Mara", "The lamp is out") in lines
    assert ("Tomas", "Then we light it") in lines
    assert {c.name for c in plan.characters} == {"Mara", "Tomas"}
    # Narration is the scene without its quotations.
    assert all('"' not in scene.narration for scene in plan.scenes)


def test_japanese_speaker_after_quote() -> None:
    story = "花火の夜\n\n「遅いよ」と美咲は言った。健太は笑った。\n\n美咲は「行こう」と手を引いた。"
    plan = plan_story(story, 2, STYLE)
    lines = [(line.speaker, line.text) for scene in plan.scenes for line in scene.dialogue]

    assert ("美咲", "遅いよ") in lines
    assert ("美咲", "行こう") in lines
    assert "美咲" in [c.name for c in plan.characters]


def test_chinese_speaker_before_quote() -> None:
    story = "灯笼\n\n小明说：“我们去看灯吧。”小红点点头。\n\n小红笑着说：“好啊！”"
    plan = plan_story(story, 2, STYLE)
    lines = [(line.speaker, line.text) for scene in plan.scenes for line in scene.dialogue]

    assert ("小明", "我们去看灯吧。") in lines
    assert ("小红", "好啊！") in lines


def test_sample_speakers_are_attributed() -> None:
    plan = plan_story(_sample("ja/summer_festival.txt"), 6, STYLE)
    speakers = {line.speaker for scene in plan.scenes for line in scene.dialogue}
    assert {"美咲", "健太", "春子"} <= speakers
    assert "" not in speakers


def test_narration_is_short() -> None:
    for relative, limit in (
        ("en/the_lighthouse_keeper.txt", 170),
        ("zh/lantern_festival.txt", 70),
        ("ja/summer_festival.txt", 70),
    ):
        plan = plan_story(_sample(relative), 4, STYLE)
        assert all(len(scene.narration) <= limit for scene in plan.scenes), relative


def test_shots_start_establishing_and_never_repeat_back_to_back() -> None:
    for relative in ("en/the_lighthouse_keeper.txt", "zh/lantern_festival.txt", "ja/summer_festival.txt"):
        plan = plan_story(_sample(relative), 8, STYLE)
        shots = [scene.shot for scene in plan.scenes]
        assert shots[0] in (common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_WIDE)
        assert all(a != b for a, b in itertools.pairwise(shots)), relative
        assert common_pb2.SHOT_TYPE_UNSPECIFIED not in shots


def test_plan_is_deterministic_and_prompts_mention_style() -> None:
    style = common_pb2.StylePreferences(art_style=common_pb2.ART_STYLE_SHOJO, mood=common_pb2.MOOD_ROMANTIC)
    first = plan_story(_sample("en/the_lighthouse_keeper.txt"), 6, style)
    second = plan_story(_sample("en/the_lighthouse_keeper.txt"), 6, style)

    assert first.SerializeToString(deterministic=True) == second.SerializeToString(deterministic=True)
    assert all("shojo" in scene.visual_prompt and "romantic" in scene.visual_prompt for scene in first.scenes)


def test_characters_in_a_story_are_dressed_apart_and_round_trip() -> None:
    plan = plan_story(_sample("zh/lantern_festival.txt"), 6, STYLE)
    looks = [look_from_description(c.name, c.description) for c in plan.characters]

    assert len(plan.characters) >= 2
    assert len({look.clothes_name for look in looks}) == len(looks)
    for character, look in zip(plan.characters, looks, strict=True):
        assert look.description() == character.description


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The sea was calm.", "en"),
        ("海は静かだった。", "ja"),
        ("大海很平静。", "zh"),
        ("바다는 조용했다.", "ko"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_rejects_zero_panels() -> None:
    with pytest.raises(ValueError, match="panel_count"):
        plan_story("A story.", 0, STYLE)
