"""SessionService and JobService over gRPC-Web, Connect and gRPC (connectrpc), for browsers.

The adapters call the same `SessionApi`/`JobApi` as the grpc.aio servicers,
with the caller's `authorization` HTTP header and address, so authentication,
validation, rate limits and errors are the same on every protocol; calls are
measured and traced like gRPC calls (connect_telemetry.py). Errors become `ConnectError`s with
the same code, message and google.rpc details (BadRequest, RetryInfo,
ErrorInfo) as the gRPC status the grpc.aio server would send.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.request import RequestContext

from mangakai.v1 import common_pb2, jobs_connect, jobs_pb2, sessions_connect, sessions_pb2
from mangakai_gateway.client_address import host_of
from mangakai_gateway.connect_errors import connect_error
from mangakai_gateway.connect_telemetry import ConnectTelemetry
from mangakai_gateway.json_codec import ProtoJsonCodec
from mangakai_gateway.servicer import Caller, JobApi, SessionApi
from mangakai_runtime.server import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _errors(method: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise connect_error(exc, method) from None


def _caller(ctx: RequestContext[Any, Any]) -> Caller:
    headers = ctx.request_headers
    return Caller(
        authorization=headers.get("authorization") or "",
        peer_host=host_of(ctx.client_address or ""),
        # Several X-Forwarded-For lines are one list, in order.
        forwarded_for=", ".join(headers.getall("x-forwarded-for")),
    )


class SessionConnectService:
    """mangakai.v1.SessionService for connectrpc."""

    def __init__(self, api: SessionApi) -> None:
        self._api = api

    async def create_session(
        self,
        request: sessions_pb2.CreateSessionRequest,
        ctx: RequestContext[sessions_pb2.CreateSessionRequest, sessions_pb2.Session],
    ) -> sessions_pb2.Session:
        with _errors("CreateSession"):
            return await self._api.create_session(request, _caller(ctx))


class JobConnectService:
    """mangakai.v1.JobService for connectrpc."""

    def __init__(self, api: JobApi) -> None:
        self._api = api

    async def create_job(
        self,
        request: jobs_pb2.CreateJobRequest,
        ctx: RequestContext[jobs_pb2.CreateJobRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        with _errors("CreateJob"):
            return await self._api.create_job(request, _caller(ctx))

    async def get_job(
        self, request: jobs_pb2.GetJobRequest, ctx: RequestContext[jobs_pb2.GetJobRequest, common_pb2.Job]
    ) -> common_pb2.Job:
        with _errors("GetJob"):
            return await self._api.get_job(request, _caller(ctx))

    async def list_jobs(
        self,
        request: jobs_pb2.ListJobsRequest,
        ctx: RequestContext[jobs_pb2.ListJobsRequest, jobs_pb2.ListJobsResponse],
    ) -> jobs_pb2.ListJobsResponse:
        with _errors("ListJobs"):
            return await self._api.list_jobs(request, _caller(ctx))

    async def cancel_job(
        self,
        request: jobs_pb2.CancelJobRequest,
        ctx: RequestContext[jobs_pb2.CancelJobRequest, common_pb2.Job],
    ) -> common_pb2.Job:
        with _errors("CancelJob"):
            return await self._api.cancel_job(request, _caller(ctx))

    async def watch_job(
        self,
        request: jobs_pb2.WatchJobRequest,
        ctx: RequestContext[jobs_pb2.WatchJobRequest, common_pb2.JobEvent],
    ) -> AsyncIterator[common_pb2.JobEvent]:
        with _errors("WatchJob"):
            async for event in self._api.watch_job(request, _caller(ctx)):
                yield event

    async def regenerate_panel(
        self,
        request: jobs_pb2.RegeneratePanelRequest,
        ctx: RequestContext[jobs_pb2.RegeneratePanelRequest, common_pb2.Panel],
    ) -> common_pb2.Panel:
        with _errors("RegeneratePanel"):
            return await self._api.regenerate_panel(request, _caller(ctx))

    async def set_current_panel_version(
        self,
        request: jobs_pb2.SetCurrentPanelVersionRequest,
        ctx: RequestContext[jobs_pb2.SetCurrentPanelVersionRequest, common_pb2.Panel],
    ) -> common_pb2.Panel:
        with _errors("SetCurrentPanelVersion"):
            return await self._api.set_current_panel_version(request, _caller(ctx))

    async def export_job(
        self,
        request: jobs_pb2.ExportJobRequest,
        ctx: RequestContext[jobs_pb2.ExportJobRequest, jobs_pb2.Export],
    ) -> jobs_pb2.Export:
        with _errors("ExportJob"):
            return await self._api.export_job(request, _caller(ctx))


def applications(
    sessions: SessionApi, jobs: JobApi
) -> list[sessions_connect.SessionServiceASGIApplication | jobs_connect.JobServiceASGIApplication]:
    """The connectrpc ASGI applications of the public services."""
    # First in the list, so connectrpc runs it before reading the body: malformed requests count too.
    interceptors = [ConnectTelemetry()]
    codecs = [google_protobuf_binary_codec(), ProtoJsonCodec()]
    return [
        sessions_connect.SessionServiceASGIApplication(
            SessionConnectService(sessions),
            interceptors=interceptors,
            codecs=codecs,
            read_max_bytes=MAX_MESSAGE_BYTES,
        ),
        jobs_connect.JobServiceASGIApplication(
            JobConnectService(jobs),
            interceptors=interceptors,
            codecs=codecs,
            read_max_bytes=MAX_MESSAGE_BYTES,
        ),
    ]
