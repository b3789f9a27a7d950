"""An in-process fake gateway for the CLI tests, and the HTTP server behind its signed URLs.

`FakeGateway` is a real grpc.aio server on port 0 implementing SessionService
and JobService from scripts: each `FakeJob` holds the job as it is before and
after its run and the events of the run. WatchJob streams them (optionally
breaking with UNAVAILABLE after a few), GetJob answers with the state the
events have reached, ExportJob and the panels' image URIs point at a small
HTTP file server thread. Every request is recorded so that tests can assert
what the CLI sent. `Cli` runs `mangakai` in-process against it, in a `Workdir`.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status

from mangakai.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from mangakai_cli.__main__ import run

JobState = common_pb2.Job.State
PanelState = common_pb2.PanelVersion.State

PDF_BYTES = b"%PDF-1.7\n% fake manga\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def png_bytes(number: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + f"panel {number}".encode()


class FileServer:
    """A threaded HTTP server that serves registered bytes by path, standing in for signed URLs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                body = files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return f"http://127.0.0.1:{self._server.server_port}{path}?signature=secret"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class FakeJob:
    """A scripted job: how it looks before its run, after it, and the run's events."""

    before: common_pb2.Job
    after: common_pb2.Job
    events: list[common_pb2.JobEvent]
    export_uri: str = ""
    emitted: int = 0
    # A second run that RegeneratePanel starts: its events and the job after it.
    next_run: tuple[list[common_pb2.JobEvent], common_pb2.Job] | None = None

    @property
    def name(self) -> str:
        return self.before.name

    @property
    def uuid(self) -> str:
        return self.before.name.removeprefix("jobs/")

    def snapshot(self) -> common_pb2.Job:
        if self.emitted >= len(self.events):
            return self.after
        job = common_pb2.Job()
        job.CopyFrom(self.before)
        job.last_event_sequence = self.emitted
        return job


def scripted_job(
    files: FileServer,
    *,
    panels: int = 3,
    failed_panels: dict[int, str] | None = None,
    planning_failure: str = "",
    title: str = "Rain over Kyoto",
) -> FakeJob:
    """A job that plans `panels` scenes and draws them, or fails while planning."""
    failed_panels = failed_panels or {}
    job_uuid = str(uuid.uuid4())
    name = f"jobs/{job_uuid}"
    before = common_pb2.Job(name=name, state=JobState.STATE_QUEUED, panel_count=panels)
    after = common_pb2.Job()
    after.CopyFrom(before)
    events: list[common_pb2.JobEvent] = []

    def event(percent: int, state: int, terminal: bool = False, **kind: Any) -> None:
        events.append(
            common_pb2.JobEvent(
                job=name,
                sequence=len(events) + 1,
                job_state=state,  # type: ignore[arg-type]
                progress_percent=percent,
                terminal=terminal,
                **kind,
            )
        )

    event(5, JobState.STATE_PLANNING, state_changed=common_pb2.JobStateChanged(state=JobState.STATE_PLANNING))
    if planning_failure:
        event(
            5,
            JobState.STATE_FAILED,
            terminal=True,
            state_changed=common_pb2.JobStateChanged(state=JobState.STATE_FAILED, reason=planning_failure),
        )
        after.state = JobState.STATE_FAILED
        after.failure_reason = planning_failure
        after.last_event_sequence = len(events)
        return FakeJob(before=before, after=after, events=events)

    plan = common_pb2.ScenePlan(
        title=title,
        language="en",
        characters=[common_pb2.Character(name="Aki", description="short black hair, yellow raincoat")],
        scenes=[
            common_pb2.Scene(
                number=n,
                setting="Kyoto station",
                action=f"Aki waits, beat {n}",
                shot=common_pb2.SHOT_TYPE_MEDIUM,
                dialogue=[common_pb2.DialogueLine(speaker="Aki", text=f"It is still raining ({n})")],
            )
            for n in range(1, panels + 1)
        ],
    )
    event(20, JobState.STATE_PLANNING, plan_ready=plan)
    after.plan.CopyFrom(plan)
    after.title = title
    for n in range(1, panels + 1):
        percent = 20 + 80 * n // panels
        event(
            percent - 5, JobState.STATE_RENDERING, panel_started=common_pb2.PanelStarted(panel=n, version=1)
        )
        panel = after.panels.add(number=n, scene=plan.scenes[n - 1])
        if n in failed_panels:
            version = common_pb2.PanelVersion(
                version=1, state=PanelState.STATE_FAILED, failure_reason=failed_panels[n]
            )
            event(
                percent,
                JobState.STATE_RENDERING,
                panel_failed=common_pb2.PanelFailed(panel=n, version=version),
            )
            panel.state = PanelState.STATE_FAILED
        else:
            uri = files.add(f"/images/{job_uuid}/{n}.png", png_bytes(n))
            image = common_pb2.Image(blob_key=f"k{n}", uri=uri, content_type="image/png", width=64, height=64)
            version = common_pb2.PanelVersion(version=1, state=PanelState.STATE_SUCCEEDED, image=image)
            event(
                percent,
                JobState.STATE_RENDERING,
                panel_finished=common_pb2.PanelFinished(panel=n, version=version),
            )
            panel.state = PanelState.STATE_SUCCEEDED
            panel.current_version = 1
        panel.versions.append(version)
    event(
        100,
        JobState.STATE_COMPLETED,
        terminal=True,
        state_changed=common_pb2.JobStateChanged(state=JobState.STATE_COMPLETED),
    )
    after.state = JobState.STATE_COMPLETED
    after.progress_percent = 100
    after.last_event_sequence = len(events)
    export_uri = files.add(f"/exports/{job_uuid}.pdf", PDF_BYTES)
    return FakeJob(before=before, after=after, events=events, export_uri=export_uri)


