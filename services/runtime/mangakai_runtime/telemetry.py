"""Metrics and traces: Prometheus metrics over HTTP and OpenTelemetry tracing.

Tracing is configured from the standard OTEL_* environment variables (see
`configure_tracing`); spans are always created, so trace ids reach the logs and
the NATS headers, but exported only when asked to.

RPCs are measured the same whatever serves them: `MetricsInterceptor` (and
OpenTelemetry's interceptor) for grpc.aio servers, `RpcObservation` for calls
served by anything else (the gateway's Connect/gRPC-Web listener), so alerts
and dashboards see browser traffic too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import Token
from pathlib import Path
from typing import Any

import grpc
import prometheus_client
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

from mangakai_runtime.handlers import guarded

log = logging.getLogger(__name__)

GRPC_HANDLED = prometheus_client.Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_LATENCY = prometheus_client.Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC (for streams: until the stream ends).",
    ["grpc_service", "grpc_method"],
    # 2 is the latency SLO's threshold ("< 2 s"): with a bucket edge there, the share of calls
    # under it is counted exactly instead of interpolated across 1 -> 2.5.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 30, 60, 300),
)

UNTRACED_METHODS = frozenset({"/mangakai.v1.JobService/WatchJob"})
"""RPCs served without a span on any protocol: WatchJob is a long-lived stream, and a span would
only add an event per message to every watcher's stream (a measurable cost when hundreds of
clients watch one job; see bench/bench_mesh.py)."""

# The codes OpenTelemetry's gRPC server instrumentation marks as span errors: the server's fault.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


SPAN_FILE_ENV = "MANGAKAI_TRACES_FILE"
"""Names a file that receives every finished span of the process as one JSON object per line."""


def configure_tracing(service: str) -> None:
    """Installs the global tracer provider for this process.

    - OTEL_TRACES_EXPORTER: comma-separated exporters, "otlp" (OTLP over gRPC to
      OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with the
      exporter's own OTEL_EXPORTER_OTLP_* settings), "console" (stdout) or "none".
      Unset, it is "otlp" when an OTLP endpoint is set and "none" otherwise: unlike
      the specification's default, nothing is exported unless configured.
    - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG): as the SDK reads them.
    - OTEL_SDK_DISABLED=true: no tracer provider at all.
    - MANGAKAI_TRACES_FILE: also write each span to that file as it ends (tests, debugging).
    """
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    )
    for processor in _span_processors():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def _span_processors() -> list[SpanProcessor]:
    names = os.environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = "otlp" if endpoint else "none"
    processors: list[SpanProcessor] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored (otlp, console, none)", name)
    path = os.environ.get(SPAN_FILE_ENV)
    if path:
        # Written as each span ends, so a reader sees a span as soon as its call returned.
        processors.append(SimpleSpanProcessor(SpanFileExporter(Path(path))))
    return processors


class SpanFileExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object (the SDK's span JSON) per line."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as message headers (W3C traceparent)."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> Any:
    """The trace context carried by message headers."""
    return propagate.extract(dict(headers or {}))


def start_metrics_server(port: int, host: str) -> int:
    """Serves /metrics on `host` in a background thread; returns the bound port.

    `host` is an address as gRPC spells it ("[::]" for every IPv6 and IPv4 address).
    """
    server, _thread = prometheus_client.start_http_server(port, addr=host.strip("[]"))
    return int(server.server_port)


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2)
    return service, name


def record_rpc(service: str, method: str, code: str, seconds: float) -> None:
    """Counts one finished RPC and its latency (`code` is the gRPC code's name, e.g. "OK")."""
    GRPC_HANDLED.labels(service, method, code).inc()
    GRPC_LATENCY.labels(service, method).observe(seconds)


class RpcObservation:
    """One RPC served outside grpc.aio, from its start to `end`: counted and timed like gRPC calls,
    and in a SERVER span named and attributed like the OpenTelemetry gRPC interceptor's, which
    continues the caller's trace (W3C traceparent in `headers`) and is current until `end`.

    Create and end it in the same task (the span's context is attached to the task's context).
    """

    def __init__(
        self, full_method: str, headers: Mapping[str, str], attributes: Mapping[str, str] | None = None
    ) -> None:
        self._service, self._method = _split(full_method)
        self._started = time.perf_counter()
        self._span: trace.Span | None = None
        self._token: Token[otel_context.Context] | None = None
        if full_method in UNTRACED_METHODS:
            return
        self._span = trace.get_tracer(__name__).start_span(
            full_method,
            context=propagate.extract({key.lower(): value for key, value in headers.items()}),
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": self._service,
                "rpc.method": self._method,
                **(attributes or {}),
            },
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def end(self, code: grpc.StatusCode, message: str = "") -> None:
        """Records how the call ended; call once."""
        record_rpc(self._service, self._method, code.name, time.perf_counter() - self._started)
        if self._span is None:
            return
        self._span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_ERRORS:
            self._span.set_status(Status(StatusCode.ERROR, f"{code}:{message}"))
        self._span.end()
        if self._token is not None:
            otel_context.detach(self._token)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts RPCs by service, method and code, and records their latency."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)

        @asynccontextmanager
        async def measured(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            started, failed = time.perf_counter(), True
            try:
                yield
                failed = False
            finally:
                code = context.code()
                if code is None:
                    code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
                name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                record_rpc(service, method, name, time.perf_counter() - started)

        return guarded(handler, measured)
