"""The job worker: takes job runs from the shared JetStream work consumer and runs them.

Any replica can take any job. While a replica runs a job it holds a lease in
PostgreSQL and keeps the JetStream message alive with in-progress acks; if it
dies, the message is redelivered after `ack_wait_seconds` and another replica
(or the restarted one) claims the job and resumes it. A job delivered more
than `max_job_attempts` times is failed, so every accepted job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime

import prometheus_client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from opentelemetry import trace

from mangakai.v1 import common_pb2
from mangakai_orchestrator.events import EventRelay, publish_work
from mangakai_orchestrator.metrics import (
    ACTIVE_JOBS,
    JOBS_FINISHED,
    WORK_PENDING,
    finished_label,
)
from mangakai_orchestrator.runner import JobRunner
from mangakai_orchestrator.settings import OrchestratorSettings
from mangakai_orchestrator.store import JobStore
from mangakai_runtime.log import job_id_var
from mangakai_runtime.subjects import Subjects
from mangakai_runtime.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

QUEUE_SAMPLE_SECONDS = 5.0
FETCH_RETRY_SECONDS = 0.5
# Next to the sampling that sets it (mangakai_orchestrator.metrics holds the others).
WORK_OLDEST_PENDING = prometheus_client.Gauge(
    "mangakai_work_oldest_pending_seconds",
    "Age of the oldest job run waiting in the JetStream work consumer (0 when none waits).",
)


class JobWorker:
    """Pulls job runs while this replica has room for more, and runs each under a lease."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        store: JobStore,
        runner: JobRunner,
        relay: EventRelay,
        settings: OrchestratorSettings,
        owner: str,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._store = store
        self._runner = runner
        self._relay = relay
        self._settings = settings
        self._owner = owner
        self._active: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        subscription = await self._subscribe()
        try:
            while True:
                room = self._settings.max_active_jobs - len(self._active)
                if room <= 0:
                    await asyncio.wait(self._active, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await subscription.fetch(room, timeout=2)
                except (NatsTimeoutError, TimeoutError):
                    continue
                except NatsError as exc:
                    # A NATS node going away, a JetStream leader election, a reconnect: the
                    # durable consumer outlives them all, so wait a moment and fetch again.
                    # Dying here would take the jobs this replica holds down with it.
                    log.warning("fetching work failed (%r); fetching again", exc)
                    await asyncio.sleep(FETCH_RETRY_SECONDS)
                    continue
                for message in messages:
                    task = asyncio.create_task(self._handle(message))
                    self._active.add(task)
                    task.add_done_callback(self._active.discard)
        finally:
            # Shutting down: hand every held job back for another replica to take at once.
            for task in list(self._active):
                task.cancel()
            await asyncio.gather(*self._active, return_exceptions=True)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        """The pull subscription on the shared durable work consumer, waiting out a NATS cluster
        that has no JetStream leader yet (a fresh or restarting cluster)."""
        while True:
            try:
                return await self._js.pull_subscribe(
                    self._subjects.work,
                    durable=self._subjects.work_consumer,
                    stream=self._subjects.work_stream,
                )
            except (NatsError, TimeoutError) as exc:
                log.warning("subscribing to work failed (%r); retrying", exc)
                await asyncio.sleep(FETCH_RETRY_SECONDS)

    async def _handle(self, message: Msg) -> None:
        try:
            job_id = uuid.UUID(message.data.decode())
        except ValueError:
            log.error("dropping malformed work message %r", message.data[:100])
            await message.term()
            return
        token = job_id_var.set(str(job_id))
        ACTIVE_JOBS.inc()
        try:
            with tracer.start_as_current_span(
                "orchestrator.run_job", context=extract_context(message.headers)
            ) as span:
                span.set_attribute("mangakai.job_id", str(job_id))
                await self._run_claimed(job_id, message)
        finally:
            ACTIVE_JOBS.dec()
            job_id_var.reset(token)

    async def _run_claimed(self, job_id: uuid.UUID, message: Msg) -> None:
        lease = self._settings.ack_wait_seconds
        job = await self._store.claim(job_id, self._owner, lease)
        if job is None:
            left = await self._store.lease_left(job_id)
            if left is None:
                await message.ack()  # ended already: a duplicate delivery
            else:
                # Held by another worker whose lease has not run out yet (it may have just
                # died): ask again once the lease is over.
                await message.nak(delay=left + 0.5)
            return
        if job.attempts > self._settings.max_job_attempts:
            log.error("job %s failed after %d attempts", job_id, job.attempts - 1)
            await self._store.finish_job(
                job_id, reason=f"the job could not be finished after {job.attempts - 1} attempts"
            )
            self._relay.kick(job_id)
            JOBS_FINISHED.labels(finished_label(common_pb2.Job.STATE_FAILED)).inc()
            await message.ack()
            return
        heartbeat = asyncio.create_task(self._heartbeat(job_id, message))
        try:
            await self._runner.run(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._store.release(job_id, self._owner)
                await message.nak()
            raise
        except Exception:
            log.exception("job %s interrupted; it will be retried", job_id)
            with contextlib.suppress(Exception):
                await self._store.release(job_id, self._owner)
                await message.nak(delay=min(30.0, 2.0 * job.attempts))
            return
        finally:
            heartbeat.cancel()
        await self._store.release(job_id, self._owner)
        await message.ack()

    async def _heartbeat(self, job_id: uuid.UUID, message: Msg) -> None:
        interval = self._settings.ack_wait_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await message.in_progress()
                await self._store.renew_lease(job_id, self._owner, self._settings.ack_wait_seconds)
            except Exception:
                log.warning("heartbeat for job %s failed", job_id, exc_info=True)


class StaleJobSweeper:
    """Queues again any active job that nobody holds and that has not moved for a while.

    This is the backstop for a work message lost before it reached the stream
    (for example NATS down when the job was created). Every few seconds it also
    samples the work queue for the metrics: how many job runs wait, and how long
    the oldest has waited (what autoscaling and the backlog alert read).
    """

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, store: JobStore, settings: OrchestratorSettings
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._store = store
        self._settings = settings

    async def run(self) -> None:
        interval = max(1.0, min(30.0, self._settings.stale_job_seconds / 4))
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + interval
        while True:
            await self._sample_queue()
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + interval
                try:
                    await self._sweep()
                except Exception:
                    log.warning("stale job sweep failed", exc_info=True)
            await asyncio.sleep(min(QUEUE_SAMPLE_SECONDS, interval))

    async def _sample_queue(self) -> None:
        try:
            info = await self._js.consumer_info(self._subjects.work_stream, self._subjects.work_consumer)
        except Exception:
            log.debug("work consumer info unavailable", exc_info=True)
            return
        pending = info.num_pending or 0
        age = 0.0
        if pending and info.delivered is not None:
            # The oldest waiting run is the first work message after the last one delivered.
            try:
                oldest = await self._js.get_msg(
                    self._subjects.work_stream,
                    seq=info.delivered.stream_seq + 1,
                    subject=self._subjects.work,
                    next=True,
                )
            except Exception:
                log.debug("oldest work message unavailable", exc_info=True)
            else:
                if oldest.time is not None:
                    age = max(0.0, (datetime.now(UTC) - oldest.time).total_seconds())
        WORK_PENDING.set(pending)
        WORK_OLDEST_PENDING.set(age)

    async def _sweep(self) -> None:
        for job_id in await self._store.stale_jobs(self._settings.stale_job_seconds):
            log.warning("queueing stale job %s again", job_id)
            await publish_work(
                self._js, self._subjects, job_id, 0, dedupe_suffix=f":sweep:{int(time.time())}"
            )
