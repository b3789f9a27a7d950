"""Bad input is refused with INVALID_ARGUMENT naming the field, and changes nothing."""

from __future__ import annotations

import io
import uuid
from typing import Any

import grpc
import pytest
from PIL import Image

from mangakai.v1 import common_pb2, jobs_pb2
from tests.integration.mesh_client import Session, field_violations, new_session


def _png(size: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size)).save(out, format="PNG")
    return out.getvalue()


CREATE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("empty story", {"story": ""}, "story"),
    ("blank story", {"story": " \n\t "}, "story"),
    ("oversize story", {"story": "x" * 20_001}, "story"),
    ("too many panels", {"panel_count": 25}, "panel_count"),
    ("negative panels", {"panel_count": -1}, "panel_count"),
    ("unknown art style", {"style": common_pb2.StylePreferences(art_style=99)}, "style.art_style"),  # type: ignore[arg-type]
    ("unknown mood", {"style": common_pb2.StylePreferences(mood=42)}, "style.mood"),  # type: ignore[arg-type]
    ("oversize notes", {"style": common_pb2.StylePreferences(notes="n" * 1001)}, "style.notes"),
    ("unknown layout", {"layout": 17}, "layout"),
    ("unknown reading order", {"reading_order": 9}, "reading_order"),
    ("malformed request id", {"request_id": "has spaces!"}, "request_id"),
]


@pytest.mark.parametrize(("case", "fields", "field"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
async def test_create_job_rejects_bad_input_and_writes_nothing(
    session: Session, case: str, fields: dict[str, Any], field: str
) -> None:
    request = jobs_pb2.CreateJobRequest(story="A short story.", panel_count=2)
    for key, value in fields.items():
        if key == "style":
            request.style.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.CreateJob(request, metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    listed = await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session.metadata)
    assert list(listed.jobs) == []


@pytest.mark.parametrize(
    "name", ["", "jobs/", "jobs/not-a-uuid", "sessions/" + str(uuid.uuid4()), "jobs/../../etc"]
)
async def test_malformed_job_names_are_invalid(session: Session, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in field_violations(caught.value)


async def test_unknown_job_is_not_found(session: Session) -> None:
    name = f"jobs/{uuid.uuid4()}"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.events(name)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_and_watch_bounds(session: Session) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=101), metadata=session.metadata)
    assert "page_size" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_token="garbage"), metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.events(f"jobs/{uuid.uuid4()}", after=-1)
    assert "after_sequence" in field_violations(caught.value)


REGENERATE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no instruction", {"instruction": ""}, "instruction"),
    ("oversize instruction", {"instruction": "i" * 1001}, "instruction"),
    ("panel zero", {"panel": 0}, "panel"),
    ("not an image", {"reference_image": b"GIF89a this is not a picture"}, "reference_image"),
    ("text claiming to be png", {"reference_image": b"\x89PNG\r\n\x1a\n" + b"0" * 64}, "reference_image"),
    ("oversize image", {"reference_image": _png(8) + b"\0" * (8 * 1024 * 1024)}, "reference_image"),
]


@pytest.mark.parametrize(("case", "fields", "field"), REGENERATE_CASES, ids=[c[0] for c in REGENERATE_CASES])
async def test_regenerate_rejects_bad_input(
    session: Session, case: str, fields: dict[str, Any], field: str
) -> None:
    request = jobs_pb2.RegeneratePanelRequest(name=f"jobs/{uuid.uuid4()}", panel=1, instruction="brighter")
    for key, value in fields.items():
        setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.RegeneratePanel(request, metadata=session.metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)


async def test_regenerate_panel_out_of_the_jobs_range(session: Session) -> None:
    job = await session.create_job(panels=2)
    await session.events(job.name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.RegeneratePanel(
            jobs_pb2.RegeneratePanelRequest(name=job.name, panel=3, instruction="more"),
            metadata=session.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "panel" in field_violations(caught.value)
    done = await session.get(job.name)
    assert [len(p.versions) for p in done.panels] == [1, 1]


async def test_export_needs_a_format(session: Session) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.ExportJob(
            jobs_pb2.ExportJobRequest(name=f"jobs/{uuid.uuid4()}"), metadata=session.metadata
        )
    assert "format" in field_violations(caught.value)


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-real-token"),), (("authorization", "Basic abc"),)],
    ids=["no token", "unknown token", "wrong scheme"],
)
async def test_calls_without_a_valid_session_are_unauthenticated(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    session = await new_session(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.CreateJob(
            jobs_pb2.CreateJobRequest(story="hello", panel_count=1), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
