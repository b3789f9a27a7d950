"""The typed view of a gRPC method handler, as the server interceptors see it.

grpcio ships no type hints: `grpc.RpcMethodHandler` declares none of the
attributes its handlers carry, and `grpc.*_rpc_method_handler` return Any.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, cast

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