def add_regeneration(files: FileServer, job: FakeJob, panel: int) -> None:
    """Scripts a run that draws version 2 of `panel` when RegeneratePanel is called."""
    after = common_pb2.Job()
    after.CopyFrom(job.after)
    first = len(job.events) + 1
    uri = files.add(f"/images/{job.uuid}/{panel}-v2.png", png_bytes(panel * 100))
    version = common_pb2.PanelVersion(
        version=2,
        state=PanelState.STATE_SUCCEEDED,
        instruction="more rain",
        image=common_pb2.Image(uri=uri, content_type="image/png", width=64, height=64),
    )
    target = after.panels[panel - 1]
    target.versions.append(version)
    target.current_version = 2
    target.state = PanelState.STATE_SUCCEEDED
    events = [
        common_pb2.JobEvent(
            job=job.name,
            sequence=first,
            job_state=JobState.STATE_RENDERING,
            progress_percent=50,
            panel_started=common_pb2.PanelStarted(panel=panel, version=2),
        ),
        common_pb2.JobEvent(
            job=job.name,
            sequence=first + 1,
            job_state=JobState.STATE_COMPLETED,
            progress_percent=100,
            terminal=True,
            panel_finished=common_pb2.PanelFinished(panel=panel, version=version),
        ),
    ]
    after.last_event_sequence = first + 1
    job.next_run = (events, after)


def error_status(code: int, message: str, *details: Any) -> status_pb2.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def bad_request(message: str, **violations: str) -> status_pb2.Status:
    return error_status(
        code_pb2.INVALID_ARGUMENT,
        message,
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations.items()
            ]
        ),
    )


def rate_limited(seconds: int) -> status_pb2.Status:
    return error_status(
        code_pb2.RESOURCE_EXHAUSTED,
        "too many requests from this session",
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds)),
    )


