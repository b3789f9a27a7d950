"""Metrics, traces and logs of the real mesh, for one job run through the public API.

The four services run as real processes, each told by MANGAKAI_TRACES_FILE to
write its finished spans as JSON lines to a file of its own (the test's stand-in
for an OTLP collector), so the test can follow one trace across all of them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest

from mangakai.v1 import common_pb2
from mangakai_devstack.stack import SERVICE_ORDER, Stack, StackFactory
from mangakai_runtime.subjects import Subjects
from tests.integration.mesh_client import Session, fetch, new_session, scrape

PANELS = 3


@dataclass
class FinishedJob:
    stack: Stack
    spans_dir: Path
    job: common_pb2.Job
    events: list[common_pb2.JobEvent]
    downloaded_bytes: int


@pytest.fixture(scope="module")
def traced_stack(
    make_module_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Stack, Path]:
    spans_dir = tmp_path_factory.mktemp("spans")
    overrides = {
        name: {"MANGAKAI_TRACES_FILE": str(spans_dir / f"{name}.jsonl"), "OTEL_TRACES_EXPORTER": "none"}
        for name in SERVICE_ORDER
    }
    return make_module_stack(overrides), spans_dir


@pytest.fixture(scope="module")
async def finished_job(traced_stack: tuple[Stack, Path]) -> AsyncIterator[FinishedJob]:
    stack, spans_dir = traced_stack
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        session: Session = await new_session(channel)
        job = await session.create_job(panels=PANELS)
        events = await session.events(job.name)
        assert events[-1].state_changed.state == common_pb2.Job.STATE_COMPLETED
        done = await session.get(job.name)
        # Downloads count as storage bytes out.
        body, _ = await asyncio.to_thread(fetch, done.panels[0].versions[0].image.uri)
        yield FinishedJob(stack, spans_dir, done, events, len(body))


def metrics_text(stack: Stack, service: str) -> str:
    port = stack.service(service).ports["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def read_spans(spans_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in spans_dir.glob("*.jsonl"):
        spans.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return spans


def service_of(span: dict[str, Any]) -> str:
    return str(span["resource"]["attributes"]["service.name"])


async def test_every_service_exports_the_metrics_of_the_job(finished_job: FinishedJob) -> None:
    stack = finished_job.stack
    ports = {name: stack.service(name).ports["metrics_port"] for name in SERVICE_ORDER}

    # gRPC requests by service, method and code, with latency histograms, on every service.
    for name, (service, method) in {
        "gateway": ("mangakai.v1.JobService", "CreateJob"),
        "orchestrator": ("mangakai.v1.OrchestratorService", "CreateJob"),
        "renderer": ("mangakai.v1.RendererService", "RenderPanel"),
        "storage": ("mangakai.v1.StorageService", "PutBlob"),
    }.items():
        labels = {"grpc_service": service, "grpc_method": method}
        assert scrape(ports[name], "grpc_server_handled_total", grpc_code="OK", **labels) >= 1, name
        assert scrape(ports[name], "grpc_server_handling_seconds_count", **labels) >= 1, name
        assert scrape(ports[name], "grpc_server_handling_seconds_bucket", le="+Inf", **labels) >= 1, name

    # Jobs by terminal state, panel render time by backend, the work queue.
    orchestrator = ports["orchestrator"]
    assert scrape(orchestrator, "mangakai_jobs_finished_total", state="completed") == 1
    assert scrape(orchestrator, "mangakai_panel_render_seconds_count", backend="local") == PANELS
    text = metrics_text(stack, "orchestrator")
    assert "\nmangakai_work_pending " in text
    assert "\nmangakai_work_oldest_pending_seconds " in text

    # The renderer: panels drawn, draw time, slots in use; Gemini calls by outcome are
    # declared (this stack draws locally, so none are counted).
    renderer = ports["renderer"]
    assert scrape(renderer, "mangakai_renderer_panels_drawn_total", backend="local") == PANELS
    assert scrape(renderer, "mangakai_renderer_draw_seconds_count", backend="local") == PANELS
    assert scrape(renderer, "mangakai_renderer_in_flight") == 0
    assert "# TYPE mangakai_gemini_calls_total counter" in metrics_text(stack, "renderer")

    # Storage bytes in (panels written) and out (the download above).
    downloaded = finished_job.downloaded_bytes
    assert downloaded > 0
    assert scrape(ports["storage"], "storage_bytes_in_total", backend="fs") >= PANELS * downloaded / 2
    assert scrape(ports["storage"], "storage_bytes_out_total", backend="fs") >= downloaded


async def test_one_job_is_one_trace_from_create_job_to_the_last_panel(finished_job: FinishedJob) -> None:
    job_id = finished_job.job.name.removeprefix("jobs/")
    runs: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 15
    while not runs:
        spans = read_spans(finished_job.spans_dir)
        runs = [s for s in spans if s["attributes"].get("mangakai.job_id") == job_id]
        if not runs:
            assert asyncio.get_running_loop().time() < deadline, "the orchestrator never traced the job's run"
            await asyncio.sleep(0.1)
    trace_id = runs[0]["context"]["trace_id"]
    in_trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
    by_service: dict[str, list[str]] = {}
    for span in in_trace:
        by_service.setdefault(service_of(span), []).append(span["name"])

    # The trace starts at the gateway's CreateJob, the call the client made.
    roots = [s for s in in_trace if s["parent_id"] is None]
    assert [(service_of(s), s["name"]) for s in roots] == [("gateway", "/mangakai.v1.JobService/CreateJob")]
    assert "/mangakai.v1.OrchestratorService/CreateJob" in by_service["orchestrator"]
    # ...continues through the JetStream work message into the orchestrator's run of the job...
    assert "orchestrator.run_job" in by_service["orchestrator"]
    # ...to the renderer planning the story and drawing every panel...
    assert "/mangakai.v1.RendererService/PlanStory" in by_service["renderer"]
    assert by_service["renderer"].count("/mangakai.v1.RendererService/RenderPanel") == PANELS
    # ...and to storage keeping each panel.
    assert by_service["storage"].count("/mangakai.v1.StorageService/PutBlob") >= PANELS
    assert set(by_service) == {"gateway", "orchestrator", "renderer", "storage"}

    # Every span of the trace hangs off another span of it: nothing started a trace of its own.
    ids = {s["context"]["span_id"] for s in in_trace}
    assert all(s["parent_id"] in ids for s in in_trace if s["parent_id"] is not None)
    # No RenderPanel of this job was traced elsewhere.
    job_renders = [
        s
        for s in spans
        if s["name"] == "/mangakai.v1.RendererService/RenderPanel" and s["context"]["trace_id"] == trace_id
    ]
    assert len(job_renders) == PANELS


def job_trace_id(finished_job: FinishedJob) -> str:
    job_id = finished_job.job.name.removeprefix("jobs/")
    run = next(
        s for s in read_spans(finished_job.spans_dir) if s["attributes"].get("mangakai.job_id") == job_id
    )
    return str(run["context"]["trace_id"]).removeprefix("0x")


async def test_the_job_events_on_nats_carry_the_trace_of_the_job(finished_job: FinishedJob) -> None:
    stack = finished_job.stack
    subjects = Subjects(stack.nats_namespace)
    nc = await nats.connect(stack.nats.url)
    try:
        subscription = await nc.jetstream().subscribe(
            subjects.events(finished_job.job.name.removeprefix("jobs/")), ordered_consumer=True
        )
        messages = [await subscription.next_msg(timeout=10) for _ in finished_job.events]
    finally:
        await nc.close()
    traceparents = [(m.headers or {}).get("traceparent", "") for m in messages]
    assert all(traceparents), "every event names its trace"
    assert {t.split("-")[1] for t in traceparents} == {job_trace_id(finished_job)}


async def test_log_lines_of_the_job_carry_its_trace_id(finished_job: FinishedJob) -> None:
    job_id = finished_job.job.name.removeprefix("jobs/")
    trace_id = job_trace_id(finished_job)
    lines = []
    for name in SERVICE_ORDER:
        for line in finished_job.stack.service(name).log_path.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                assert {"time", "level", "logger", "message", "service", "job_id", "trace_id"} <= set(record)
                if record["job_id"] == job_id:
                    lines.append(record)
    assert lines, "the job was logged"
    assert {record["trace_id"] for record in lines} == {trace_id}
