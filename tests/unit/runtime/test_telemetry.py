"""Which span exporters the standard OTEL_* settings turn on (mangakai_runtime.telemetry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

from mangakai_runtime import telemetry

SETTINGS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    telemetry.SPAN_FILE_ENV,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def exporters() -> list[type]:
    found = []
    for processor in telemetry._span_processors():
        assert isinstance(processor, BatchSpanProcessor | SimpleSpanProcessor)
        found.append(type(processor.span_exporter))
    return found


def test_nothing_is_exported_by_default() -> None:
    assert exporters() == []


def test_an_otlp_endpoint_turns_on_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert exporters() == [OTLPSpanExporter]


def test_the_exporter_setting_wins_over_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console, otlp")
    assert exporters() == [ConsoleSpanExporter, OTLPSpanExporter]


def test_the_span_file_receives_each_span_as_a_json_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv(telemetry.SPAN_FILE_ENV, str(path))
    provider = TracerProvider()
    for processor in telemetry._span_processors():
        provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner"):
        pass
    provider.shutdown()
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["inner", "outer"]
    trace_id = format(outer.get_span_context().trace_id, "#034x")
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    assert spans[0]["parent_id"] == spans[1]["context"]["span_id"]


def latency_buckets(service: str, method: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the gRPC latency histogram for one method."""
    buckets = []
    for metric in telemetry.GRPC_LATENCY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_bucket")
                and labels["grpc_service"] == service
                and labels["grpc_method"] == method
            ):
                buckets.append((float(labels["le"]), sample.value))
    return sorted(buckets)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile: linear interpolation inside the bucket holding the rank."""
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("rank beyond the last bucket")


def test_the_latency_histogram_has_an_edge_at_the_two_second_slo() -> None:
    # Calls that all take 1.1 s meet the "< 2 s" SLO; their p95 must not compute as more.
    for _ in range(100):
        telemetry.record_rpc("test.SloService", "Slow", "OK", 1.1)
    buckets = latency_buckets("test.SloService", "Slow")
    assert (2.0, 100) in buckets and (1.0, 0) in buckets
    assert histogram_quantile(0.95, buckets) < 2.0

    # 1.99 s is under the threshold and counted so; 2.01 s is not.
    telemetry.record_rpc("test.SloService", "Edge", "OK", 1.99)
    telemetry.record_rpc("test.SloService", "Edge", "OK", 2.01)
    assert dict(latency_buckets("test.SloService", "Edge"))[2.0] == 1
