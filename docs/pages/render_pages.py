"""Renders the README's example pages: one composed page per layout for each sample story.

    .venv/bin/python docs/pages/render_pages.py

The pages are made by the same code as a job on the local backend: the story planner, the local
illustrator (each panel drawn in the shape the orchestrator asks for its layout), and the page
composer. They are saved small (PNG, 256 colours) next to this script.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mangakai.v1 import common_pb2
from mangakai_orchestrator.runner import panel_aspect_ratio
from mangakai_renderer import local_art, page_composer, story_planner
from mangakai_renderer.backend import frame_size

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"
STORIES = {
    "en": SAMPLES / "en" / "the_lighthouse_keeper.txt",
    "zh": SAMPLES / "zh" / "lantern_festival.txt",
    "ja": SAMPLES / "ja" / "summer_festival.txt",
}
# Layout: (name, panels planned, panels shown on the page).
LAYOUTS = {
    common_pb2.PAGE_LAYOUT_CLASSIC: ("classic", 6),
    common_pb2.PAGE_LAYOUT_FOUR_KOMA: ("four-koma", 4),
    common_pb2.PAGE_LAYOUT_WEBTOON: ("webtoon", 4),
    common_pb2.PAGE_LAYOUT_SINGLE: ("single", 1),
}
SHOWN_WIDTH = 520
PANEL_EDGE = 768


def render(language: str, layout: common_pb2.PageLayout.ValueType, panels: int) -> Image.Image:
    """The first page of the sample story of `language` composed in `layout`."""
    story = STORIES[language].read_text(encoding="utf-8")
    plan = story_planner.plan_story(story, panels, common_pb2.StylePreferences())
    drawn = [
        local_art.draw_panel(
            scene,
            list(plan.characters),
            common_pb2.StylePreferences(),
            language=plan.language,
            size=frame_size(panel_aspect_ratio(layout, scene.shot), PANEL_EDGE),
        )
        for scene in plan.scenes
    ]
    pages = page_composer.compose_pages(drawn, None, layout, common_pb2.READING_ORDER_UNSPECIFIED)
    return pages[0]


def main() -> None:
    for layout, (name, panels) in LAYOUTS.items():
        for language in STORIES:
            page = render(language, layout, panels)
            small = page.resize(
                (SHOWN_WIDTH, round(page.height * SHOWN_WIDTH / page.width)), Image.Resampling.LANCZOS
            )
            path = HERE / f"{name}-{language}.png"
            small.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
            print(f"{path.relative_to(HERE.parent.parent)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
