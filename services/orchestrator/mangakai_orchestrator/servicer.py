"""The orchestrator's gRPC API: translates requests to job store calls and back.

Called by the gateway only; every call names the owning session in the
`x-mangakai-session` metadata and sees only that session's jobs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mangakai.v1 import common_pb2, jobs_pb2, orchestrator_pb2, orchestrator_pb2_grpc, renderer_pb2
from mangakai_orchestrator.clients import Backends
from mangakai_orchestrator.events import EventRelay, publish_work
from mangakai_orchestrator.exports import ExportCache
from mangakai_orchestrator.outbox import EventOutbox
from mangakai_orchestrator.retention import RetentionSweeper
from mangakai_orchestrator.store import (
    JobStateError,
    JobStore,
    PanelNumberError,
    VersionNotDrawnError,
    state_word,
)
from mangakai_runtime.clients import SESSION_METADATA_KEY
from mangakai_runtime.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from mangakai_runtime.log import job_id_var
from mangakai_runtime.subjects import Subjects

log = logging.getLogger(__name__)

JobState = common_pb2.Job.State
Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PANELS = 6
DEFAULT_PAGE_SIZE = 20
_CONTENT_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp"}


def _session(context: Context) -> uuid.UUID:
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_METADATA_KEY:
            try:
                return uuid.UUID(str(value))
            except ValueError:
                break
    raise Unauthenticated("missing or malformed session metadata")


def _job_id(name: str) -> uuid.UUID:
    prefix, _, raw = name.partition("/")
    try:
        if prefix != "jobs":
            raise ValueError(name)
        job_id = uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument([FieldViolation("name", "must be jobs/{uuid}")]) from None
    job_id_var.set(str(job_id))
    return job_id


def _encode_cursor(cursor: tuple[datetime, uuid.UUID]) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0].isoformat()}|{cursor[1]}".encode()).decode()


def _decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, _, ident = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError(when)
        # A crafted offset can push the moment out of range once in UTC (year 1 at +14:00).
        return moment.astimezone(UTC), uuid.UUID(ident)
    except (ValueError, OverflowError):
        raise InvalidArgument([FieldViolation("page_token", "not a token returned by ListJobs")]) from None


def _same_request(request: jobs_pb2.CreateJobRequest, job: common_pb2.Job) -> bool:
    """Whether `job`, found by the request's request_id, was created by this same request (AIP-155)."""
    asked = (request.story, request.panel_count, request.style, request.layout, request.reading_order)
    return asked == (job.story, job.panel_count, job.style, job.layout, job.reading_order)


