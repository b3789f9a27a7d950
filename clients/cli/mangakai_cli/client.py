"""The CLI's calls to the gateway: session token, auth metadata, deadlines, retries.

Every JobService call carries `authorization: Bearer <token>`. The token is
created with SessionService.CreateSession on first use against a gateway and
kept in the session file. Calls are retried on UNAVAILABLE, which the gateway
returns only when a retry is safe, unless the call would not be idempotent
(RegeneratePanel). WatchJob resumes after the last event it delivered.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from mangakai.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from mangakai_cli.config import SessionStore

JOB_PREFIX = "jobs/"
UNARY_DEADLINE_S = 30.0
EXPORT_DEADLINE_S = 300.0
# Room for a job with two dozen panels, their versions and a full scene plan.
MAX_RECEIVE_BYTES = 32 * 1024 * 1024


def _client_label() -> str:
    try:
        version = importlib.metadata.version("mangakai")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"mangakai-cli/{version}"


CLIENT_LABEL = _client_label()


def job_name(ref: str) -> str:
    """The resource name "jobs/{uuid}" for a job given by name or by bare uuid."""
    ref = ref.strip()
    job_id = ref.removeprefix(JOB_PREFIX)
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise ValueError(f"{ref!r} is neither a job name (jobs/UUID) nor a job id (UUID)") from None
    return JOB_PREFIX + job_id


def job_id(name: str) -> str:
    """The uuid part of a job name."""
    return name.removeprefix(JOB_PREFIX)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: `initial_s`, doubling up to `max_s`, for `attempts` tries in all."""

    attempts: int
    initial_s: float = 0.25
    max_s: float = 8.0

    def delay(self, failures: int) -> float:
        """The pause after the `failures`-th consecutive failure (1-based)."""
        base = min(self.max_s, self.initial_s * 2.0 ** (failures - 1))
        return base * random.uniform(0.8, 1.0)


# A unary call that keeps failing is more likely a gateway that is not running
# than one that is restarting: give up after a few seconds.
UNARY_RETRY = RetryPolicy(attempts=5)
# A live watch is worth waiting for across a gateway restart (~45 s in all).
WATCH_RETRY = RetryPolicy(attempts=10)


def _ignore(_: str) -> None:
    pass


