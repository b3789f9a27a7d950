"""The public API: SessionService and JobService, whatever the protocol.

`SessionApi` and `JobApi` hold the one implementation: each method
authenticates the caller from its `authorization` header, validates the
request (INVALID_ARGUMENT naming the field, before anything is written),
counts the calls that start expensive work against the shared rate limits and
forwards the request to the orchestrator on behalf of the caller's session;
image references in answers get signed URLs. Errors are raised as
`mangakai_runtime.errors.ServiceError` (or pass through from the orchestrator).

`SessionServicer` and `JobServicer` serve them over gRPC (grpc.aio); the
web listener serves the same objects over gRPC-Web and Connect (connect.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from mangakai.v1 import (
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from mangakai_gateway import validation
from mangakai_gateway.ceiling import JobsInFlightCeiling
from mangakai_gateway.client_address import ClientAddresses, grpc_peer_host
from mangakai_gateway.ratelimit import RateLimits
from mangakai_gateway.sessions import SessionStore
from mangakai_gateway.settings import GatewaySettings
from mangakai_gateway.urls import UrlSigner
from mangakai_gateway.watch import JobEventHub
from mangakai_runtime.clients import SESSION_METADATA_KEY
from mangakai_runtime.log import job_id_var

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Metadata = tuple[tuple[str, str], ...]
TERMINAL = (
    common_pb2.Job.State.STATE_COMPLETED,
    common_pb2.Job.State.STATE_FAILED,
    common_pb2.Job.State.STATE_CANCELLED,
)


@dataclass(frozen=True)
class Caller:
    """Who makes a call, whatever the protocol: its `authorization` header and where it comes from."""

    authorization: str
    peer_host: str
    forwarded_for: str = ""


class SessionApi:
    """Hands out anonymous sessions, a limited number per client address."""

    def __init__(self, sessions: SessionStore, limits: RateLimits, addresses: ClientAddresses) -> None:
        self._sessions = sessions
        self._limits = limits
        self._addresses = addresses

    async def create_session(
        self, request: sessions_pb2.CreateSessionRequest, caller: Caller
    ) -> sessions_pb2.Session:
        validation.create_session(request)
        await self._limits.check_new_session(self._addresses.resolve(caller.peer_host, caller.forwarded_for))
        return await self._sessions.create(request.client)


class JobApi:
    """The jobs API, scoped to the session named by the caller's `authorization` header."""

    def __init__(
        self,
        sessions: SessionStore,
        orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub,
        hub: JobEventHub,
        signer: UrlSigner,
        limits: RateLimits,
        addresses: ClientAddresses,
        ceiling: JobsInFlightCeiling,
        settings: GatewaySettings,
    ) -> None:
        self._ceiling = ceiling
        self._sessions = sessions
        self._orchestrator = orchestrator
        self._hub = hub
        self._signer = signer
        self._timeout = settings.call_timeout_seconds
        self._export_timeout = settings.export_timeout_seconds
        self._limits = limits
        self._addresses = addresses

    async def _as(self, caller: Caller) -> tuple[uuid.UUID, Metadata]:
        session = await self._sessions.authenticate_header(caller.authorization)
        return session, ((SESSION_METADATA_KEY, str(session)),)

    async def _count_expensive_call(self, session: uuid.UUID, caller: Caller) -> None:
        address = self._addresses.resolve(caller.peer_host, caller.forwarded_for)
        await self._limits.check(session, address)

    async def create_job(self, request: jobs_pb2.CreateJobRequest, caller: Caller) -> common_pb2.Job:
        session, metadata = await self._as(caller)
        validation.create_job(request)
        await self._count_expensive_call(session, caller)
        await self._ceiling.check()
        job: common_pb2.Job = await self._orchestrator.CreateJob(
            request, metadata=metadata, timeout=self._timeout
        )
        return job

    async def get_job(self, request: jobs_pb2.GetJobRequest, caller: Caller) -> common_pb2.Job:
        _, metadata = await self._as(caller)
        job_id_var.set(str(validation.job_id(request.name)))
        job: common_pb2.Job = await self._orchestrator.GetJob(
            request, metadata=metadata, timeout=self._timeout
        )
        return await self._signer.fill_job(job)

    async def list_jobs(self, request: jobs_pb2.ListJobsRequest, caller: Caller) -> jobs_pb2.ListJobsResponse:
        _, metadata = await self._as(caller)
        validation.list_jobs(request)
        response: jobs_pb2.ListJobsResponse = await self._orchestrator.ListJobs(
            request, metadata=metadata, timeout=self._timeout
        )
        return await self._signer.fill_jobs(response)

    async def cancel_job(self, request: jobs_pb2.CancelJobRequest, caller: Caller) -> common_pb2.Job:
        _, metadata = await self._as(caller)
        job_id_var.set(str(validation.job_id(request.name)))
        job: common_pb2.Job = await self._orchestrator.CancelJob(
            request, metadata=metadata, timeout=self._timeout
        )
        return await self._signer.fill_job(job)

    async def watch_job(
        self, request: jobs_pb2.WatchJobRequest, caller: Caller
    ) -> AsyncIterator[common_pb2.JobEvent]:
        _, metadata = await self._as(caller)
        job_id = validation.watch_job(request)
        job_id_var.set(str(job_id))
        # Also proves the job belongs to the caller (NOT_FOUND otherwise).
        job: common_pb2.Job = await self._orchestrator.GetJob(
            jobs_pb2.GetJobRequest(name=request.name), metadata=metadata, timeout=self._timeout
        )
        if job.state in TERMINAL and request.after_sequence >= job.last_event_sequence:
            return

        async def fill_gap(ident: uuid.UUID, after: int) -> list[common_pb2.JobEvent]:
            response: orchestrator_pb2.ListJobEventsResponse = await self._orchestrator.ListJobEvents(
                orchestrator_pb2.ListJobEventsRequest(name=f"jobs/{ident}", after_sequence=after),
                metadata=metadata,
                timeout=self._timeout,
            )
            return list(response.events)

        try:
            async for event in self._hub.watch(job_id, request.after_sequence, fill_gap):
                yield await self._signer.fill_event(event)
                # The run in progress when the watch began (or a later one) has ended.
                if event.terminal and event.sequence >= job.last_event_sequence:
                    return
        except (asyncio.CancelledError, GeneratorExit):
            # The client hung up or its deadline passed: an everyday event, not an error.
            log.info("client stopped watching %s", request.name)
            raise

    async def regenerate_panel(
        self, request: jobs_pb2.RegeneratePanelRequest, caller: Caller
    ) -> common_pb2.Panel:
        session, metadata = await self._as(caller)
        job_id_var.set(str(validation.regenerate_panel(request)))
        await self._count_expensive_call(session, caller)
        await self._ceiling.check()
        panel: common_pb2.Panel = await self._orchestrator.RegeneratePanel(
            request, metadata=metadata, timeout=self._timeout
        )
        return await self._signer.fill_panel(panel)

    async def set_current_panel_version(
        self, request: jobs_pb2.SetCurrentPanelVersionRequest, caller: Caller
    ) -> common_pb2.Panel:
        _, metadata = await self._as(caller)
        job_id_var.set(str(validation.set_current_panel_version(request)))
        panel: common_pb2.Panel = await self._orchestrator.SetCurrentPanelVersion(
            request, metadata=metadata, timeout=self._timeout
        )
        return await self._signer.fill_panel(panel)

    async def export_job(self, request: jobs_pb2.ExportJobRequest, caller: Caller) -> jobs_pb2.Export:
        session, metadata = await self._as(caller)
        job_id_var.set(str(validation.export_job(request)))
        await self._count_expensive_call(session, caller)
        export: jobs_pb2.Export = await self._orchestrator.ExportJob(
            request, metadata=metadata, timeout=self._export_timeout
        )
        signed = await self._signer.sign_keys([export.blob.key])
        uri, expires = signed[export.blob.key]
        export.uri = uri
        export.uri_expire_time.FromSeconds(int(expires))
        return export


