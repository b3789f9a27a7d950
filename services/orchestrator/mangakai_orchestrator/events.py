"""Job events and work on NATS JetStream: stream set-up, the event relay, work and control subjects.

Subjects (see mangakai_runtime.subjects; "mangakai" is the default namespace):
- `mangakai.jobs.{job_id}.events` (stream MANGAKAI_JOB_EVENTS, limits retention): a job's events in
  sequence order, replayed and tailed by WatchJob.
- `mangakai.work.jobs` (stream MANGAKAI_WORK, work-queue retention): one message per job run,
  consumed by the durable pull consumer every orchestrator replica shares.
- `mangakai.jobs.{job_id}.control` (core NATS): tells the worker running a job to stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from mangakai.v1 import common_pb2
from mangakai_runtime.settings import nats_servers
from mangakai_runtime.subjects import Subjects
from mangakai_runtime.telemetry import inject_headers

log = logging.getLogger(__name__)


# How long closing may wait for subscriptions to drain: well inside any shutdown grace
# (nats-py's default, 30 s, kept an idle orchestrator alive long after SIGTERM).
DRAIN_TIMEOUT_SECONDS = 1


async def connect(url: str, name: str) -> NATS:
    """Connects to NATS (`url`: one server or a comma-separated cluster), reconnecting forever
    in the background after the first success."""
    return await nats.connect(
        servers=nats_servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        drain_timeout=DRAIN_TIMEOUT_SECONDS,
    )


async def close(nc: NATS) -> None:
    """Drains the connection within `DRAIN_TIMEOUT_SECONDS` (plus a flush), else closes it outright."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS + 1):
            await nc.drain()
    except Exception as exc:  # a reconnecting client cannot drain; a late flush times out
        log.info("NATS drain ended early (%r); closing", exc)
    if not nc.is_closed:
        await nc.close()


async def ensure_streams(
    js: JetStreamContext,
    subjects: Subjects,
    *,
    event_max_age_seconds: float,
    ack_wait_seconds: float,
    replicas: int = 1,
) -> None:
    """Creates (or updates) the streams and the shared work consumer.

    `replicas` is how many JetStream servers keep a copy of each stream (3 on the
    3-node cluster of deploy/k8s, so that losing a node loses no job).
    """
    streams = [
        StreamConfig(
            name=subjects.events_stream,
            subjects=[subjects.events_wildcard],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=event_max_age_seconds,
            duplicate_window=120,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.work_stream,
            subjects=[subjects.work],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120,
            num_replicas=replicas,
        ),
    ]
    for config in streams:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    consumer = ConsumerConfig(
        durable_name=subjects.work_consumer,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_seconds,
        deliver_policy=DeliverPolicy.ALL,
        max_deliver=-1,
        filter_subject=subjects.work,
        max_ack_pending=10_000,
    )
    try:
        await js.add_consumer(subjects.work_stream, consumer)
    except BadRequestError:
        log.info("work consumer exists; keeping its configuration")


async def publish_work(
    js: JetStreamContext, subjects: Subjects, job_id: uuid.UUID, run: int, *, dedupe_suffix: str = ""
) -> None:
    """Queues one run of a job. The message id makes a repeated publish of the same run a no-op."""
    headers = inject_headers({"Nats-Msg-Id": f"{job_id}:{run}{dedupe_suffix}"})
    await js.publish(subjects.work, str(job_id).encode(), headers=headers, timeout=5)


class EventRelay:
    """Publishes stored job events to JetStream, in order, as soon as they are written.

    `kick(job_id)` publishes a job's new events now; a periodic sweep catches any
    left behind by a process that died between writing and publishing. Events
    carry the trace context of the code that kicked their job (the CreateJob call,
    the job's run), so a consumer of the events continues the job's trace.
    """

    MAX_TRACED_JOBS = 10_000

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        relay: Callable[[uuid.UUID, Callable[[common_pb2.JobEvent], Awaitable[None]]], Awaitable[int]],
        unpublished: Callable[[], Awaitable[list[uuid.UUID]]],
        *,
        sweep_seconds: float = 1.0,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._relay = relay
        self._unpublished = unpublished
        self._sweep_seconds = sweep_seconds
        self._kicked: set[uuid.UUID] = set()
        self._trace_headers: dict[str, dict[str, str]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

    def kick(self, job_id: uuid.UUID) -> None:
        trace_headers = inject_headers()
        if trace_headers:
            key = str(job_id)
            self._trace_headers.pop(key, None)  # re-inserted last: the oldest entries go first
            self._trace_headers[key] = trace_headers
            while len(self._trace_headers) > self.MAX_TRACED_JOBS:
                del self._trace_headers[next(iter(self._trace_headers))]
        self._kicked.add(job_id)
        self._wake.set()

    async def publish(self, event: common_pb2.JobEvent) -> None:
        job_id = event.job.removeprefix("jobs/")
        trace_headers = (
            self._trace_headers.pop(job_id, {}) if event.terminal else self._trace_headers.get(job_id, {})
        )
        headers = {**trace_headers, "Nats-Msg-Id": f"{job_id}:{event.sequence}"}
        await self._js.publish(
            self._subjects.events(job_id), event.SerializeToString(), headers=headers, timeout=5
        )

    async def flush(self) -> None:
        """Publishes every event still in the outbox (on shutdown, after the worker has stopped)."""
        try:
            jobs = set(self._kicked) | set(await self._unpublished())
        except Exception:
            log.warning("could not read the outbox; the next replica publishes it", exc_info=True)
            return
        self._kicked.clear()
        for job_id in jobs:
            try:
                await self._relay(job_id, self.publish)
            except Exception:
                log.warning("relaying events of job %s failed on shutdown", job_id, exc_info=True)

    async def run(self) -> None:
        last_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._sweep_seconds)
            self._wake.clear()
            jobs = list(self._kicked)
            self._kicked.clear()
            if loop.time() - last_sweep >= self._sweep_seconds:
                last_sweep = loop.time()
                try:
                    jobs.extend(j for j in await self._unpublished() if j not in jobs)
                except Exception:
                    log.exception("event sweep failed")
            for job_id in jobs:
                try:
                    await self._relay(job_id, self.publish)
                except Exception:
                    # Left unpublished; the next sweep retries in order.
                    log.warning("relaying events of job %s failed; will retry", job_id, exc_info=True)
