"""The job state machine: runs one claimed job from where it stands to a terminal state.

QUEUED → PLANNING → RENDERING → COMPLETED | FAILED | CANCELLED (a COMPLETED job
with failed panels is partial: see `Job.failed_panel_count`). Between the
plan and the panels, one character sheet is drawn from the plan's character
bible and stored as a blob of the job; every panel is drawn with it as a
reference image, so the characters keep their look. A job taken over after a
crash resumes: a stored plan is not planned again, a stored sheet is not drawn
again, and panels already drawn are not drawn again (the renderer also returns
an existing output blob instead of drawing it twice). Panels are drawn in
parallel, at most `render_concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mangakai.v1 import common_pb2, renderer_pb2
from mangakai_orchestrator.clients import Backends
from mangakai_orchestrator.events import EventRelay
from mangakai_orchestrator.leases import ClaimedJob
from mangakai_orchestrator.metrics import (
    JOBS_FINISHED,
    PANEL_RENDER_SECONDS,
    PANELS_FINISHED,
    finished_label,
)
from mangakai_orchestrator.settings import OrchestratorSettings
from mangakai_orchestrator.store import JobStore, PendingVersion, job_name
from mangakai_runtime.errors import error_info
from mangakai_runtime.subjects import Subjects

log = logging.getLogger(__name__)

JobState = common_pb2.Job.State
T = TypeVar("T")

# Answers that carry no ErrorInfo with these codes never came from the renderer's own code: the
# call did not get through (a replica gone, a connection cut). Worth another try.
_NOT_ANSWERED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def panel_blob_key(job_id: uuid.UUID, number: int, version: int) -> str:
    return f"jobs/{job_id}/panels/{number:02d}/v{version}.png"


def character_sheet_key(job_id: uuid.UUID) -> str:
    return f"jobs/{job_id}/character-sheet.png"


_WIDE_SHOTS = (common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_WIDE)
_CLOSE_SHOTS = (common_pb2.SHOT_TYPE_CLOSE_UP, common_pb2.SHOT_TYPE_EXTREME_CLOSE_UP)


def panel_aspect_ratio(layout: int, shot: int) -> str:
    """The shape to draw a panel in, so that it fills its frame on the page without cropping.

    Four-koma frames are wide strips and single-panel pages are portrait; on a
    classic page (and a webtoon strip) an establishing or wide shot gets a wide
    frame, a close-up a narrow one, anything else a square.
    """
    if layout == common_pb2.PAGE_LAYOUT_FOUR_KOMA:
        return "21:9"
    if layout == common_pb2.PAGE_LAYOUT_SINGLE:
        return "3:4"
    if shot in _WIDE_SHOTS:
        return "16:9"
    if shot in _CLOSE_SHOTS:
        return "3:4"
    return "1:1"


def retry_delay(error: grpc.aio.AioRpcError, attempt: int) -> float | None:
    """How long to wait before trying a failed renderer call again; None: do not.

    The callee owns its retries (the renderer retries Gemini itself) and says what
    may be retried: a RetryInfo delay is obeyed; a call that got no answer from the
    renderer's code is tried again after jittered exponential backoff; any other
    answer is final (e.g. ABORTED once the renderer used up its Gemini attempts).
    """
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.ToTimedelta().total_seconds()) + random.uniform(0, 0.25)
    if error.code() in _NOT_ANSWERED and error_info(error) is None:
        return float(min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
    return None


def _describe(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    details = error.details() or error.code().name
    return f"{info.reason}: {details}" if info is not None and info.reason else details


class PlanningError(Exception):
    """The story could not be planned."""


class JobRunner:
    """Drives claimed jobs through their states."""

    def __init__(
        self,
        store: JobStore,
        backends: Backends,
        relay: EventRelay,
        nc: NATS,
        subjects: Subjects,
        settings: OrchestratorSettings,
    ) -> None:
        self._subjects = subjects
        self._store = store
        self._backends = backends
        self._relay = relay
        self._nc = nc
        self._settings = settings

    async def _emit(self, job_id: uuid.UUID, event: Awaitable[common_pb2.JobEvent | None]) -> None:
        if await event is not None:
            self._relay.kick(job_id)

    async def run(self, job: ClaimedJob) -> None:
        """Runs the job to a terminal state (or raises, leaving it to be taken over)."""
        cancelled = asyncio.Event()

        async def on_control(_msg: Msg) -> None:
            cancelled.set()

        # One cancel channel: the job's control subject. The flag CancelJob stores is read once,
        # after subscribing, for a cancel that came before the subscription.
        subscription = await self._nc.subscribe(self._subjects.control(job.id), cb=on_control)
        try:
            if job.cancel_requested or await self._store.cancel_requested(job.id):
                cancelled.set()
        except BaseException:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            raise
        work = asyncio.create_task(self._advance(job, cancelled))
        stop = asyncio.create_task(cancelled.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                stop.cancel()
                work.result()
                return
            # Cancelled: stop drawing for real, then record the end.
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            await self._ended(job.id, await self._store.finish_job(job.id, cancelled=True))
            log.info("job %s cancelled", job.id)
        finally:
            # Handed back (shutdown, lost lease, an error): the job's work stops with this call,
            # so that no draw of it is started by a process that no longer holds it.
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _advance(self, job: ClaimedJob, cancelled: asyncio.Event) -> None:
        plan = job.plan
        if plan is None:
            await self._emit(job.id, self._store.set_state(job.id, JobState.STATE_PLANNING))
            try:
                plan = await self._plan(job)
            except PlanningError as exc:
                await self._ended(
                    job.id, await self._store.finish_job(job.id, reason=f"planning failed: {exc}")
                )
                return
            await self._emit(job.id, self._store.save_plan(job.id, plan))
        else:
            await self._emit(job.id, self._store.set_state(job.id, JobState.STATE_RENDERING))
        pending = await self._store.pending_versions(job.id)
        sheet_key = await self._character_sheet(job, plan) if pending else ""
        slots = asyncio.Semaphore(self._settings.render_concurrency)
        async with asyncio.TaskGroup() as group:
            for version in pending:
                group.create_task(self._render(job, plan, version, sheet_key, slots, cancelled))
        event = await self._store.finish_job(job.id)
        await self._ended(job.id, event)
        log.info("job %s finished %s", job.id, JobState.Name(event.job_state))

    async def _ended(self, job_id: uuid.UUID, event: common_pb2.JobEvent) -> None:
        """Counts the run's end, then announces it: whoever sees the terminal event sees it counted."""
        failed = (
            await self._store.failed_panel_count(job_id) if event.job_state == JobState.STATE_COMPLETED else 0
        )
        JOBS_FINISHED.labels(finished_label(event.job_state, failed)).inc()
        self._relay.kick(job_id)

    async def _with_retries(self, call: Callable[[int], Awaitable[T]]) -> T:
        """`call(attempt)`, tried again when the renderer says so (see `retry_delay`), at most
        `render_attempts` times; the last error is raised."""
        for attempt in range(self._settings.render_attempts - 1):
            try:
                return await call(attempt)
            except grpc.aio.AioRpcError as exc:
                delay = retry_delay(exc, attempt)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        return await call(self._settings.render_attempts - 1)

    async def _plan(self, job: ClaimedJob) -> common_pb2.ScenePlan:
        request = renderer_pb2.PlanStoryRequest(story=job.story, panel_count=job.panel_count, style=job.style)
        try:
            plan: common_pb2.ScenePlan = await self._with_retries(
                lambda _attempt: self._backends.renderer.PlanStory(
                    request, timeout=self._settings.plan_timeout_seconds
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise PlanningError(_describe(exc)) from exc
        if len(plan.scenes) != job.panel_count:
            raise PlanningError(f"the plan has {len(plan.scenes)} scenes, {job.panel_count} were asked for")
        return plan

    async def _character_sheet(self, job: ClaimedJob, plan: common_pb2.ScenePlan) -> str:
        """The storage key of the job's character sheet, drawing it first when there is none yet.

        A sheet that cannot be drawn does not stop the job: the panels are then
        drawn from the character bible's descriptions alone.
        """
        if job.character_sheet is not None:
            return job.character_sheet.blob_key
        if not plan.characters:
            return ""
        request = renderer_pb2.RenderCharacterSheetRequest(
            job=job_name(job.id),
            characters=plan.characters,
            style=job.style,
            output_blob_key=character_sheet_key(job.id),
            language=plan.language,
        )
        try:
            response: renderer_pb2.RenderCharacterSheetResponse = await self._with_retries(
                lambda _attempt: self._backends.renderer.RenderCharacterSheet(
                    request, timeout=self._settings.render_timeout_seconds
                )
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("character sheet of job %s failed, drawing without it: %s", job.id, _describe(exc))
            return ""
        await self._emit(job.id, self._store.save_character_sheet(job.id, response.image))
        return response.image.blob_key

    async def _render(
        self,
        job: ClaimedJob,
        plan: common_pb2.ScenePlan,
        pending: PendingVersion,
        sheet_key: str,
        slots: asyncio.Semaphore,
        cancelled: asyncio.Event,
    ) -> None:
        async with slots:
            if cancelled.is_set():
                return
            await self._emit(job.id, self._store.start_version(job.id, pending.number, pending.version))
            request = renderer_pb2.RenderPanelRequest(
                job=job_name(job.id),
                scene=pending.scene,
                characters=plan.characters,
                style=job.style,
                instruction=pending.instruction,
                reference_blob_keys=[pending.reference_blob_key] if pending.reference_blob_key else [],
                character_sheet_blob_key=sheet_key,
                previous_version_blob_key=pending.previous_image_key,
                output_blob_key=panel_blob_key(job.id, pending.number, pending.version),
                language=plan.language,
                aspect_ratio=panel_aspect_ratio(job.layout, pending.scene.shot),
                # The stored job keeps the enum as a plain int.
                reading_order=cast("common_pb2.ReadingOrder.ValueType", job.reading_order),
            )
            started = time.perf_counter()

            def attempt_render(attempt: int) -> Awaitable[renderer_pb2.RenderPanelResponse]:
                # Only the first claim of a job's first run, on its first try, knows the panel
                # cannot have been drawn already (by a worker that died, or by an earlier try).
                request.fresh_output = job.attempts == 1 and job.run == 1 and attempt == 0
                return self._backends.renderer.RenderPanel(
                    request, timeout=self._settings.render_timeout_seconds
                )

            try:
                response: renderer_pb2.RenderPanelResponse = await self._with_retries(attempt_render)
            except grpc.aio.AioRpcError as exc:
                reason = _describe(exc)
                log.warning("panel %d of job %s failed: %s", pending.number, job.id, reason)
                PANELS_FINISHED.labels("failed").inc()
                await self._emit(
                    job.id, self._store.fail_version(job.id, pending.number, pending.version, reason)
                )
                return
            if not response.image.blob_key:
                await self._emit(
                    job.id,
                    self._store.fail_version(
                        job.id, pending.number, pending.version, "the renderer returned no image"
                    ),
                )
                return
            PANEL_RENDER_SECONDS.labels(response.backend or "unknown").observe(time.perf_counter() - started)
            PANELS_FINISHED.labels("drawn").inc()
            await self._emit(
                job.id,
                self._store.finish_version(
                    job.id, pending.number, pending.version, response.image, response.art
                ),
            )
