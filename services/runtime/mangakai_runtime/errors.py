"""Domain errors and their mapping to gRPC status with google.rpc details.

Services raise these exceptions; `ErrorInterceptor` turns them into a status
with `BadRequest`, `ErrorInfo` or `RetryInfo` details (AIP-193). Errors from a
downstream service pass through with their details; anything unexpected is
INTERNAL with a log line, never a stack trace sent to the client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mangakai_runtime.handlers import typed

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


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


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


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str) -> None:
    if isinstance(exc, ServiceError):
        status = rpc_status.to_status(exc.to_status())
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        if code in _PASSTHROUGH:
            trailing = tuple(
                (k, v)
                for k, v in (exc.trailing_metadata() or ())
                if k == rpc_status.GRPC_DETAILS_METADATA_KEY
            )
            await context.abort(code, exc.details() or "", trailing)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("downstream unavailable in %s: %s", method, exc.details())
            await context.abort(grpc.StatusCode.UNAVAILABLE, "a backend service is unavailable; retry later")
    log.exception("unexpected error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


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
        fields = typed(handler)
        method: str = handler_call_details.method
        if fields.unary_unary:
            inner_uu = fields.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    return await inner_uu(request, context)
                except Exception as exc:
                    await _abort(context, exc, method)

            wrapped_uu: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(
                unary_unary, fields.request_deserializer, fields.response_serializer
            )
            return wrapped_uu
        if fields.unary_stream:
            inner_us = fields.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    async for item in inner_us(request, context):
                        yield item
                except Exception as exc:
                    await _abort(context, exc, method)

            wrapped_us: grpc.RpcMethodHandler = grpc.unary_stream_rpc_method_handler(
                unary_stream, fields.request_deserializer, fields.response_serializer
            )
            return wrapped_us
        if fields.stream_unary:
            inner_su = fields.stream_unary

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    return await inner_su(requests, context)
                except Exception as exc:
                    await _abort(context, exc, method)

            wrapped_su: grpc.RpcMethodHandler = grpc.stream_unary_rpc_method_handler(
                stream_unary, fields.request_deserializer, fields.response_serializer
            )
            return wrapped_su
        return handler


def code_name(code: int) -> str:
    """The canonical name of a google.rpc code number."""
    return str(code_pb2.Code.Name(code))