def _caller(context: Context) -> Caller:
    metadata = [(key, str(value)) for key, value in context.invocation_metadata() or ()]
    return Caller(
        authorization=next((value for key, value in metadata if key == "authorization"), ""),
        peer_host=grpc_peer_host(context.peer() or ""),
        # Several x-forwarded-for entries are one list, in order.
        forwarded_for=", ".join(value for key, value in metadata if key == "x-forwarded-for"),
    )


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    """SessionService over gRPC."""

    def __init__(self, api: SessionApi) -> None:
        self._api = api

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        return await self._api.create_session(request, _caller(context))


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    """JobService over gRPC."""

    def __init__(self, api: JobApi) -> None:
        self._api = api

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> common_pb2.Job:
        return await self._api.create_job(request, _caller(context))

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> common_pb2.Job:
        return await self._api.get_job(request, _caller(context))

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        return await self._api.list_jobs(request, _caller(context))

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> common_pb2.Job:
        return await self._api.cancel_job(request, _caller(context))

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[common_pb2.JobEvent]:
        async for event in self._api.watch_job(request, _caller(context)):
            yield event

    async def RegeneratePanel(
        self, request: jobs_pb2.RegeneratePanelRequest, context: Context
    ) -> common_pb2.Panel:
        return await self._api.regenerate_panel(request, _caller(context))

    async def SetCurrentPanelVersion(
        self, request: jobs_pb2.SetCurrentPanelVersionRequest, context: Context
    ) -> common_pb2.Panel:
        return await self._api.set_current_panel_version(request, _caller(context))

    async def ExportJob(self, request: jobs_pb2.ExportJobRequest, context: Context) -> jobs_pb2.Export:
        return await self._api.export_job(request, _caller(context))