@dataclass
class FakeGateway(jobs_pb2_grpc.JobServiceServicer, sessions_pb2_grpc.SessionServiceServicer):
    """SessionService and JobService answering from scripts and recording every request."""

    address: str = ""
    tokens: set[str] = field(default_factory=set)
    session_requests: list[sessions_pb2.CreateSessionRequest] = field(default_factory=list)
    tokens_used: list[str] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    scripts: list[FakeJob] = field(default_factory=list)
    by_request_id: dict[str, str] = field(default_factory=dict)
    create_requests: list[jobs_pb2.CreateJobRequest] = field(default_factory=list)
    watch_requests: list[jobs_pb2.WatchJobRequest] = field(default_factory=list)
    list_requests: list[jobs_pb2.ListJobsRequest] = field(default_factory=list)
    export_requests: list[jobs_pb2.ExportJobRequest] = field(default_factory=list)
    regenerate_requests: list[jobs_pb2.RegeneratePanelRequest] = field(default_factory=list)
    # Failure injection.
    errors: dict[str, status_pb2.Status] = field(default_factory=dict)
    lose_create_replies: int = 0
    break_watch_after: int | None = None
    page_of: list[common_pb2.Job] = field(default_factory=list)

    def add(self, job: FakeJob) -> FakeJob:
        self.scripts.append(job)
        return job

    def existing(self, job: FakeJob) -> FakeJob:
        self.jobs[job.name] = job
        return job

    async def _check(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown session token")
        self.tokens_used.append(token)
        status = self.errors.get(method)
        if status is not None:
            rich = rpc_status.to_status(status)
            await context.abort(rich.code, rich.details, rich.trailing_metadata)

    async def _job(self, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> FakeJob:
        job = self.jobs.get(name)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        assert job is not None
        return job

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sessions_pb2.Session:
        self.session_requests.append(request)
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return sessions_pb2.Session(name=f"sessions/{len(self.session_requests)}", token=token)

    async def CreateJob(
        self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Job:
        self.create_requests.append(request)
        await self._check("CreateJob", context)
        name = self.by_request_id.get(request.request_id)
        if name is None:
            job = self.scripts.pop(0)
            self.jobs[job.name] = job
            self.by_request_id[request.request_id] = name = job.name
        if self.lose_create_replies:
            # The job exists now, but the caller never hears of it.
            self.lose_create_replies -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return self.jobs[name].snapshot()

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Job:
        await self._check("GetJob", context)
        return (await self._job(request.name, context)).snapshot()

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.ListJobsResponse:
        self.list_requests.append(request)
        await self._check("ListJobs", context)
        size = request.page_size or 20
        start = int(request.page_token or 0)
        page = self.page_of[start : start + size]
        more = start + size < len(self.page_of)
        return jobs_pb2.ListJobsResponse(jobs=page, next_page_token=str(start + size) if more else "")

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Job:
        await self._check("CancelJob", context)
        job = (await self._job(request.name, context)).snapshot()
        job.state = JobState.STATE_CANCELLED
        return job

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[common_pb2.JobEvent]:
        self.watch_requests.append(request)
        await self._check("WatchJob", context)
        job = await self._job(request.name, context)
        sent = 0
        for event in job.events:
            if event.sequence <= request.after_sequence:
                continue
            if self.break_watch_after is not None and sent == self.break_watch_after:
                self.break_watch_after = None
                await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway restarting")
            job.emitted = max(job.emitted, event.sequence)
            yield event
            sent += 1
            await asyncio.sleep(0.01)

    async def RegeneratePanel(
        self, request: jobs_pb2.RegeneratePanelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Panel:
        self.regenerate_requests.append(request)
        await self._check("RegeneratePanel", context)
        job = await self._job(request.name, context)
        if job.next_run is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not scripted")
        assert job.next_run is not None
        events, after = job.next_run
        job.next_run = None
        job.events.extend(events)
        job.after = after
        panel = common_pb2.Panel(number=request.panel, state=PanelState.STATE_PENDING)
        panel.versions.add(version=2, state=PanelState.STATE_PENDING, instruction=request.instruction)
        return panel

    async def ExportJob(
        self, request: jobs_pb2.ExportJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.Export:
        self.export_requests.append(request)
        await self._check("ExportJob", context)
        job = await self._job(request.name, context)
        if job.snapshot().state != JobState.STATE_COMPLETED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job is not completed")
        return jobs_pb2.Export(format=request.format, uri=job.export_uri, page_count=2)


class Workdir:
    """The directory the CLI runs in; plain (blocking) file access for the tests' set-up and checks."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    def write_bytes(self, name: str, data: bytes) -> None:
        (self.path / name).write_bytes(data)

    def read(self, *parts: str) -> bytes:
        return self.path.joinpath(*parts).read_bytes()

    def exists(self, *parts: str) -> bool:
        return self.path.joinpath(*parts).exists()

    def names(self, *parts: str) -> list[str]:
        return sorted(p.name for p in self.path.joinpath(*parts).iterdir())

    def partial_downloads(self) -> list[Path]:
        return list(self.path.rglob("*.part"))


@dataclass
class Cli:
    """Runs `mangakai` in-process against the fake gateway, with a private session file."""

    gateway: FakeGateway
    session_file: Path
    work: Workdir

    async def __call__(self, *argv: str) -> int:
        return await run(["--gateway", self.gateway.address, "--session-file", str(self.session_file), *argv])