def _content_type(data: bytes) -> str:
    for magic, kind in _CONTENT_TYPES.items():
        if data.startswith(magic):
            return kind
    return "application/octet-stream"


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """The job operations behind the public API."""

    def __init__(
        self,
        store: JobStore,
        outbox: EventOutbox,
        exports: ExportCache,
        backends: Backends,
        relay: EventRelay,
        nc: NATS,
        js: JetStreamContext,
        subjects: Subjects,
        retention: RetentionSweeper | None = None,
    ) -> None:
        self._retention = retention
        self._subjects = subjects
        self._store = store
        self._outbox = outbox
        self._exports = exports
        self._backends = backends
        self._relay = relay
        self._nc = nc
        self._js = js

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> common_pb2.Job:
        session = _session(context)
        normalized = jobs_pb2.CreateJobRequest()
        normalized.CopyFrom(request)
        normalized.panel_count = request.panel_count or DEFAULT_PANELS
        normalized.layout = request.layout or common_pb2.PAGE_LAYOUT_CLASSIC
        normalized.reading_order = request.reading_order or common_pb2.READING_ORDER_RIGHT_TO_LEFT
        job, created = await self._store.create_job(session, normalized)
        job_id = _job_id(job.name)
        if not created and not _same_request(normalized, job):
            raise FailedPrecondition(
                f"request_id {request.request_id!r} was already used for another request ({job.name}); "
                "send a new request_id for a new job",
                reason="REQUEST_ID_REUSED",
                metadata={"job": job.name},
            )
        if created:
            self._relay.kick(job_id)
            try:
                await publish_work(self._js, self._subjects, job_id, 1)
            except Exception:
                # Accepted all the same: the stale-job sweep queues it once NATS is back.
                log.exception("could not queue job %s", job_id)
            log.info("job %s created with %d panels", job_id, job.panel_count)
        return job

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> common_pb2.Job:
        job = await self._store.get_job(_session(context), _job_id(request.name))
        if job is None:
            raise NotFound(f"{request.name} not found")
        return job

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        session = _session(context)
        after = _decode_cursor(request.page_token) if request.page_token else None
        jobs, cursor = await self._store.list_jobs(session, request.page_size or DEFAULT_PAGE_SIZE, after)
        return jobs_pb2.ListJobsResponse(jobs=jobs, next_page_token=_encode_cursor(cursor) if cursor else "")

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> common_pb2.Job:
        job_id = _job_id(request.name)
        job, notify = await self._store.request_cancel(_session(context), job_id)
        if job is None:
            raise NotFound(f"{request.name} not found")
        if job.state in (JobState.STATE_COMPLETED, JobState.STATE_FAILED) and not notify:
            raise FailedPrecondition(f"{request.name} has already ended ({state_word(job.state)})")
        # Told even when no worker holds the job: draws of it may still run in a renderer
        # (they outlive their caller), and the renderers stop them on this subject too.
        await self._nc.publish(self._subjects.control(job_id), b"cancel")
        self._relay.kick(job_id)
        return job

    async def RegeneratePanel(
        self, request: jobs_pb2.RegeneratePanelRequest, context: Context
    ) -> common_pb2.Panel:
        session = _session(context)
        job_id = _job_id(request.name)
        job = await self._store.get_job(session, job_id, full=False)
        if job is None:
            raise NotFound(f"{request.name} not found")
        # Checked again under the row lock by add_panel_version; checked here first so that a
        # refused request stores no reference image.
        if job.state not in (JobState.STATE_COMPLETED, JobState.STATE_FAILED) or not job.panels:
            raise FailedPrecondition(
                f"{request.name} is {state_word(job.state)}; panels can be regenerated once the job "
                "has completed or failed after planning"
            )
        if not 1 <= request.panel <= job.panel_count:
            raise InvalidArgument([FieldViolation("panel", f"this job has panels 1 to {job.panel_count}")])
        reference_key = ""
        if request.reference_image:
            digest = hashlib.sha256(request.reference_image).hexdigest()
            reference_key = f"jobs/{job_id}/references/{digest}"
            await self._backends.blobs.put(
                reference_key, _content_type(request.reference_image), request.reference_image
            )
        try:
            panel = await self._store.add_panel_version(
                session, job_id, request.panel, request.instruction, reference_key
            )
        except LookupError:
            raise NotFound(f"{request.name} not found") from None
        except JobStateError as exc:
            raise FailedPrecondition(str(exc)) from None
        except PanelNumberError:
            raise InvalidArgument(
                [FieldViolation("panel", f"this job has panels 1 to {job.panel_count}")]
            ) from None
        self._relay.kick(job_id)
        latest = panel.versions[-1].version
        try:
            await publish_work(
                self._js, self._subjects, job_id, 0, dedupe_suffix=f":panel:{request.panel}:v{latest}"
            )
        except Exception:
            log.exception("could not queue the regeneration of job %s", job_id)
        return panel

    async def SetCurrentPanelVersion(
        self, request: jobs_pb2.SetCurrentPanelVersionRequest, context: Context
    ) -> common_pb2.Panel:
        session = _session(context)
        job_id = _job_id(request.name)
        try:
            return await self._store.set_current_version(session, job_id, request.panel, request.version)
        except LookupError:
            raise NotFound(f"{request.name} not found") from None
        except PanelNumberError:
            raise InvalidArgument(
                [FieldViolation("panel", f"the job has no panel {request.panel}")]
            ) from None
        except VersionNotDrawnError as exc:
            raise InvalidArgument(
                [FieldViolation("version", f"{exc}; choose a version that SUCCEEDED")]
            ) from None

    async def ExportJob(self, request: jobs_pb2.ExportJobRequest, context: Context) -> jobs_pb2.Export:
        session = _session(context)
        job_id = _job_id(request.name)
        inputs = await self._store.export_inputs(session, job_id)
        if inputs is None:
            raise NotFound(f"{request.name} not found")
        job, images = inputs
        if job.state != JobState.STATE_COMPLETED or not images:
            raise FailedPrecondition(
                f"{request.name} is {state_word(job.state)}; only completed jobs with drawn panels can be exported"
            )
        fingerprint = hashlib.sha256(
            "|".join(
                [
                    str(request.format),
                    str(job.layout),
                    str(job.reading_order),
                    job.title,
                    *(i.sha256 or i.blob_key for i in images),
                ]
            ).encode()
        ).hexdigest()
        cached = await self._exports.cached_export(job_id, request.format, fingerprint)
        if cached is not None and await self._backends.blobs.stat(cached.blob.key) is not None:
            return jobs_pb2.Export(format=request.format, blob=cached.blob, page_count=cached.page_count)
        extension = "pdf" if request.format == common_pb2.EXPORT_FORMAT_PDF else "cbz"
        response: renderer_pb2.ComposeDocumentResponse = await self._backends.renderer.ComposeDocument(
            renderer_pb2.ComposeDocumentRequest(
                job=job.name,
                format=request.format,
                title=job.title,
                panel_blob_keys=[i.blob_key for i in images],
                layout=job.layout,
                reading_order=job.reading_order,
                output_blob_key=f"jobs/{job_id}/exports/{fingerprint[:32]}.{extension}",
                language=job.plan.language,
            ),
            timeout=300,
        )
        await self._exports.save_export(
            job_id, request.format, fingerprint, response.blob, response.page_count
        )
        return jobs_pb2.Export(format=request.format, blob=response.blob, page_count=response.page_count)

    async def ListJobEvents(
        self, request: orchestrator_pb2.ListJobEventsRequest, context: Context
    ) -> orchestrator_pb2.ListJobEventsResponse:
        session = _session(context)
        job_id = _job_id(request.name)
        if await self._store.get_job(session, job_id, full=False) is None:
            raise NotFound(f"{request.name} not found")
        return orchestrator_pb2.ListJobEventsResponse(
            events=await self._outbox.events_after(job_id, request.after_sequence)
        )

    async def SweepRetention(
        self, request: orchestrator_pb2.SweepRetentionRequest, context: Context
    ) -> orchestrator_pb2.SweepRetentionResponse:
        if self._retention is None:
            raise FailedPrecondition("retention is not configured on this replica")
        report = await self._retention.sweep()
        return orchestrator_pb2.SweepRetentionResponse(
            expired_jobs=report.expired_jobs,
            partial_jobs=report.partial_jobs,
            blobs_deleted=report.blobs_deleted,
        )
