"""Domain errors and their mapping to gRPC status with google.rpc details.

Services raise these exceptions; `ErrorInterceptor` turns them into a status
with `BadRequest`, `ErrorInfo` or `RetryInfo` details (AIP-193). Errors from a
downstream service pass through with their details; anything unexpected is
INTERNAL with a log line, never a stack trace sent to the client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import nats.errors
import nats.js.errors
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mangakai_runtime.handlers import guarded

log = logging.getLogger(__name__)

DOMAIN = "mangakai.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request."""

    field: str
    description: str


class ServiceError(Exception):
    """An error the caller should see, with a gRPC code and a readable message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, reason: str = "", metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}

    def details(self) -> list[Any]:
        if not self.reason:
            return []
        return [error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)]

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details():
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return status


class InvalidArgument(ServiceError):
    """The request is malformed; `violations` names each offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {summary}")

    def details(self) -> list[Any]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.violations
                ]
            )
        ]


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class Unavailable(ServiceError):
    """Safe to retry; `retry_after` (seconds), when known, goes to the caller as RetryInfo."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float = 0,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after

    def details(self) -> list[Any]:
        if self.retry_after <= 0:
            return super().details()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(self.retry_after * 1000))
        return [*super().details(), error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhausted(ServiceError):
    """A quota is used up; the caller may retry after `retry_after` seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float, reason: str = "RATE_LIMITED") -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after

    def details(self) -> list[Any]:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(self.retry_after * 1000))
        return [*super().details(), error_details_pb2.RetryInfo(retry_delay=delay)]


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if it carries one."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


# Codes a downstream service may return that keep their meaning for our caller.
_PASSTHROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.CANCELLED,
}


# Infrastructure that is briefly away: a NATS node restarting or electing a JetStream leader,
# PostgreSQL restarting or refusing connections. Safe to retry, so UNAVAILABLE, never INTERNAL.
_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    ConnectionError,
)
_RETRY_TRANSIENT_SECONDS = 1.0


def status_of(exc: BaseException, method: str) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The status a caller sees for an exception raised while serving `method`, on any protocol.

    Our domain errors carry their own details; a downstream service's error in
    `_PASSTHROUGH` keeps its code and details; a downstream that is unreachable
    becomes UNAVAILABLE; anything else is INTERNAL, logged here and never shown.
    """
    if isinstance(exc, ServiceError):
        return exc.code, exc.to_status()
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code in _PASSTHROUGH:
            status = rpc_status.from_call(exc)
            if status is None:
                status = status_pb2.Status(code=code.value[0], message=exc.details() or "")
            return code, status
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("downstream unavailable in %s: %s", method, exc.details())
            return grpc.StatusCode.UNAVAILABLE, status_pb2.Status(
                code=grpc.StatusCode.UNAVAILABLE.value[0],
                message="a backend service is unavailable; retry later",
            )
    if isinstance(exc, _TRANSIENT):
        log.warning("infrastructure unavailable in %s: %r", method, exc)
        unavailable = Unavailable(
            "a backing store is briefly unavailable; retry later",
            reason="BACKEND_UNAVAILABLE",
            retry_after=_RETRY_TRANSIENT_SECONDS,
        )
        return unavailable.code, unavailable.to_status()
    log.error("unexpected error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, status_pb2.Status(
        code=grpc.StatusCode.INTERNAL.value[0], message="internal error"
    )


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by servicers to gRPC status codes with details."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method

        @asynccontextmanager
        async def abort_on_error(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                yield
            except Exception as exc:
                code, status = status_of(exc, method)
                await context.abort(code, status.message, rpc_status.to_status(status).trailing_metadata)

        return guarded(handler, abort_on_error)
