"""Metrics and spans for calls on the web listener (Connect, gRPC-Web, gRPC over connectrpc).

A connectrpc metadata interceptor: placed first, it starts before the request
body is read and ends with the call's outcome, so every call the listener
routes to a method (including ones refused for a malformed body) is counted in
the same `grpc_server_*` metrics as gRPC calls, with the same gRPC code names,
and traced in a SERVER span like theirs. Alerts and dashboards then see
browser traffic too.
"""

from __future__ import annotations

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from mangakai_gateway.client_address import host_of
from mangakai_runtime.telemetry import RpcObservation


def grpc_code(error: Exception | None) -> grpc.StatusCode:
    """The gRPC status code of a call that ended with `error` (None: OK)."""
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, ConnectError):
        if error.code == Code.CANCELED:
            return grpc.StatusCode.CANCELLED
        return grpc.StatusCode[error.code.name]
    # connectrpc answers anything else (e.g. its HTTP errors for bad content types) as UNKNOWN.
    return grpc.StatusCode.UNKNOWN


def _protocol(content_type: str) -> str:
    if content_type.startswith("application/grpc-web"):
        return "grpc-web"
    if content_type.startswith("application/grpc"):
        return "grpc"
    return "connect"


class ConnectTelemetry:
    """A connectrpc `MetadataInterceptor` recording each call as an `RpcObservation`."""

    async def on_start(self, ctx: RequestContext[object, object]) -> RpcObservation:
        method = ctx.method
        attributes = {"mangakai.rpc.protocol": _protocol(ctx.request_headers.get("content-type", ""))}
        if ctx.client_address:
            attributes["net.peer.ip"] = host_of(ctx.client_address)
        return RpcObservation(f"/{method.service_name}/{method.name}", ctx.request_headers, attributes)

    async def on_end(
        self, token: RpcObservation, ctx: RequestContext[object, object], error: Exception | None
    ) -> None:
        token.end(grpc_code(error), str(error.message) if isinstance(error, ConnectError) else "")
