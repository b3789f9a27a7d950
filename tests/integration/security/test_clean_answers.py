"""Every bad input gets a clean answer (INVALID_ARGUMENT naming the field), and a refused call writes nothing.

The inputs a hostile client sent when the public API was attacked (issue 11):
NUL characters, invisible stories, decompression bombs, crafted page tokens,
bytes that are not protobuf, unknown enum names in Connect JSON, a request_id
reused for another request. Before the fixes these answered INTERNAL or
UNKNOWN with stack traces in the log, or were silently accepted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mangakai.v1 import common_pb2, jobs_pb2, sessions_pb2, sessions_pb2_grpc
from mangakai_devstack.stack import Stack
from tests.integration.gateway import connect_client
from tests.integration.mesh_client import Session, fetch, field_violations, new_session
from tests.integration.security.crafted_images import bomb_png, png

STORY = "Mara lit the lamp, and the ferry turned away from the rocks."


@pytest.fixture
async def session(stack: Stack) -> AsyncIterator[Session]:
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        yield await new_session(channel)


async def _invalid(call: Any) -> dict[str, str]:
    """The field violations of a call that must fail with INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    return field_violations(caught.value)


async def _connect_create_job(
    stack: Stack, session: Session, message: dict[str, Any]
) -> connect_client.ConnectResponse:
    """CreateJob over Connect (JSON) on the stack's web listener."""
    assert stack.web_url is not None
    return await asyncio.to_thread(
        connect_client.call, stack.web_url, "mangakai.v1.JobService/CreateJob", message, token=session.token
    )


async def _no_jobs(session: Session) -> None:
    listed = await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session.metadata)
    assert list(listed.jobs) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"story": "Once upon\x00 a time"}, "story"),
        ({"story": "\u200b\u200c\u200d\ufeff\u2060"}, "story"),
        ({"story": " \u3000\u200b\n"}, "story"),
        ({"style": common_pb2.StylePreferences(notes="ink\x00wash")}, "style.notes"),
    ],
    ids=["NUL in story", "zero-width story", "ideographic space and zero-width", "NUL in notes"],
)
async def test_unstorable_or_invisible_text_is_invalid(
    session: Session, fields: dict[str, Any], field: str
) -> None:
    request = jobs_pb2.CreateJobRequest(**({"story": STORY, "panel_count": 1} | fields))
    assert field in await _invalid(session.jobs.CreateJob(request, metadata=session.metadata))
    await _no_jobs(session)


async def test_nul_in_client_and_instruction_is_invalid(stack: Stack, session: Session) -> None:
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        sessions = sessions_pb2_grpc.SessionServiceStub(channel)
        assert "client" in await _invalid(
            sessions.CreateSession(sessions_pb2.CreateSessionRequest(client="a\x00b"))
        )
    request = jobs_pb2.RegeneratePanelRequest(
        name=f"jobs/{uuid.uuid4()}", panel=1, instruction="more\x00light"
    )
    assert "instruction" in await _invalid(session.jobs.RegeneratePanel(request, metadata=session.metadata))


async def test_nul_over_connect_is_a_bad_request_not_a_server_error(stack: Stack, session: Session) -> None:
    response = await _connect_create_job(stack, session, {"story": "a\u0000b", "panelCount": 1})
    assert (response.status, response.code) == (400, "invalid_argument"), response.body
    assert "story" in response.body["message"]


@pytest.mark.parametrize("size", [(100_000, 100_000), (20_000, 20_000)], ids=["bomb", "over the limit"])
async def test_decompression_bomb_reference_is_invalid(session: Session, size: tuple[int, int]) -> None:
    request = jobs_pb2.RegeneratePanelRequest(
        name=f"jobs/{uuid.uuid4()}", panel=1, instruction="brighter", reference_image=bomb_png(*size)
    )
    violations = await _invalid(session.jobs.RegeneratePanel(request, metadata=session.metadata))
    assert "pixels" in violations["reference_image"]


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _token(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}"),
        _token(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}"),
        _token(f"2026-01-01T00:00:00|{uuid.uuid4()}"),
        _token("2026-01-01T00:00:00+00:00|not-a-uuid"),
        _token("\udcff".encode("utf-8", "surrogatepass").decode("latin-1")),
        "%%%%",
        "YQ",
    ],
    ids=[
        "year 1 east of UTC",
        "year 9999 west of UTC",
        "no time zone",
        "bad id",
        "not UTF-8",
        "not base64",
        "short",
    ],
)
async def test_crafted_page_tokens_are_invalid(session: Session, token: str) -> None:
    request = jobs_pb2.ListJobsRequest(page_token=token)
    assert "page_token" in await _invalid(session.jobs.ListJobs(request, metadata=session.metadata))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\x0a\x02\xff\xfe\x20\x01", "story"),  # story: invalid UTF-8
        (b"\x0a\x05ab", "story"),  # story: ends inside the field
        (b"\x1a\x04\x3a\x02\xc3\x28", "style.notes"),  # style.notes: invalid UTF-8
        (b"\xff\xff\xff", ""),  # not protobuf at all
    ],
    ids=["invalid UTF-8", "truncated", "nested invalid UTF-8", "garbage"],
)
async def test_undecodable_bytes_on_the_grpc_port_are_invalid(
    stack: Stack, session: Session, payload: bytes, field: str
) -> None:
    async with grpc.aio.insecure_channel(stack.gateway_address) as channel:
        raw = channel.unary_unary("/mangakai.v1.JobService/CreateJob")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(payload, metadata=session.metadata, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert "class" not in (caught.value.details() or "")
    assert field in field_violations(caught.value)
    await _no_jobs(session)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"story": STORY, "style": {"artStyle": "ART_STYLE_TYPO"}}, "style.art_style"),
        ({"story": STORY, "layout": "PAGE_LAYOUT_SPIRAL"}, "layout"),
        ({"story": STORY, "reading_order": "SIDEWAYS"}, "reading_order"),
    ],
    ids=["nested camelCase", "top level", "proto field name"],
)
async def test_unknown_enum_names_in_connect_json_are_invalid(
    stack: Stack, session: Session, message: dict[str, Any], field: str
) -> None:
    response = await _connect_create_job(stack, session, message)
    assert (response.status, response.code) == (400, "invalid_argument"), response.body
    violations = [
        error_details_pb2.BadRequest.FromString(base64.b64decode(d["value"] + "=" * (-len(d["value"]) % 4)))
        for d in response.body.get("details", [])
        if d.get("type") == "google.rpc.BadRequest"
    ]
    assert field in {v.field for bad in violations for v in bad.field_violations}, response.body
    await _no_jobs(session)


