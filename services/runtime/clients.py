"""gRPC client channels between services: tracing, round-robin balancing, retries.

Targets like "dns:///renderer.mangakai.svc:50051" resolve every pod address
behind a headless Service and spread calls with round_robin; plain
"host:port" targets work the same way on one machine.
"""

from __future__ import annotations

import json

import grpc
from mangakai_runtime.server import MAX_MESSAGE_BYTES
from opentelemetry.instrumentation.grpc import aio_client_interceptors

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


def channel(target: str) -> grpc.aio.Channel:
    """An insecure channel to another service of the mesh."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
        ],
        interceptors=aio_client_interceptors(),
    )
