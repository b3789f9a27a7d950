"""Browser traffic is observed: Connect calls on the web listener show in the gateway's metrics and traces.

The gateway runs as a real process writing its spans to a file
(MANGAKAI_TRACES_FILE); only Connect calls are made, so everything counted or
traced for JobService came through the web listener.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.gateway import connect_client
from tests.integration.mesh_client import scrape


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def traced(make_module_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, Path]:
    spans = tmp_path_factory.mktemp("spans")
    overrides = {
        name: {"MANGAKAI_TRACES_FILE": str(spans / f"{name}.jsonl"), "OTEL_TRACES_EXPORTER": "none"}
        for name in ("gateway", "orchestrator")
    }
    return make_module_stack(overrides), spans


async def test_connect_calls_are_counted_timed_and_traced_like_grpc_calls(traced: tuple[Stack, Path]) -> None:
    stack, spans_dir = traced
    assert stack.web_url is not None
    web, metrics = stack.web_url, stack.service("gateway").ports["metrics_port"]
    session = await asyncio.to_thread(
        connect_client.call, web, "mangakai.v1.SessionService/CreateSession", {"client": "browser"}
    )
    assert session.code == "ok", session.body
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    created = await asyncio.to_thread(
        connect_client.call,
        web,
        "mangakai.v1.JobService/CreateJob",
        {"story": "Mara lit the lamp.", "panelCount": 1},
        token=session.body["token"],
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert created.code == "ok", created.body
    bad = await asyncio.to_thread(
        connect_client.call,
        web,
        "mangakai.v1.JobService/GetJob",
        {"name": "jobs/nope"},
        token=session.body["token"],
    )
    assert bad.code == "invalid_argument"

    # The same metrics as gRPC calls, with gRPC's code names.
    job_service = {"grpc_service": "mangakai.v1.JobService"}
    assert (
        scrape(metrics, "grpc_server_handled_total", grpc_method="CreateJob", grpc_code="OK", **job_service)
        == 1
    )
    assert (
        scrape(
            metrics,
            "grpc_server_handled_total",
            grpc_method="GetJob",
            grpc_code="INVALID_ARGUMENT",
            **job_service,
        )
        == 1
    )
    assert scrape(metrics, "grpc_server_handling_seconds_count", grpc_method="CreateJob", **job_service) == 1
    assert (
        scrape(
            metrics, "grpc_server_handling_seconds_bucket", grpc_method="CreateJob", le="2.0", **job_service
        )
        == 1
    )
    assert (
        scrape(
            metrics,
            "grpc_server_handled_total",
            grpc_service="mangakai.v1.SessionService",
            grpc_method="CreateSession",
            grpc_code="OK",
        )
        == 1
    )

    # A SERVER span like the gRPC interceptor's, continuing the browser's trace, with the
    # orchestrator's span under it.
    gateway_spans = read_spans(spans_dir / "gateway.jsonl")
    (span,) = [s for s in gateway_spans if s["name"] == "/mangakai.v1.JobService/CreateJob"]
    assert span["kind"] == "SpanKind.SERVER"
    assert span["context"]["trace_id"] == f"0x{trace_id}" and span["parent_id"] == f"0x{parent_id}"
    assert span["attributes"]["rpc.system"] == "grpc"
    assert span["attributes"]["rpc.method"] == "CreateJob"
    assert span["attributes"]["rpc.grpc.status_code"] == 0
    assert span["attributes"]["mangakai.rpc.protocol"] == "connect"
    orchestrator_spans = read_spans(spans_dir / "orchestrator.jsonl")
    downstream = [s for s in orchestrator_spans if s["name"] == "/mangakai.v1.OrchestratorService/CreateJob"]
    assert [s["context"]["trace_id"] for s in downstream] == [f"0x{trace_id}"]
    (failed,) = [s for s in gateway_spans if s["name"] == "/mangakai.v1.JobService/GetJob"]
    assert failed["attributes"]["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
