"""A watch keeps delivering live events while a gap-fill from the job store is still under way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mangakai.v1 import common_pb2
from mangakai_gateway.watch import JobEventHub
from mangakai_runtime.subjects import Subjects


class _Subscription:
    async def unsubscribe(self) -> None:
        pass


class _JetStream:
    """Just enough of a JetStreamContext: remembers the callback of the job's subscription."""

    def __init__(self) -> None:
        self.deliver: Callable[[Any], Awaitable[None]] | None = None

    async def subscribe(self, subject: str, cb: Callable[[Any], Awaitable[None]], **_: Any) -> _Subscription:
        self.deliver = cb
        return _Subscription()


class _Msg:
    def __init__(self, event: common_pb2.JobEvent) -> None:
        self.data = event.SerializeToString()
        self.subject = "mangakai.jobs.x.events"


def _event(job_id: uuid.UUID, sequence: int) -> common_pb2.JobEvent:
    return common_pb2.JobEvent(job=f"jobs/{job_id}", sequence=sequence)


async def test_live_events_flow_while_a_gap_fill_hangs() -> None:
    js = _JetStream()
    hub = JobEventHub(js, Subjects(), idle_seconds=0.05)  # type: ignore[arg-type]
    job_id = uuid.uuid4()
    store_answers = asyncio.Event()
    asked = asyncio.Event()
    fills = 0

    async def fill_gap(ident: uuid.UUID, after: int) -> list[common_pb2.JobEvent]:
        nonlocal fills
        fills += 1
        asked.set()
        await store_answers.wait()  # the job store is slow to answer
        return []

    watch = hub.watch(job_id, 0, fill_gap)
    first = asyncio.create_task(anext(watch))
    await asyncio.wait_for(asked.wait(), timeout=2)  # the watcher went idle and asked the store
    assert js.deliver is not None
    await js.deliver(_Msg(_event(job_id, 1)))

    event = await asyncio.wait_for(first, timeout=2)
    assert event.sequence == 1, "the live event came through while the store had not answered"
    assert fills == 1, "one gap-fill at a time"
    store_answers.set()
    await watch.aclose()
    await hub.close()
