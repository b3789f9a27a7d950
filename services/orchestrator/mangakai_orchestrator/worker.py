"""The job worker: takes job runs from the shared JetStream work consumer and runs them.

Any replica can take any job. While a replica runs a job it holds a lease in
PostgreSQL that runs out on its own `lease_seconds` after the last heartbeat,
and keeps the JetStream message alive with in-progress acks (every
`heartbeat_seconds`). If the replica dies, its lease runs out: the sweeper
queues the job again at once, whatever the consumer's ack-wait, and another
replica (or the restarted one) claims and resumes it. A run interrupted by a
database or NATS error is handed back (NAK) with a short delay, and the lease
released, each on its own: one failing never keeps the other from happening.
A job claimed more than `max_job_attempts` times in one run is failed, so every
accepted job ends.
"""

from __future__ import annotations

import asyncio
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
from mangakai_orchestrator.leases import JobLeases
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
        leases: JobLeases,
        runner: JobRunner,
        relay: EventRelay,
        settings: OrchestratorSettings,
        owner: str,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._store = store
        self._leases = leases
        self._runner = runner
        self._relay = relay
        self._settings = settings
        self._owner = owner
        self._active: set[asyncio.Task[None]] = set()
        self._running: set[uuid.UUID] = set()

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
            # Our pull requests go first (the NAKs below follow the UNSUB on the same connection):
            # JetStream would hand a NAKed run straight back to a pull request of ours still
            # open, to be lost with this process until the ack-wait. A pull subscription left
            # open would also hold NATS' drain to its timeout.
            try:
                await subscription.unsubscribe()
            except Exception:
                log.debug("unsubscribing from work failed", exc_info=True)
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
        settings = self._settings
        if job_id in self._running:
            # Queued again (a lease that lapsed while PostgreSQL was away) while this replica
            # still runs it: one run is enough.
            await message.ack()
            return
        try:
            job = await self._leases.claim(job_id, self._owner, settings.lease_seconds)
            left = None if job is not None else await self._leases.lease_left(job_id)
        except Exception:
            # PostgreSQL away: ask again soon, so the job resumes within moments of its return.
            log.warning("claiming job %s failed; it will be delivered again", job_id, exc_info=True)
            await self._nak(message, settings.retry_seconds)
            return
        if job is None:
            if left is None:
                await message.ack()  # ended already: a duplicate delivery
            else:
                # Held by another worker whose lease has not run out yet (it may have just
                # died): ask again once the lease is over.
                await self._nak(message, left + 0.5)
            return
        log.info("claimed job %s (run %d, attempt %d)", job_id, job.run, job.attempts)
        if job.attempts > settings.max_job_attempts:
            log.error("job %s failed after %d attempts", job_id, job.attempts - 1)
            await self._store.finish_job(
                job_id, reason=f"the job could not be finished after {job.attempts - 1} attempts"
            )
            self._relay.kick(job_id)
            JOBS_FINISHED.labels(finished_label(common_pb2.Job.STATE_FAILED)).inc()
            await message.ack()
            return
        self._running.add(job_id)
        heartbeat = asyncio.create_task(self._heartbeat(job_id, message))
        run = asyncio.create_task(self._runner.run(job))
        try:
            await asyncio.wait({run, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                # The lease ran out (PostgreSQL was away longer than it lasts) and another
                # worker holds the job now: stop, so that it is never run twice at once.
                log.warning("lost the lease on job %s; leaving it to its new holder", job_id)
                run.cancel()
                await asyncio.wait({run})
                await message.ack()  # the new holder has a delivery of its own
                return
            run.result()
        except asyncio.CancelledError:
            # Shutting down: stop the job's work, hand it back for another replica to take at once.
            run.cancel()
            await asyncio.wait({run})
            await self._hand_back(job_id, message, 0.0)
            raise
        except Exception:
            log.exception("job %s interrupted; it will be retried", job_id)
            await self._hand_back(job_id, message, settings.retry_seconds)
            return
        finally:
            heartbeat.cancel()
            self._running.discard(job_id)
        await self._release(job_id)
        await message.ack()

    async def _hand_back(self, job_id: uuid.UUID, message: Msg, delay: float) -> None:
        """NAKs the run and releases the lease, independently: NATS and PostgreSQL fail apart."""
        log.info("handing job %s back", job_id)
        await self._nak(message, delay)
        await self._release(job_id)

    async def _nak(self, message: Msg, delay: float) -> None:
        try:
            await message.nak(delay=delay or None)
        except Exception:
            # The ack-wait (or the sweeper, once the lease is over) delivers it again.
            log.warning("could not hand back a job run", exc_info=True)

    async def _release(self, job_id: uuid.UUID) -> None:
        try:
            await self._leases.release(job_id, self._owner)
        except Exception:
            # The lease runs out on its own within `lease_seconds`.
            log.warning("could not release the lease on job %s", job_id, exc_info=True)

    async def _heartbeat(self, job_id: uuid.UUID, message: Msg) -> None:
        """Keeps the run alive; returns when another worker has taken the lease."""
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            # Each on its own: PostgreSQL down must not stop the in-progress acks, nor NATS the lease.
            try:
                await message.in_progress()
            except Exception:
                log.warning("in-progress ack for job %s failed", job_id, exc_info=True)
            try:
                held = await self._leases.renew_lease(job_id, self._owner, self._settings.lease_seconds)
            except Exception:
                log.warning("renewing the lease on job %s failed", job_id, exc_info=True)
                continue
            if not held:
                return


class StaleJobSweeper:
    """Queues again any active job that nobody holds and that has not moved for a while.

    This is the backstop for a work message lost before it reached the stream
    (for example NATS down when the job was created). Every few seconds it also
    samples the work queue for the metrics: how many job runs wait, and how long
    the oldest has waited (what autoscaling and the backlog alert read).
    """

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, leases: JobLeases, settings: OrchestratorSettings
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._leases = leases
        self._settings = settings

    async def run(self) -> None:
        interval = max(1.0, min(30.0, self._settings.stale_job_seconds / 4))
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + interval
        next_sample = loop.time()
        while True:
            if loop.time() >= next_sample:
                next_sample = loop.time() + QUEUE_SAMPLE_SECONDS
                await self._sample_queue()
            try:
                await self._requeue_expired_leases()
            except Exception:
                log.warning("expired lease sweep failed", exc_info=True)
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + interval
                try:
                    await self._sweep()
                except Exception:
                    log.warning("stale job sweep failed", exc_info=True)
            await asyncio.sleep(self._settings.heartbeat_seconds)

    async def _requeue_expired_leases(self) -> None:
        """Queues again, at once, every job whose worker stopped renewing its lease (it died).

        The message id names the lease that ran out, so each lapse is queued once however
        many replicas sweep; the dead worker's own message comes back later, after the
        consumer's ack-wait, and finds the job held or ended.
        """
        for job_id, expired in await self._leases.expired_leases():
            log.warning("lease on job %s ran out; queueing it again", job_id)
            await publish_work(
                self._js, self._subjects, job_id, 0, dedupe_suffix=f":lease:{expired.timestamp():.3f}"
            )

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
        for job_id in await self._leases.stale_jobs(self._settings.stale_job_seconds):
            log.warning("queueing stale job %s again", job_id)
            await publish_work(
                self._js, self._subjects, job_id, 0, dedupe_suffix=f":sweep:{int(time.time())}"
            )
