"""The gRPC server bootstrap every service uses.

`create_server` builds an aio server with the error, metrics and tracing
interceptors, the standard health service and reflection, bound to the given
port (0 picks a free one; tests rely on that). `serve` runs a service until
SIGTERM/SIGINT and then shuts it down in order: health NOT_SERVING, stop
taking work, drain the gRPC server and any other listener together, close
clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from mangakai_runtime import identity
from mangakai_runtime.decoding import RequestDecodingInterceptor
from mangakai_runtime.errors import ErrorInterceptor
from mangakai_runtime.identity import CallerInterceptor, TlsFiles
from mangakai_runtime.log import configure_logging
from mangakai_runtime.settings import ServiceSettings
from mangakai_runtime.telemetry import (
    UNTRACED_METHODS,
    MetricsInterceptor,
    configure_tracing,
    start_metrics_server,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A listener gets the shutdown grace to drain, and this long again to return before it is cancelled.
LISTENER_STOP_MARGIN_SECONDS = 1.0

Listener = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A server besides the gRPC one (e.g. the gateway's web listener): serves until the event is set,
then stops accepting connections, lets the calls in flight finish within the shutdown grace and
returns. `ServiceMain.serve` drains it together with the gRPC server."""

# Not traced: health checks, reflection, and the long-lived streams of UNTRACED_METHODS.
_TRACED = filters.negate(
    filters.any_of(
        filters.health_check(),
        filters.service_prefix("grpc.reflection"),
        *(filters.full_method_name(name) for name in sorted(UNTRACED_METHODS)),
    )
)


@dataclass
class Server:
    """A started gRPC server with its health servicer and bound port."""

    grpc_server: grpc.aio.Server
    health: HealthServicer
    port: int
    service_names: list[str]

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


async def create_server(
    registrations: Iterable[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_connection_age_seconds: float = 30.0,
    max_connection_age_grace_seconds: float = 600.0,
    credentials: grpc.ServerCredentials | None = None,
) -> Server:
    """Builds and starts a server.

    `registrations` are (add_XServicer_to_server, servicer, full service name)
    triples, e.g. `(jobs_pb2_grpc.add_JobServiceServicer_to_server, servicer,
    "mangakai.v1.JobService")`.

    Connections are aged: after `max_connection_age_seconds` (gRPC adds +-10 %
    jitter) the server sends GOAWAY, the client opens a new connection and, as
    the connection went away, re-resolves its target. That is how a client
    holding a `dns:///` channel to a headless Service (or the dev stack's DNS)
    finds replicas added after it connected; without it a long-lived channel
    never sends work to new pods. Calls in flight get the grace to finish.

    With `credentials` (an internal service under mutual TLS) the port takes TLS only and every
    call's caller identity is checked against `identity.CALLERS`.
    """
    server = grpc.aio.server(
        # RequestDecodingInterceptor inside ErrorInterceptor: undecodable requests become INVALID_ARGUMENT.
        interceptors=[
            aio_server_interceptor(filter_=_TRACED),
            MetricsInterceptor(),
            ErrorInterceptor(),
            RequestDecodingInterceptor(),
            *([CallerInterceptor()] if credentials is not None else []),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_connection_age_ms", int(max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max_connection_age_grace_seconds * 1000)),
        ],
    )
    names: list[str] = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    await server.start()
    result = Server(server, health, bound, names)
    await result.set_serving(True)
    return result


@dataclass
class ServiceMain:
    """Runs a service process: logging, tracing, metrics, server, shutdown hooks."""

    name: str
    settings: ServiceSettings
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run when draining begins, before the grace: e.g. ending long-lived streams so that
    # their clients reconnect to another replica instead of holding this one for the grace.
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra_ports: dict[str, int] = field(default_factory=dict)

    def setup(self) -> None:
        configure_logging(self.name, self.settings.log_level, self.settings.log_format)
        configure_tracing(self.name)
        settings = self.settings
        if settings.tls_ca_file and settings.tls_cert_file and settings.tls_key_file:
            identity.configure(TlsFiles(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file))

    async def serve(
        self,
        registrations: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
        *,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        listeners: Sequence[Listener] = (),
    ) -> None:
        """Serves until SIGTERM or SIGINT, then shuts down gracefully.

        `background` tasks are cancelled when shutdown begins; `listeners` are told to
        drain at the same moment as the gRPC server and get the same grace.
        """
        metrics_port = -1
        if self.settings.metrics_port >= 0:
            # Only where it is told: metrics name jobs' methods and rates, not for every interface.
            metrics_host = self.settings.metrics_host or self.settings.grpc_host
            metrics_port = start_metrics_server(self.settings.metrics_port, metrics_host)
        server = await create_server(
            registrations,
            host=self.settings.grpc_host,
            port=self.settings.grpc_port,
            max_connection_age_seconds=self.settings.grpc_max_connection_age_seconds,
            max_connection_age_grace_seconds=self.settings.grpc_max_connection_age_grace_seconds,
            credentials=(
                identity.server_credentials()
                if identity.is_internal([name for _, _, name in registrations])
                else None
            ),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(job(), name=f"{self.name}-background") for job in background]
        draining = asyncio.Event()
        serving = [
            asyncio.create_task(listener(draining), name=f"{self.name}-listener") for listener in listeners
        ]
        self._write_ready_file({"grpc_port": server.port, "metrics_port": metrics_port, **self.extra_ports})
        log.info(
            "%s serving gRPC on %s:%d (metrics %d)",
            self.name,
            self.settings.grpc_host,
            server.port,
            metrics_port,
        )
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stop_wait, *tasks, *serving], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and task.exception() is not None:
                log.error("background task failed; shutting down", exc_info=task.exception())
        log.info("%s shutting down", self.name)
        await server.set_serving(False)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Both listeners stop accepting now and drain side by side: a browser call in flight
        # gets the same grace as a gRPC one (the web listener used to be cancelled first).
        draining.set()
        for hook in self.on_drain:
            try:
                await hook()
            except Exception:
                log.exception("drain hook failed")
        grace = self.settings.shutdown_grace_seconds
        await asyncio.gather(server.grpc_server.stop(grace), _drain(serving, grace))
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        stop_wait.cancel()
        log.info("%s stopped", self.name)

    def _write_ready_file(self, ports: dict[str, int]) -> None:
        path: Path | None = self.settings.ready_file
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), **ports}))
        tmp.replace(path)


async def _drain(listeners: Sequence[asyncio.Task[None]], grace: float) -> None:
    """Waits for draining listeners to return; cancels those still running after the grace."""
    if not listeners:
        return
    _, late = await asyncio.wait(listeners, timeout=grace + LISTENER_STOP_MARGIN_SECONDS)
    for task in late:
        log.warning("listener %s did not drain within %.1f s; cancelled", task.get_name(), grace)
        task.cancel()
    for result in await asyncio.gather(*listeners, return_exceptions=True):
        if isinstance(result, Exception):
            log.error("listener failed while draining", exc_info=result)
