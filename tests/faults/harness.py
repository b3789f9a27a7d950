"""What every fault case shares: a stack drawing with a counting fake Gemini, and a job follower.

Each fault module starts one stack of its own (its own PostgreSQL and
nats-server too, so that restarting them disturbs nobody else) whose renderer
draws with Gemini, the Gemini API being `CountingGemini` on loopback: an image
takes `IMAGE_SECONDS`, so that draws are in flight when a fault strikes, and
every request is counted, so that a case can assert that nothing was paid for
twice. `follow` watches a job to its end through the gateway, re-attaching
after a broken stream, and fails on any gap or duplicate in the event
sequence; it notes when each event arrived, which is how recovery is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mangakai.v1 import common_pb2
from mangakai_devstack.stack import Stack
from mangakai_runtime.blobs import BlobClient
from tests.integration.mesh_client import Session, scrape
from tests.integration.renderer.fake_gemini import FakeGemini, RecordedRequest, Rule

JobState = common_pb2.Job.State
PANELS = 3
IMAGE_SECONDS = 2.0
GEMINI_ATTEMPTS = 3
IMAGE_MODEL = "gemini-3.1-flash-image"
SHEET = "character model sheet"


HANG_SECONDS = 60.0


class CountingGemini(FakeGemini):
    """The fake Gemini, slow at drawing, and able to fail every n-th image request.

    `fail_every = n` answers every n-th image request with `failure`: "500" (an
    internal error) or "hang" (an answer only after `HANG_SECONDS`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail_every = 0
        self.failure = "500"
        self._images = 0
        self.add_rule("ok", model=IMAGE_MODEL, times=None, delay=IMAGE_SECONDS)

    def script(self, action: Any, match: str = "", **options: Any) -> Rule:
        """A rule that goes before the slow default one (rules apply first come, first served)."""
        rule = Rule(action, match, **options)
        with self._changed:
            self.rules.insert(0, rule)
        return rule

    def forget(self, rule: Rule) -> None:
        with self._changed:
            self.rules.remove(rule)

    def images(self, since: int = 0) -> list[RecordedRequest]:
        """Image requests (panels and sheets) from the `since`-th on."""
        return self.image_requests()[since:]

    def in_flight(self, since: int) -> int:
        """Image requests from the `since`-th on that have not been answered yet."""
        return sum(1 for r in self.images(since) if r.status == 0)

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, Any], float]:
        status, answer, delay = super()._answer(request)
        if request.wants_image and status == 200 and self.fail_every:
            with self._changed:
                self._images += 1
                fail = self._images % self.fail_every == 0
            if fail and self.failure == "hang":
                return status, answer, HANG_SECONDS
            if fail:
                request.answer = "500"
                error = {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}
                return 500, {"error": {**error, "details": []}}, 0.0
        return status, answer, delay


def gemini_stack(
    base_dir: Path, gemini: FakeGemini, *, replicas: dict[str, int] | None = None, **overrides: dict[str, str]
) -> Stack:
    """A stack of its own (PostgreSQL and NATS included) whose renderer draws with `gemini`.

    Use it as a context manager: `with gemini_stack(...) as stack:` starts it and stops it.
    """
    settings: dict[str, dict[str, str]] = {
        "renderer": {
            "RENDERER_BACKEND": "gemini",
            "GEMINI_API_KEY": "test",
            "GEMINI_BASE_URL": gemini.url,
            "GEMINI_IMAGES_PER_MINUTE": "0",
            "GEMINI_REQUESTS_PER_MINUTE": "0",
            "GEMINI_ATTEMPTS": str(GEMINI_ATTEMPTS),
        },
        "gateway": {"RATE_LIMIT_SESSION_CALLS": "0"},
    }
    for service, env in overrides.items():
        settings.setdefault(service, {}).update(env)
    return Stack(base_dir, durable=False, overrides=settings, replicas=replicas or 1)


@dataclass
class Followed:
    """A job's events in order, each with the monotonic time it reached the test."""

    events: list[common_pb2.JobEvent]
    times: list[float]

    @property
    def last(self) -> common_pb2.JobEvent:
        return self.events[-1]

    def first_after(self, moment: float) -> float:
        """Seconds from `moment` to the first event that arrived after it."""
        later = [t for t in self.times if t > moment]
        assert later, f"no event after the fault; last events {self.events[-3:]}"
        return later[0] - moment

    def resumed_after(self, moment: float, *, or_continued: bool = False) -> float:
        """Seconds from `moment` to the job's resumption: the first panel started a second time
        (a new claim starts every unfinished panel again), not an event left in transit.

        `or_continued`: a run the fault did not interrupt (a short restart nobody wrote
        through) counts from the first event after `moment` instead.
        """
        started: set[int] = set()
        for event, at in zip(self.events, self.times, strict=True):
            if not event.HasField("panel_started"):
                continue
            if event.panel_started.panel in started and at > moment:
                return at - moment
            started.add(event.panel_started.panel)
        if or_continued:
            if self.events and self.events[-1].terminal and self.times[-1] <= moment:
                # The job ended before the fault was over (e.g. a slow server stop let the
                # last writes through): there was nothing left to resume.
                return 0.0
            return self.first_after(moment)
        raise AssertionError(f"the job was never resumed after the fault; events {self.events}")


async def follow(session: Session, name: str, within: float = 120.0) -> Followed:
    """Every event of a job until its terminal one, re-attaching after a broken stream.

    Each event must carry the next sequence number: a gap or a duplicate fails here.
    """
    followed = Followed([], [])
    deadline = time.monotonic() + within
    while True:
        after = followed.events[-1].sequence if followed.events else 0
        try:
            async for event in session.watch(name, after):
                expected = (followed.events[-1].sequence if followed.events else 0) + 1
                assert event.sequence == expected, f"{name}: event {event.sequence}, expected {expected}"
                followed.events.append(event)
                followed.times.append(time.monotonic())
                if event.terminal:
                    return followed
        except grpc.aio.AioRpcError as error:
            # A gateway that lost NATS or PostgreSQL for a moment ends the stream as UNAVAILABLE.
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not end within {within}s; last events {followed.events[-3:]}")
        await asyncio.sleep(0.1)  # back off before re-attaching


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def assert_images_downloadable(stack: Stack, job: common_pb2.Job) -> None:
    """Every image the job shows can be read back from storage, with the digest it was stored with."""
    blobs = BlobClient(stack.service("storage").address)
    try:
        images = [v.image for p in job.panels for v in p.versions if v.image.blob_key]
        if job.character_sheet.blob_key:
            images.append(job.character_sheet)
        assert images, f"{job.name} shows no image"
        for image in images:
            _, data = await blobs.get(image.blob_key)
            assert hashlib.sha256(data).hexdigest() == image.sha256, image.blob_key
    finally:
        await blobs.close()


def draws_running(stack: Stack) -> float:
    return scrape(stack.service("renderer").ports["metrics_port"], "mangakai_renderer_draws_running")


def record(case: str, expected: int, actual: int, recovery: float | None = None) -> None:
    """Prints one row of the fault table (run with -s to see them)."""
    shown = "-" if recovery is None else f"{recovery:.1f}s"
    print(f"\nFAULT {case}: image requests expected {expected}, actual {actual}, recovery {shown}")