class GatewayClient:
    """An open connection to the gateway, acting for this user's session there."""

    def __init__(
        self,
        address: str,
        sessions: SessionStore,
        *,
        notice: Callable[[str], None] = _ignore,
        unary_retry: RetryPolicy = UNARY_RETRY,
        watch_retry: RetryPolicy = WATCH_RETRY,
    ) -> None:
        self.address = address
        self._sessions = sessions
        self._notice = notice
        self._unary_retry = unary_retry
        self._watch_retry = watch_retry
        self._token: str | None = None
        self._token_is_fresh = False
        self._channel: grpc.aio.Channel | None = None
        self._jobs: jobs_pb2_grpc.JobServiceAsyncStub | None = None
        self._session_stub: sessions_pb2_grpc.SessionServiceAsyncStub | None = None

    async def __aenter__(self) -> GatewayClient:
        self._channel = grpc.aio.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        )
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._session_stub = sessions_pb2_grpc.SessionServiceStub(self._channel)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._jobs = self._session_stub = None

    # -- JobService ------------------------------------------------------------------------------

    async def create_job(self, request: jobs_pb2.CreateJobRequest) -> common_pb2.Job:
        """CreateJob; give the request a request_id so that retrying it cannot create a second job."""
        if not request.request_id:
            raise ValueError("CreateJob needs a request_id to be retried safely")
        job: common_pb2.Job = await self._call(self._stub().CreateJob, request, retry=True)
        return job

    async def get_job(self, name: str) -> common_pb2.Job:
        job: common_pb2.Job = await self._call(
            self._stub().GetJob, jobs_pb2.GetJobRequest(name=name), retry=True
        )
        return job

    async def list_jobs(self, page_size: int = 0, page_token: str = "") -> jobs_pb2.ListJobsResponse:
        request = jobs_pb2.ListJobsRequest(page_size=page_size, page_token=page_token)
        response: jobs_pb2.ListJobsResponse = await self._call(self._stub().ListJobs, request, retry=True)
        return response

    async def cancel_job(self, name: str) -> common_pb2.Job:
        request = jobs_pb2.CancelJobRequest(name=name)
        job: common_pb2.Job = await self._call(self._stub().CancelJob, request, retry=True)
        return job

    async def regenerate_panel(
        self, name: str, panel: int, instruction: str, reference_image: bytes = b""
    ) -> common_pb2.Panel:
        request = jobs_pb2.RegeneratePanelRequest(
            name=name, panel=panel, instruction=instruction, reference_image=reference_image
        )
        # Not retried: a retry after a lost reply would draw a second new version.
        result: common_pb2.Panel = await self._call(self._stub().RegeneratePanel, request, retry=False)
        return result

    async def export_job(
        self, name: str, export_format: common_pb2.ExportFormat.ValueType
    ) -> jobs_pb2.Export:
        request = jobs_pb2.ExportJobRequest(name=name, format=export_format)
        export: jobs_pb2.Export = await self._call(
            self._stub().ExportJob, request, retry=True, deadline=EXPORT_DEADLINE_S
        )
        return export

    async def watch(self, name: str, after_sequence: int = 0) -> AsyncIterator[common_pb2.JobEvent]:
        """The job's events after `after_sequence`, up to and including the next terminal event.

        When the stream breaks with UNAVAILABLE it is reopened after the last
        event delivered, with exponential backoff; consecutive failures without
        a single event in between count towards the retry limit.
        """
        last = after_sequence
        failures = 0
        while True:
            request = jobs_pb2.WatchJobRequest(name=name, after_sequence=last)
            call = self._stub().WatchJob(request, metadata=await self._metadata())
            try:
                async for event in call:
                    failures = 0
                    if event.sequence <= last:
                        continue  # already delivered before a reconnect
                    last = event.sequence
                    yield event
                    if event.terminal:
                        return
                # The gateway ends the stream after the terminal event; an earlier
                # clean end means it went away between events.
                raise _StreamEnded()
            except (grpc.aio.AioRpcError, _StreamEnded) as exc:
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                failures += 1
                if failures >= self._watch_retry.attempts:
                    if isinstance(exc, _StreamEnded):
                        raise ConnectionError(f"the event stream of {name} keeps ending early") from None
                    raise
                delay = self._watch_retry.delay(failures)
                reason = "ended early" if isinstance(exc, _StreamEnded) else f"broke: {exc.details()}"
                self._notice(f"event stream {reason}; resuming after event {last} in {delay:.1f} s")
                await asyncio.sleep(delay)
            finally:
                call.cancel()

    # -- sessions and plumbing -------------------------------------------------------------------

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {await self._session_token()}"),)

    async def _session_token(self) -> str:
        if self._token is None:
            stored = self._sessions.token(self.address)
            if stored is not None:
                self._token, self._token_is_fresh = stored, False
            else:
                await self._create_session()
        assert self._token is not None
        return self._token

    async def _create_session(self) -> None:
        assert self._session_stub is not None, "use GatewayClient as an async context manager"
        request = sessions_pb2.CreateSessionRequest(client=CLIENT_LABEL)
        session: sessions_pb2.Session = await self._call(
            self._session_stub.CreateSession, request, retry=True, authenticated=False
        )
        self._sessions.save(self.address, session.token, session.name)
        self._token, self._token_is_fresh = session.token, True

    def _stub(self) -> jobs_pb2_grpc.JobServiceAsyncStub:
        assert self._jobs is not None, "use GatewayClient as an async context manager"
        return self._jobs

    async def _call(
        self,
        method: Any,
        request: Any,
        *,
        retry: bool,
        deadline: float = UNARY_DEADLINE_S,
        authenticated: bool = True,
    ) -> Any:
        failures = 0
        renewed = False
        while True:
            metadata = await self._metadata() if authenticated else ()
            try:
                return await method(request, timeout=deadline, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if (
                    code == grpc.StatusCode.UNAUTHENTICATED
                    and authenticated
                    and not renewed
                    and not self._token_is_fresh
                ):
                    # The saved session is unknown to this gateway (e.g. its database was reset).
                    renewed = True
                    self._notice(f"the saved session for {self.address} was not accepted; starting a new one")
                    self._sessions.forget(self.address)
                    self._token = None
                    await self._create_session()
                    continue
                if code != grpc.StatusCode.UNAVAILABLE or not retry:
                    raise
                failures += 1
                if failures >= self._unary_retry.attempts:
                    raise
                delay = self._unary_retry.delay(failures)
                self._notice(
                    f"gateway unavailable; retrying in {delay:.1f} s (attempt {failures + 1} of {self._unary_retry.attempts})"
                )
                await asyncio.sleep(delay)


class _StreamEnded(Exception):
    """WatchJob ended without a terminal event."""