async def test_connect_json_still_ignores_unknown_fields(stack: Stack, session: Session) -> None:
    response = await _connect_create_job(
        stack,
        session,
        {"story": STORY, "panelCount": 1, "style": {"artStyle": "ART_STYLE_CHIBI"}, "fieldOfTomorrow": 1},
    )
    assert response.code == "ok", response.body
    assert response.body["style"]["artStyle"] == "ART_STYLE_CHIBI"


async def test_request_id_reused_for_another_request_is_refused(session: Session) -> None:
    first = await session.create_job(story=STORY, panels=1, request_id="same-id")
    again = await session.create_job(story=STORY, panels=1, request_id="same-id")
    assert again.name == first.name
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.create_job(story=STORY + " Then it rained.", panels=1, request_id="same-id")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    infos = [
        error_details_pb2.ErrorInfo.FromString(d.value)
        for d in status.details
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
    ]
    assert [info.reason for info in infos] == ["REQUEST_ID_REUSED"]
    listed = await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session.metadata)
    assert [job.name for job in listed.jobs] == [first.name]


def _references(stack: Stack, job_name: str) -> list[Path]:
    folder = stack.base_dir / "blobs" / "refs" / job_name / "references"
    return sorted(folder.rglob("*")) if folder.exists() else []


async def test_rejected_regeneration_stores_no_reference_image(stack: Stack, session: Session) -> None:
    reference = png(64, 64)
    running = await session.create_job(story=STORY, panels=1)
    # Refused while the job runs (FAILED_PRECONDITION) ...
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await session.jobs.RegeneratePanel(
            jobs_pb2.RegeneratePanelRequest(
                name=running.name, panel=1, instruction="rain", reference_image=reference
            ),
            metadata=session.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value
    await session.events(running.name)
    # ... and for a panel the job does not have (INVALID_ARGUMENT).
    violations = await _invalid(
        session.jobs.RegeneratePanel(
            jobs_pb2.RegeneratePanelRequest(
                name=running.name, panel=3, instruction="rain", reference_image=reference
            ),
            metadata=session.metadata,
        )
    )
    assert "panel" in violations
    assert _references(stack, running.name) == []
    # An accepted regeneration does store it (so the check above looks in the right place).
    await session.jobs.RegeneratePanel(
        jobs_pb2.RegeneratePanelRequest(
            name=running.name, panel=1, instruction="rain", reference_image=reference
        ),
        metadata=session.metadata,
    )
    assert len([p for p in _references(stack, running.name) if p.is_file()]) == 1


async def test_signed_panel_urls_are_privately_cached_until_they_expire(session: Session) -> None:
    job = await session.create_job(story=STORY, panels=1)
    await session.events(job.name)
    done = await session.get(job.name)
    uri = done.panels[0].versions[-1].image.uri
    expires = int(parse_qs(urlsplit(uri).query)["expires"][0])
    _, headers = await asyncio.to_thread(fetch, uri)
    directive, max_age = headers["cache-control"].split(", max-age=")
    assert directive == "private", headers
    served = parsedate_to_datetime(headers["date"]).timestamp()
    assert 0 <= int(max_age) <= expires - served + 1, (headers, expires)


async def _leave_a_connect_watch(web_url: str, token: str, job_name: str) -> None:
    """Starts WatchJob over Connect (server streaming), reads the first bytes, and hangs up."""
    url = urlsplit(web_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = json.dumps({"name": job_name}).encode()
    envelope = struct.pack(">BI", 0, len(body)) + body
    writer.write(
        (
            "POST /mangakai.v1.JobService/WatchJob HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            "Content-Type: application/connect+json\r\n"
            "Connect-Protocol-Version: 1\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Length: {len(envelope)}\r\n\r\n"
        ).encode()
        + envelope
    )
    await writer.drain()
    assert b" 200 " in await reader.readline()
    await reader.readuntil(b"\r\n\r\n")
    await reader.read(1)  # the first event is on its way
    writer.close()
    await writer.wait_closed()


async def test_watchers_leaving_are_logged_as_info_not_errors(stack: Stack, session: Session) -> None:
    assert stack.web_url is not None
    job = await session.create_job(story=STORY, panels=2)
    grpc_call = session.watch(job.name)
    async for _ in grpc_call:
        break  # the first event: the watch is under way
    grpc_call.cancel()
    await _leave_a_connect_watch(stack.web_url, session.token, job.name)
    log = stack.service("gateway").log_path
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        left = [r for r in records if "stopped watching" in r.get("message", "") and job.name in r["message"]]
        if len(left) >= 2:
            break
        assert asyncio.get_running_loop().time() < deadline, f"watchers leaving were not logged: {left}"
        await asyncio.sleep(0.1)
    assert {r["level"] for r in left} == {"INFO"}, left
    errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL") and "Watch" in json.dumps(r)]
    assert errors == [], errors
