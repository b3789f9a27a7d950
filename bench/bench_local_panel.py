"""Benchmark: how long the local art backend takes to draw one 1024 px panel on one core.

Run from the repository root: `.venv/bin/python bench/bench_local_panel.py`.
It plans the three sample stories, draws 20 different panels (varied shots,
moods and palettes) once to warm caches, then times them and reports mean
and p95 seconds per panel against the 0.3 s target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from mangakai.v1 import common_pb2
from mangakai_renderer.local_art import draw_panel, encode_png
from mangakai_renderer.story_planner import plan_story

TARGET_SECONDS = 0.3
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
MOODS = [
    common_pb2.MOOD_UNSPECIFIED,
    common_pb2.MOOD_ACTION,
    common_pb2.MOOD_ROMANTIC,
    common_pb2.MOOD_DARK,
    common_pb2.MOOD_LIGHTHEARTED,
]
PALETTES = [
    common_pb2.COLOR_PALETTE_FULL_COLOR,
    common_pb2.COLOR_PALETTE_BLACK_AND_WHITE,
    common_pb2.COLOR_PALETTE_SEPIA,
    common_pb2.COLOR_PALETTE_VIBRANT,
]


def _jobs(
    count: int,
) -> list[tuple[common_pb2.Scene, list[common_pb2.Character], common_pb2.StylePreferences, str]]:
    stories = sorted(SAMPLES.glob("*/*.txt"))
    jobs = []
    for index in range(count):
        story = stories[index % len(stories)]
        style = common_pb2.StylePreferences(
            mood=MOODS[index % len(MOODS)], color_palette=PALETTES[index % len(PALETTES)]
        )
        plan = plan_story(story.read_text(encoding="utf-8"), 7, style)
        scene = plan.scenes[index % len(plan.scenes)]
        jobs.append((scene, list(plan.characters), style, plan.language))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    # One core: keep any threaded library code honest.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    jobs = _jobs(args.panels)
    size = (args.size, args.size)
    for scene, characters, style, language in jobs[:3]:
        draw_panel(scene, characters, style, language=language, size=size)  # warm fonts and tone caches
    draw_times: list[float] = []
    encode_times: list[float] = []
    for scene, characters, style, language in jobs:
        start = time.perf_counter()
        image = draw_panel(scene, characters, style, language=language, size=size)
        drawn = time.perf_counter()
        encode_png(image)
        encode_times.append(time.perf_counter() - drawn)
        draw_times.append(drawn - start)
    p95 = statistics.quantiles(draw_times, n=20)[-1] if len(draw_times) >= 2 else draw_times[0]
    mean = statistics.fmean(draw_times)
    print(f"{len(draw_times)} panels of {args.size}x{args.size} on one core")
    print(
        f"draw_panel: mean {mean:.3f} s, p95 {p95:.3f} s, max {max(draw_times):.3f} s (target {TARGET_SECONDS:.1f} s)"
    )
    print(f"encode_png: mean {statistics.fmean(encode_times):.3f} s")
    print("OK" if p95 < TARGET_SECONDS else "SLOWER THAN TARGET")


if __name__ == "__main__":
    main()
