"""The whole mesh, end to end, through the gateway's public API.

Real PostgreSQL, real nats-server with JetStream, and the four services as
real processes (see conftest.py).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from mangakai.v1 import common_pb2, jobs_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import STORY_EN, Session, fetch, new_session, scrape, wait_for_metric

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State


def _without_urls(event: common_pb2.JobEvent) -> bytes:
    copy = common_pb2.JobEvent()
    copy.CopyFrom(event)
    images = []
    if copy.HasField("character_sheet_ready"):
        images.append(copy.character_sheet_ready)
    if copy.HasField("panel_finished"):
        version = copy.panel_finished.version
        images += [getattr(version, f) for f in ("image", "art") if version.HasField(f)]
    for image in images:
        image.uri = image.webp_uri = image.thumbnail_uri = ""
    return copy.SerializeToString()


def kinds(events: list[common_pb2.JobEvent]) -> list[str]:
    return [str(e.WhichOneof("kind")) for e in events]


async def test_job_runs_to_completion_with_every_event_in_order(session: Session) -> None:
    job = await session.create_job(panels=4)
    assert job.state == JobState.STATE_QUEUED
    assert job.name.startswith("jobs/")

    events = await session.events(job.name)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].state_changed.state == JobState.STATE_QUEUED
    assert events[1].state_changed.state == JobState.STATE_PLANNING
    assert events[2].HasField("plan_ready")
    plan = events[2].plan_ready
    assert len(plan.scenes) == 4
    assert plan.title == "The Lantern Keeper"
    started = [e.panel_started.panel for e in events if e.HasField("panel_started")]
    finished = [e.panel_finished for e in events if e.HasField("panel_finished")]
    assert sorted(started) == [1, 2, 3, 4]
    assert sorted(f.panel for f in finished) == [1, 2, 3, 4]
    order = kinds(events)
    for f in finished:
        start = next(i for i, e in enumerate(events) if e.panel_started.panel == f.panel)
        end = next(i for i, e in enumerate(events) if e.panel_finished.panel == f.panel)
        assert order[start] == "panel_started" and start < end, "a panel starts before it finishes"
        assert f.version.state == VersionState.STATE_SUCCEEDED
        assert f.version.image.uri.startswith("http")
    progress = [e.progress_percent for e in events]
    assert progress == sorted(progress), "progress never goes back"
    last = events[-1]
    assert last.terminal and last.state_changed.state == JobState.STATE_COMPLETED
    assert last.progress_percent == 100
    assert sum(e.terminal for e in events) == 1

    sheets = [e.character_sheet_ready for e in events if e.HasField("character_sheet_ready")]
    assert len(sheets) == 1, "one character sheet per job"
    assert kinds(events).index("character_sheet_ready") < kinds(events).index("panel_started")
    assert sheets[0].uri.startswith("http")

    done = await session.get(job.name)
    assert done.state == JobState.STATE_COMPLETED
    assert done.last_event_sequence == last.sequence
    sheet, _ = await asyncio.to_thread(fetch, done.character_sheet.uri)
    assert sheet.startswith(b"\x89PNG")
    dialogue = [line.text for scene in done.plan.scenes for line in scene.dialogue]
    assert any("ten minutes" in text for text in dialogue)
    for panel in done.panels:
        assert panel.current_version == 1
        image = panel.versions[0].image
        body, headers = await asyncio.to_thread(fetch, image.uri)
        assert headers["content-type"] == "image/png"
        decoded = Image.open(io.BytesIO(body))
        assert decoded.size == (image.width, image.height)
        assert max(decoded.size) == 1024
        shot = done.plan.scenes[panel.number - 1].shot
        if shot in (common_pb2.SHOT_TYPE_ESTABLISHING, common_pb2.SHOT_TYPE_WIDE):
            assert decoded.width > decoded.height, "a wide shot is drawn in a wide frame"

    export = await session.jobs.ExportJob(
        jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
        metadata=session.metadata,
        timeout=120,
    )
    pdf, headers = await asyncio.to_thread(fetch, export.uri)
    assert pdf.startswith(b"%PDF")
    assert headers["content-type"] == "application/pdf"
    assert export.page_count >= 2
    assert (
        pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page/")
        >= export.page_count
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.CancelJob(jobs_pb2.CancelJobRequest(name=job.name), metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    again = await session.jobs.ExportJob(
        jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
        metadata=session.metadata,
        timeout=120,
    )
    assert again.blob.sha256 == export.blob.sha256, "an unchanged job is not exported again"


async def test_watch_replays_after_a_disconnect_without_loss_or_repeats(session: Session) -> None:
    job = await session.create_job(panels=3)
    head = await session.until(job.name, lambda e: e.sequence == 3)
    assert [e.sequence for e in head] == [1, 2, 3]

    rest = await session.events(job.name, after=3)

    assert [e.sequence for e in rest] == list(range(4, 4 + len(rest)))
    assert rest[-1].terminal
    replay = await session.events(job.name)
    # The same events again; only the signed URLs inside them may have been signed anew.
    assert [_without_urls(e) for e in replay] == [_without_urls(e) for e in head + rest]
    finished = await session.events(job.name, after=rest[-1].sequence)
    assert finished == [], "a finished job watched from its last event ends at once"


async def test_create_job_is_idempotent_by_request_id(session: Session) -> None:
    first = await session.create_job(panels=2, request_id="retry-me-1")
    second = await session.create_job(panels=2, request_id="retry-me-1")
    assert first.name == second.name
    other = await session.create_job(panels=2, request_id="retry-me-2")
    assert other.name != first.name
    listed = await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=100), metadata=session.metadata)
    names = [j.name for j in listed.jobs]
    assert names.count(first.name) == 1
    assert names.index(other.name) < names.index(first.name), "newest first"


async def test_list_jobs_pages_newest_first(channel: grpc.aio.Channel) -> None:
    session = await new_session(channel)
    created = [(await session.create_job(panels=1)).name for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await session.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(page_size=2, page_token=token), metadata=session.metadata
        )
        assert len(page.jobs) <= 2
        seen.extend(j.name for j in page.jobs)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))


async def test_another_session_sees_nothing_of_a_job(channel: grpc.aio.Channel, session: Session) -> None:
    job = await session.create_job(panels=2)
    await session.events(job.name)
    intruder = await new_session(channel)
    calls = [
        intruder.jobs.GetJob(jobs_pb2.GetJobRequest(name=job.name), metadata=intruder.metadata),
        intruder.jobs.CancelJob(jobs_pb2.CancelJobRequest(name=job.name), metadata=intruder.metadata),
        intruder.jobs.RegeneratePanel(
            jobs_pb2.RegeneratePanelRequest(name=job.name, panel=1, instruction="mine now"),
            metadata=intruder.metadata,
        ),
        intruder.jobs.ExportJob(
            jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
            metadata=intruder.metadata,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await intruder.events(job.name)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await intruder.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=intruder.metadata)
    assert list(listed.jobs) == []
    unchanged = await session.get(job.name)
    assert all(len(p.versions) == 1 for p in unchanged.panels)


async def test_regenerate_keeps_every_version_and_makes_the_new_one_current(session: Session) -> None:
    job = await session.create_job(panels=2)
    first_run = await session.events(job.name)
    reference = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(reference, format="PNG")

    panel = await session.jobs.RegeneratePanel(
        jobs_pb2.RegeneratePanelRequest(
            name=job.name,
            panel=2,
            instruction="make it night, close-up",
            reference_image=reference.getvalue(),
        ),
        metadata=session.metadata,
    )
    assert [v.version for v in panel.versions] == [1, 2]
    assert panel.versions[1].state == VersionState.STATE_PENDING

    second_run = await session.events(job.name, after=first_run[-1].sequence)
    assert second_run[-1].terminal and second_run[-1].state_changed.state == JobState.STATE_COMPLETED
    assert [e.panel_finished.panel for e in second_run if e.HasField("panel_finished")] == [2]

    done = await session.get(job.name)
    regenerated = done.panels[1]
    assert regenerated.current_version == 2
    assert [v.state for v in regenerated.versions] == [VersionState.STATE_SUCCEEDED] * 2
    assert regenerated.versions[1].instruction == "make it night, close-up"
    assert regenerated.versions[1].reference_blob_key
    assert regenerated.versions[0].image.sha256 != regenerated.versions[1].image.sha256
    for version in regenerated.versions:
        body, _ = await asyncio.to_thread(fetch, version.image.uri)
        assert body.startswith(b"\x89PNG")
    assert done.panels[0].current_version == 1 and len(done.panels[0].versions) == 1


async def test_regenerating_a_running_job_is_a_failed_precondition(make_stack: StackFactory) -> None:
    stack = make_stack(
        overrides={"renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "2000"}}
    )
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        session = await new_session(channel)
        job = await session.create_job(panels=2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session.jobs.RegeneratePanel(
                jobs_pb2.RegeneratePanelRequest(name=job.name, panel=1, instruction="again"),
                metadata=session.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session.jobs.ExportJob(
                jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
                metadata=session.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_stops_the_work_for_real(make_stack: StackFactory) -> None:
    stack = make_stack(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "700"},
            "orchestrator": {"RENDER_CONCURRENCY": "1"},
        }
    )
    renderer_metrics = stack.service("renderer").ports["metrics_port"]
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        session = await new_session(channel)
        job = await session.create_job(panels=8)
        head = await session.until(job.name, lambda e: e.HasField("panel_finished"))

        cancelled = await session.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(name=job.name), metadata=session.metadata
        )
        assert cancelled.name == job.name

        rest = await session.events(job.name, after=head[-1].sequence)
        assert rest[-1].terminal and rest[-1].state_changed.state == JobState.STATE_CANCELLED
        # Nothing in flight any more, and nothing drawn beyond what was reported.
        await wait_for_metric(renderer_metrics, "mangakai_renderer_in_flight", lambda v: v == 0)
        done = await session.get(job.name)
        drawn = [p for p in done.panels if p.current_version > 0]
        assert 1 <= len(drawn) < 8
        assert scrape(renderer_metrics, "mangakai_renderer_panels_drawn_total") == len(drawn)
        assert {p.state for p in done.panels if p.current_version == 0} == {VersionState.STATE_CANCELLED}
        assert done.state == JobState.STATE_CANCELLED
        again = await session.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(name=job.name), metadata=session.metadata
        )
        assert again.state == JobState.STATE_CANCELLED, "cancelling a cancelled job changes nothing"
        assert again.last_event_sequence == done.last_event_sequence


async def test_orchestrator_killed_mid_job_resumes_without_drawing_a_panel_twice(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        overrides={
            "renderer": {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "400"},
            "orchestrator": {"RENDER_CONCURRENCY": "2", "ACK_WAIT_SECONDS": "3"},
        }
    )
    renderer_metrics = stack.service("renderer").ports["metrics_port"]
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        session = await new_session(channel)
        job = await session.create_job(panels=8)
        head = await session.until(
            job.name, lambda e: e.HasField("panel_finished") and e.panel_finished.panel >= 2
        )

        stack.service("orchestrator").kill()
        stack.service("orchestrator").restart()

        rest = await session.events(job.name, after=head[-1].sequence)
        assert rest[-1].terminal and rest[-1].state_changed.state == JobState.STATE_COMPLETED
        everything = await session.events(job.name)
        assert [e.sequence for e in everything] == list(range(1, len(everything) + 1))
        done = await session.get(job.name)
        assert done.state == JobState.STATE_COMPLETED
        assert [len(p.versions) for p in done.panels] == [1] * 8
        assert all(p.current_version == 1 for p in done.panels)
        assert scrape(renderer_metrics, "mangakai_renderer_panels_drawn_total") == 8, "no panel drawn twice"


@pytest.mark.parametrize("service", ["gateway", "orchestrator", "renderer", "storage"])
async def test_every_service_answers_health_and_reflection(stack: Stack, service: str) -> None:
    expected = {
        "gateway": "mangakai.v1.JobService",
        "orchestrator": "mangakai.v1.OrchestratorService",
        "renderer": "mangakai.v1.RendererService",
        "storage": "mangakai.v1.StorageService",
    }[service]
    async with grpc.aio.insecure_channel(stack.service(service).address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", expected):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for answer in reflection.ServerReflectionInfo(ask(), timeout=10):
            names = {s.name for s in answer.list_services_response.service}
            assert expected in names
            assert "grpc.health.v1.Health" in names
            break


async def test_japanese_and_chinese_stories_plan_with_their_dialogue(session: Session) -> None:
    story_ja = "夏祭り\n\n美咲は浴衣を着て神社へ走った。「遅れちゃう！」と美咲は言った。\n\n健太は石段の下で待っていた。「花火、もうすぐだよ」と健太は笑った。"
    story_zh = "灯笼\n\n小明提着红灯笼走过石桥。小明说：“今晚的月亮真圆。”\n\n奶奶在门口等他。奶奶说：“快回家吃汤圆吧。”"
    for story, phrase in ((story_ja, "遅れちゃう"), (story_zh, "月亮")):
        job = await session.create_job(story=story, panels=2)
        events = await session.events(job.name)
        assert events[-1].state_changed.state == JobState.STATE_COMPLETED
        done = await session.get(job.name)
        lines = [line.text for scene in done.plan.scenes for line in scene.dialogue]
        assert any(phrase in line for line in lines), lines


STORY = STORY_EN
