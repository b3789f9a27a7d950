"""The typed view of a gRPC method handler, as the server interceptors see it.

grpcio ships no type hints: `grpc.RpcMethodHandler` declares none of the
attributes its handlers carry, and `grpc.*_rpc_method_handler` return Any.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias, cast

import grpc


class MethodHandler(Protocol):
    """The fields of the handler `grpc.aio` passes to `ServerInterceptor.intercept_service`."""

    @property
    def request_deserializer(self) -> Callable[[bytes], Any] | None: ...
    @property
    def response_serializer(self) -> Callable[[Any], bytes] | None: ...
    @property
    def unary_unary(self) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] | None: ...
    @property
    def unary_stream(
        self,
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]] | None: ...
    @property
    def stream_unary(
        self,
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] | None: ...


def typed(handler: grpc.RpcMethodHandler) -> MethodHandler:
    """`handler` with its fields visible to the type checker."""
    return cast(MethodHandler, handler)


Guard: TypeAlias = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]
"""Runs around one call (for a stream: around all of it) and sees how it ends."""


def _no_check(request: Any) -> None:
    return None


async def _checked(requests: AsyncIterable[Any], check: Callable[[Any], None]) -> AsyncIterator[Any]:
    async for request in requests:
        check(request)
        yield request


def guarded(
    handler: grpc.RpcMethodHandler,
    guard: Guard,
    *,
    deserializer: Callable[[bytes], Any] | None = None,
    check: Callable[[Any], None] = _no_check,
) -> grpc.RpcMethodHandler:
    """`handler` with every call, whatever its shape, run inside `guard(context)`.

    `deserializer` replaces the handler's; `check` sees every request inside the guard
    before the servicer does (and may raise).
    """
    fields = typed(handler)
    deserializer = deserializer or fields.request_deserializer
    serializer = fields.response_serializer
    wrapped: grpc.RpcMethodHandler
    if fields.unary_unary:
        inner_uu = fields.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with guard(context):
                check(request)
                return await inner_uu(request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
        return wrapped
    if fields.unary_stream:
        inner_us = fields.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with guard(context):
                check(request)
                async for item in inner_us(request, context):
                    yield item

        wrapped = grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
        return wrapped
    if fields.stream_unary:
        inner_su = fields.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with guard(context):
                return await inner_su(_checked(requests, check), context)

        wrapped = grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
        return wrapped
    return handler
