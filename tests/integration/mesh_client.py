"""A small test client of the public gateway API, plus helpers to read metrics and errors."""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mangakai.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sessions_pb2, sessions_pb2_grpc

STORY_EN = (
    "The Lantern Keeper\n\n"
    "Mara climbed the lighthouse stairs as the storm rolled in. The lamp had gone dark.\n\n"
    '"We have ten minutes before the ferry reaches the rocks," said Mara.\n\n'
    'Old Tomas handed her the last match. "Then light it well," he said.\n\n'
    "The flame caught. Far below, the ferry turned away from the reef, and the passengers cheered.\n\n"
    "At dawn the sea was calm, and Mara slept beside the warm lamp."
)


class Session:
    """One session's view of the gateway."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.jobs = jobs_pb2_grpc.JobServiceStub(channel)
        self.token = token
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def create_job(self, story: str = STORY_EN, panels: int = 4, **fields: Any) -> common_pb2.Job:
        request = jobs_pb2.CreateJobRequest(story=story, panel_count=panels, **fields)
        job: common_pb2.Job = await self.jobs.CreateJob(request, metadata=self.metadata, timeout=30)
        return job

    async def get(self, name: str) -> common_pb2.Job:
        job: common_pb2.Job = await self.jobs.GetJob(
            jobs_pb2.GetJobRequest(name=name), metadata=self.metadata, timeout=30
        )
        return job

    def watch(self, name: str, after: int = 0) -> Any:
        return self.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(name=name, after_sequence=after), metadata=self.metadata, timeout=180
        )

    async def events(self, name: str, after: int = 0) -> list[common_pb2.JobEvent]:
        """Every event until the stream ends."""
        return [event async for event in self.watch(name, after)]

    async def until(self, name: str, predicate: Any, after: int = 0) -> list[common_pb2.JobEvent]:
        """Events up to and including the first one that satisfies `predicate`, then stops watching."""
        seen: list[common_pb2.JobEvent] = []
        call = self.watch(name, after)
        async for event in call:
            seen.append(event)
            if predicate(event):
                call.cancel()
                return seen
        raise AssertionError(
            f"stream ended before the awaited event; saw {[e.WhichOneof('kind') for e in seen]}"
        )


async def new_session(channel: grpc.aio.Channel) -> Session:
    stub = sessions_pb2_grpc.SessionServiceStub(channel)
    session = await stub.CreateSession(sessions_pb2.CreateSessionRequest(client="tests"), timeout=30)
    return Session(channel, session.token)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, by field."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status details in {error}"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def scrape(port: int, metric: str, **labels: str) -> float:
    """The summed value of a Prometheus metric on a service's metrics port."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = 0.0
    pattern = re.compile(rf"^{re.escape(metric)}(\{{[^}}]*\}})? (\S+)$", re.M)
    for match in pattern.finditer(text):
        label_text = match.group(1) or ""
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def wait_for_metric(port: int, metric: str, predicate: Any, within: float = 30, **labels: str) -> float:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await asyncio.to_thread(scrape, port, metric, **labels)
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{metric} stayed at {value}")
        await asyncio.sleep(0.1)


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    """The body and the headers (names in lower case) of a plain HTTP GET."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), {k.lower(): v for k, v in response.headers.items()}


def unique() -> str:
    return uuid.uuid4().hex
