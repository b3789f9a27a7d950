"""gRPC client channels between services: tracing, round-robin balancing, retries.

Targets like "dns:///renderer.mangakai.svc:50051" resolve every pod address
behind a headless Service and spread calls with round_robin; plain
"host:port" targets work the same way on one machine.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

import grpc
from opentelemetry import propagate

from mangakai_runtime import identity
from mangakai_runtime.server import MAX_MESSAGE_BYTES

SESSION_METADATA_KEY = "x-mangakai-session"
"""Metadata key the gateway uses to tell internal services which session a call acts for."""

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                # Transparent retries for calls that never reached a server, and for
                # UNAVAILABLE, which our services only return when a retry is safe.
                "name": [{}],
                # A replica that restarts is waited for (within the call's deadline)
                # instead of failing the call at once.
                "waitForReady": True,
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def _with_trace_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _TraceContext:
    """Sends the current trace context (W3C traceparent) with every call.

    The receiving server's OpenTelemetry interceptor continues the trace. We do
    not use opentelemetry-instrumentation-grpc's aio client interceptors: they
    keep a call running on the server after the caller cancelled it (checked
    with grpcio 1.85), and cancelling a job must stop its renderer calls.
    """


class _UnaryUnaryTraceContext(_TraceContext, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_trace_context(client_call_details), request)


class _UnaryStreamTraceContext(_TraceContext, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_trace_context(client_call_details), request)


class _StreamUnaryTraceContext(_TraceContext, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[Any] | Iterable[Any],
    ) -> Any:
        return await continuation(_with_trace_context(client_call_details), request_iterator)


def trace_context_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """One trace-context interceptor per kind of call.

    One object implementing several kinds would not do: grpc.aio files each
    interceptor under the first kind it is an instance of (unary-unary), so
    streaming calls (PutBlob, GetBlob) would go out without the trace context.
    """
    return [_UnaryUnaryTraceContext(), _UnaryStreamTraceContext(), _StreamUnaryTraceContext()]


def channel(target: str) -> grpc.aio.Channel:
    """A channel to another service of the mesh: mutual TLS with this process's identity when it has
    one (identity.py), plaintext otherwise."""
    credentials = identity.channel_credentials()
    opened = (
        functools.partial(grpc.aio.secure_channel, target, credentials)
        if credentials is not None
        else functools.partial(grpc.aio.insecure_channel, target)
    )
    return opened(
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            # Re-resolution happens only when a connection goes away (a server's
            # max_connection_age, a replica gone), so this cap on its rate can be low:
            # a replica added behind the name is found within a second of the next GOAWAY.
            ("grpc.dns_min_time_between_resolutions_ms", 1_000),
        ],
        interceptors=trace_context_interceptors(),
    )
