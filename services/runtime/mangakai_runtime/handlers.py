"""The typed view of a gRPC method handler, as the server interceptors see it.

grpcio ships no type hints: `grpc.RpcMethodHandler` declares none of the
attributes its handlers carry, and `grpc.*_rpc_method_handler` return Any.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
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


def guarded(handler: grpc.RpcMethodHandler, guard: Guard) -> grpc.RpcMethodHandler:
    """`handler` with every call, whatever its shape, run inside `guard(context)`."""
    fields = typed(handler)
    deserializer, serializer = fields.request_deserializer, fields.response_serializer
    wrapped: grpc.RpcMethodHandler
    if fields.unary_unary:
        inner_uu = fields.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with guard(context):
                return await inner_uu(request, context)

        wrapped = grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
        return wrapped
    if fields.unary_stream:
        inner_us = fields.unary_stream

        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with guard(context):
                async for item in inner_us(request, context):
                    yield item

        wrapped = grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
        return wrapped
    if fields.stream_unary:
        inner_su = fields.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with guard(context):
                return await inner_su(requests, context)

        wrapped = grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
        return wrapped
    return handler
