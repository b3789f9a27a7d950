"""Property-based fuzzing of the public API (Hypothesis), over gRPC and Connect alike.

For every public RPC, at least 2 000 generated requests (100 examples of 20
requests sent at once) go to a real stack: boundary and random strings (NUL,
lone surrogates, zero-width, huge), random enum numbers and names, random
bytes as images, bytes that are not protobuf, random and real job names and
tokens, over gRPC, Connect with the binary codec and Connect with JSON. The
properties: no call is answered INTERNAL or UNKNOWN (or HTTP 5xx), and no
rejected call writes anything: the rows of sessions, jobs and panel versions
and the reference-image blobs grow exactly by what the accepted calls made.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mangakai.v1 import common_pb2, jobs_pb2, sessions_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import STORY_EN, new_session
from tests.integration.security.crafted_images import bomb_png, png

BATCH = 20
EXAMPLES = 100  # x BATCH: 2 000 requests per RPC
FORBIDDEN = {"INTERNAL", "UNKNOWN"}
WATCH_SECONDS = 3.0

# ---- the stack and the state the properties are checked against ------------------------------


@dataclass
class Target:
    """The stack under test, its sessions and jobs, and what accepted calls have done so far."""

    stack: Stack
    channel: grpc.aio.Channel
    http: aiohttp.ClientSession
    db: asyncpg.Connection
    token: str
    own_job: str
    other_job: str
    other_token: str
    baseline: dict[str, int]
    sessions_created: int = 0
    jobs_created: set[str] = field(default_factory=set)
    regenerations: dict[str, int] = field(default_factory=dict)
    references: set[tuple[str, str]] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        assert self.stack.web_url is not None
        return self.stack.web_url.rstrip("/")


async def _counts(db: asyncpg.Connection, job: str) -> dict[str, int]:
    job_id = uuid.UUID(job.removeprefix("jobs/"))
    return {
        "sessions": await db.fetchval("SELECT count(*) FROM sessions"),
        "jobs": await db.fetchval("SELECT count(*) FROM jobs"),
        "own_versions": await db.fetchval("SELECT count(*) FROM panel_versions WHERE job_id = $1", job_id),
    }


def _reference_blobs(stack: Stack) -> int:
    return sum(1 for p in (stack.base_dir / "blobs" / "refs" / "jobs").glob("*/references/*") if p.is_file())


@pytest.fixture(scope="module")
def fuzz_stack(make_module_stack: StackFactory) -> Stack:
    # The default per-session limit keeps the accepted expensive calls few; the ceiling keeps
    # the jobs that fuzzing starts from loading the machine.
    return make_module_stack({"gateway": {"MAX_JOBS_IN_FLIGHT": "4", "RATE_LIMIT_NEW_SESSION_CALLS": "0"}})


@pytest.fixture(scope="module")
async def target(fuzz_stack: Stack) -> AsyncIterator[Target]:
    async with (
        grpc.aio.insecure_channel(fuzz_stack.gateway_address) as channel,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        own, other = await new_session(channel), await new_session(channel)
        own_job = await own.create_job(story=STORY_EN, panels=1)
        other_job = await other.create_job(story=STORY_EN, panels=1)
        for session, job in ((own, own_job), (other, other_job)):
            await session.events(job.name)
        db = await asyncpg.connect(fuzz_stack.database_url)
        try:
            yield Target(
                stack=fuzz_stack,
                channel=channel,
                http=http,
                db=db,
                token=own.token,
                own_job=own_job.name,
                other_job=other_job.name,
                other_token=other.token,
                baseline=await _counts(db, own_job.name) | {"references": _reference_blobs(fuzz_stack)},
            )
        finally:
            await db.close()


# ---- what is generated -------------------------------------------------------------------------

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_boundary_texts = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        ZERO_WIDTH,
        " \u3000\n\t",
        "x" * 100,
        "x" * 101,
        "x" * 1000,
        "x" * 1001,
        "s" * 20_000,
        "s" * 20_001,
        "\u202eevil",
        "'; DROP TABLE jobs; --",
        "夏祭りの夜、金魚すくい。",
        "🦀" * 50,
    ]
)
texts = st.one_of(_boundary_texts, st.text(max_size=40), st.just("y" * 200_000), st.just(STORY_EN))
# Lone surrogates cannot be put in a protobuf message; they go in Connect JSON only.
# One at a time between other characters: two in a row may make a valid pair.
surrogate_texts = st.characters(categories=["Cs"]).map(lambda c: f"ok {c} ok")
int32s = st.one_of(
    st.sampled_from([0, 1, -1, 2, 24, 25, 100, 101, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
int64s = st.one_of(st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1))
enum_numbers = st.one_of(st.integers(0, 12), int32s)


_PNG = png(32, 32)
images = st.one_of(
    st.just(b""),
    st.binary(max_size=256),
    st.sampled_from([_PNG, _PNG[:40], bomb_png(100_000, 100_000), bomb_png(7000, 7000), b"GIF89a" + _PNG]),
    st.binary(min_size=1, max_size=64).map(lambda tail: png(8, 8) + tail),
)


@st.composite
def job_names(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["own", "other", "random", "text", "malformed"]))
    if kind == "random":
        return f"jobs/{uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))}"
    if kind == "text":
        return draw(texts)
    if kind == "malformed":
        return draw(
            st.sampled_from(["jobs/", "jobs/../../etc/passwd", f"sessions/{uuid.uuid4()}", "jobs/%00"])
        )
    return kind  # replaced by the real name when sent


def _page_tokens() -> st.SearchStrategy[str]:
    crafted = st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00|" + str(uuid.uuid4()),
            "9999-12-31T23:59:59-14:00|" + str(uuid.uuid4()),
            "2026-01-01T00:00:00|" + str(uuid.uuid4()),
            "2026-01-01T00:00:00+00:00|x",
        ]
    ).map(lambda t: base64.urlsafe_b64encode(t.encode()).decode())
    return st.one_of(
        crafted, texts, st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode())
    )


def _styles() -> st.SearchStrategy[common_pb2.StylePreferences]:
    return st.builds(
        common_pb2.StylePreferences,
        art_style=enum_numbers,
        mood=enum_numbers,
        color_palette=enum_numbers,
        character_style=enum_numbers,
        line_style=enum_numbers,
        composition=enum_numbers,
        notes=texts,
    )


REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    "SessionService/CreateSession": st.builds(sessions_pb2.CreateSessionRequest, client=texts),
    "JobService/CreateJob": st.builds(
        jobs_pb2.CreateJobRequest,
        story=texts,
        panel_count=int32s,
        style=_styles(),
        layout=enum_numbers,
        reading_order=enum_numbers,
        request_id=st.one_of(texts, st.sampled_from(["", "fuzz-1", "fuzz-2"])),
    ),
    "JobService/GetJob": st.builds(jobs_pb2.GetJobRequest, name=job_names()),
    "JobService/ListJobs": st.builds(jobs_pb2.ListJobsRequest, page_size=int32s, page_token=_page_tokens()),
    "JobService/CancelJob": st.builds(jobs_pb2.CancelJobRequest, name=job_names()),
    "JobService/WatchJob": st.builds(jobs_pb2.WatchJobRequest, name=job_names(), after_sequence=int64s),
    "JobService/RegeneratePanel": st.builds(
        jobs_pb2.RegeneratePanelRequest,
        name=job_names(),
        # Often a request that may be accepted, so that what accepted calls write is checked too.
        panel=st.one_of(st.just(1), int32s),
        instruction=st.one_of(st.just("brighter, with rain"), texts),
        reference_image=images,
    ),
    "JobService/SetCurrentPanelVersion": st.builds(
        jobs_pb2.SetCurrentPanelVersionRequest, name=job_names(), panel=int32s, version=int32s
    ),
    "JobService/ExportJob": st.builds(jobs_pb2.ExportJobRequest, name=job_names(), format=enum_numbers),
}
RESPONSES: dict[str, type[Message]] = {
    "SessionService/CreateSession": sessions_pb2.Session,
    "JobService/CreateJob": common_pb2.Job,
    "JobService/RegeneratePanel": common_pb2.Panel,
}


@dataclass
class Call:
    """One generated request and how it is sent."""

    method: str
    message: Message
    protocol: str  # "grpc", "connect-proto" or "connect-json"
    auth: str  # "own", "other", "none" or "garbage"
    corruption: bytes = b""  # prefixed to the encoded message: bytes that may not decode
    json_mutation: tuple[str, Any] | None = None  # (JSON field, value) set in Connect JSON


_corruptions = st.one_of(
    st.just(b""),
    st.just(b""),
    st.sampled_from([b"\x0a\x02\xff\xfe", b"\x0a\x7fab", b"\xff\xff\xff\xff", b"\x0b", b"\x0a\x01\xc3"]),
    st.binary(min_size=1, max_size=16),
)


@st.composite
def calls(draw: st.DrawFn, method: str) -> Call:
    message = draw(REQUESTS[method])
    protocol = draw(st.sampled_from(["grpc", "connect-proto", "connect-json"]))
    auth = draw(st.sampled_from(["own", "own", "own", "own", "other", "none", "garbage"]))
    call = Call(method, message, protocol, auth)
    if protocol == "connect-json":
        names = [f.json_name for f in message.DESCRIPTOR.fields if f.type == f.TYPE_STRING or f.enum_type]
        if names and draw(st.integers(0, 4)) == 0:
            name = draw(st.sampled_from(names))
            is_enum = message.DESCRIPTOR.fields_by_camelcase_name[name].enum_type is not None
            call.json_mutation = (
                name,
                draw(st.text(max_size=12).map(lambda s: "NOPE_" + s)) if is_enum else draw(surrogate_texts),
            )
    elif draw(st.integers(0, 3)) == 0:
        call.corruption = draw(_corruptions)
    return call


# ---- sending ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: str  # a gRPC status code name, or "HTTP <status>"
    body: bytes = b""


def _named(target: Target, message: Message) -> Message:
    """The message with "own"/"other" job names replaced by the real ones."""
    real = {"own": target.own_job, "other": target.other_job}
    if "name" in message.DESCRIPTOR.fields_by_name and message.name in real:
        copy = type(message)()
        copy.CopyFrom(message)
        copy.name = real[message.name]  # type: ignore[attr-defined]
        return copy
    return message


def _token(target: Target, auth: str) -> str:
    return {"own": target.token, "other": target.other_token, "none": "", "garbage": "x" * 43}[auth]


async def _send_grpc(target: Target, call: Call, message: Message) -> Outcome:
    token = _token(target, call.auth)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    payload = call.corruption + message.SerializeToString()
    path = f"/mangakai.v1.{call.method}"
    try:
        if call.method.endswith("WatchJob"):
            stream = target.channel.unary_stream(path)(payload, metadata=metadata, timeout=WATCH_SECONDS)
            async for _ in stream:
                pass
            return Outcome("OK")
        body = await target.channel.unary_unary(path)(payload, metadata=metadata, timeout=30)
        return Outcome("OK", body)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code().name)


def _connect_code(status: int, body: bytes) -> str:
    try:
        code = str(json.loads(body).get("code", ""))
    except ValueError:
        code = ""
    if not code:
        return f"HTTP {status}"
    return "CANCELLED" if code == "canceled" else code.upper()


async def _send_connect(target: Target, call: Call, message: Message) -> Outcome:
    token = _token(target, call.auth)
    streaming = call.method.endswith("WatchJob")
    codec = "json" if call.protocol == "connect-json" else "proto"
    if codec == "json":
        document = json_format.MessageToDict(message)
        if call.json_mutation is not None:
            document[call.json_mutation[0]] = call.json_mutation[1]
        payload = json.dumps(document).encode()
    else:
        payload = call.corruption + message.SerializeToString()
    headers = {"Connect-Protocol-Version": "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if streaming:
        headers["Content-Type"] = f"application/connect+{codec}"
        payload = struct.pack(">BI", 0, len(payload)) + payload
    else:
        headers["Content-Type"] = f"application/{codec}"
    url = f"{target.web_url}/mangakai.v1.{call.method}"
    try:
        async with target.http.post(url, data=payload, headers=headers) as response:
            if not streaming:
                body = await response.read()
                return (
                    Outcome("OK", body)
                    if response.status == 200
                    else Outcome(_connect_code(response.status, body))
                )
            if response.status != 200:
                return Outcome(_connect_code(response.status, await response.read()))
            async with asyncio.timeout(WATCH_SECONDS):
                body = await response.read()
    except TimeoutError:
        return Outcome("DEADLINE_EXCEEDED")
    # The last envelope of a stream (flag 2) holds its end: {"error": {...}} when it failed.
    position, end = 0, b"{}"
    while position + 5 <= len(body):
        flags, length = struct.unpack(">BI", body[position : position + 5])
        if flags & 2:
            end = body[position + 5 : position + 5 + length]
        position += 5 + length
    error = json.loads(end or b"{}").get("error")
    return Outcome(_connect_code(200, json.dumps(error).encode()) if error else "OK")


async def _send(target: Target, call: Call) -> None:
    message = _named(target, call.message)
    outcome = await (_send_grpc if call.protocol == "grpc" else _send_connect)(target, call, message)
    target.codes[outcome.code] = target.codes.get(outcome.code, 0) + 1
    assert outcome.code not in FORBIDDEN and not outcome.code.startswith("HTTP 5"), (call, outcome)
    if outcome.code != "OK":
        return
    # An unknown enum name or a lone surrogate is never valid.
    assert call.json_mutation is None, ("accepted an invalid request", call)
    # Nothing of another session's is anyone else's business (NOT_FOUND).
    assert not (call.auth == "own" and getattr(message, "name", "") == target.other_job), (
        "reached another session's job",
        call,
    )
    _record(target, call.method, message, outcome, call.protocol)


def _record(target: Target, method: str, message: Message, outcome: Outcome, protocol: str) -> None:
    """Counts what an accepted call wrote."""
    response_type = RESPONSES.get(method)
    if response_type is None:
        return
    response = (
        json_format.Parse(outcome.body, response_type(), ignore_unknown_fields=True)
        if protocol == "connect-json"
        else response_type.FromString(outcome.body)
    )
    if isinstance(response, sessions_pb2.Session):
        target.sessions_created += 1
    elif isinstance(response, common_pb2.Job):
        target.jobs_created.add(response.name)
    elif isinstance(message, jobs_pb2.RegeneratePanelRequest):
        target.regenerations[message.name] = target.regenerations.get(message.name, 0) + 1
        if message.reference_image:
            target.references.add((message.name, hashlib.sha256(message.reference_image).hexdigest()))


async def _assert_nothing_else_written(target: Target) -> None:
    counts = await _counts(target.db, target.own_job)
    base = target.baseline
    assert counts["sessions"] == base["sessions"] + target.sessions_created, (counts, target.sessions_created)
    assert counts["jobs"] == base["jobs"] + len(target.jobs_created), (counts, target.jobs_created)
    assert counts["own_versions"] == base["own_versions"] + target.regenerations.get(target.own_job, 0)
    assert _reference_blobs(target.stack) == base["references"] + len(target.references)


async def _send_all(target: Target, batch: list[Call]) -> None:
    await asyncio.gather(*(_send(target, call) for call in batch))


@pytest.mark.parametrize("method", sorted(REQUESTS), ids=lambda m: m.rpartition("/")[2])
async def test_fuzzed_requests_get_clean_answers_and_rejected_ones_write_nothing(
    target: Target, method: str
) -> None:
    loop = asyncio.get_running_loop()

    # Hypothesis runs in a thread of its own and hands each batch to this loop, where the
    # channel and the HTTP client live; a failing batch fails (and is shrunk) in Hypothesis.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=st.lists(calls(method), min_size=BATCH, max_size=BATCH))
    def fuzz(batch: list[Call]) -> None:
        asyncio.run_coroutine_threadsafe(_send_all(target, batch), loop).result(timeout=300)

    before = sum(target.codes.values())
    await asyncio.to_thread(fuzz)
    assert sum(target.codes.values()) - before >= EXAMPLES * BATCH
    await _assert_nothing_else_written(target)
    print(f"{method}: answers so far {dict(sorted(target.codes.items()))}")
