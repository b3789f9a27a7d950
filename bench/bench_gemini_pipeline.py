"""Benchmark: a 10-panel job against a Gemini server with a fixed per-image latency,
panels drawn in parallel versus one after another; and the local backend's panels per second.

Run from the repository root: `.venv/bin/python bench/bench_gemini_pipeline.py` (or `make bench`).
The Gemini server is the tests' fake (tests/integration/renderer/fake_gemini.py), which speaks
the REST protocol google-genai uses, answering every image request after `--latency` seconds.
The whole mesh runs for real (PostgreSQL, nats-server, the four services). Expected: with
RENDER_CONCURRENCY=c the panels take about ceil(10 / c) x L after the plan and the character
sheet, against 10 x L one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

import grpc

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_devstack.stack import StackFactory
from mangakai_renderer.local_art import draw_panel
from mangakai_renderer.story_planner import plan_story

ROOT = Path(__file__).resolve().parents[1]
STORY = (ROOT / "samples" / "en" / "the_lighthouse_keeper.txt").read_text()
# The fake Gemini server lives with the tests; the mesh client with the other benchmark.
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from bench_mesh import Client, stacks  # noqa: E402

from tests.integration.renderer.fake_gemini import FakeGemini  # noqa: E402


def local_panels_per_second(count: int) -> float:
    plan = plan_story(STORY, count, common_pb2.StylePreferences())
    draw_panel(plan.scenes[0], plan.characters, common_pb2.StylePreferences(), language=plan.language)
    started = time.perf_counter()
    for scene in plan.scenes:
        draw_panel(scene, plan.characters, common_pb2.StylePreferences(), language=plan.language)
    return count / (time.perf_counter() - started)


async def ten_panel_job(factory: StackFactory, gemini: FakeGemini, concurrency: int) -> float:
    stack = factory(
        overrides={
            "renderer": {
                "RENDERER_BACKEND": "gemini",
                "GEMINI_API_KEY": "bench",
                "GEMINI_BASE_URL": gemini.url,
                "GEMINI_IMAGES_PER_MINUTE": "10000",
                "GEMINI_REQUESTS_PER_MINUTE": "10000",
            },
            "orchestrator": {"RENDER_CONCURRENCY": str(concurrency)},
        }
    )
    try:
        async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
            client = await Client.open(channel)
            seconds, last = await client.run_job(10)
            assert last.job_state == common_pb2.Job.State.STATE_COMPLETED, last
            job = await client.jobs.GetJob(jobs_pb2.GetJobRequest(name=last.job), metadata=client.metadata)
            assert all(p.current_version == 1 for p in job.panels)
            return seconds
    finally:
        stack.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the fake takes per image")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    print(f"local backend: {local_panels_per_second(10):.1f} panels/s (1024 px, one core)")
    with stacks() as factory, FakeGemini() as gemini:
        gemini.add_rule("ok", times=None, delay=args.latency, model="")
        parallel = await ten_panel_job(factory, gemini, args.concurrency)
        sequential = await ten_panel_job(factory, gemini, 1)
    latency = args.latency
    # Plan (a text request, also answered after L) + character sheet (L) + the panels.
    ideal = 2 * latency + math.ceil(10 / args.concurrency) * latency
    print(
        f"10-panel job, L={latency:.1f}s, concurrency {args.concurrency}: {parallel:.2f}s ({parallel / ideal:.2f}x of {ideal:.1f}s ideal)"
    )
    print(f"10-panel job, L={latency:.1f}s, one after another: {sequential:.2f}s")
    print(f"speed-up of parallel rendering: {sequential / parallel:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
