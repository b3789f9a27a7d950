"""Entry point: `python -m mangakai_orchestrator`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

from mangakai.v1 import orchestrator_pb2_grpc
from mangakai_orchestrator import events
from mangakai_orchestrator.clients import Backends
from mangakai_orchestrator.exports import ExportCache
from mangakai_orchestrator.leases import JobLeases
from mangakai_orchestrator.outbox import EventOutbox
from mangakai_orchestrator.retention import RetentionSweeper
from mangakai_orchestrator.runner import JobRunner
from mangakai_orchestrator.servicer import OrchestratorServicer
from mangakai_orchestrator.settings import OrchestratorSettings
from mangakai_orchestrator.store import JobStore
from mangakai_orchestrator.worker import JobWorker, StaleJobSweeper
from mangakai_runtime.database import apply_migrations, create_pool
from mangakai_runtime.server import ServiceMain
from mangakai_runtime.subjects import Subjects

MIGRATIONS = Path(__file__).parent / "migrations"
POOL_CLOSE_SECONDS = 1.0


async def main() -> None:
    settings = OrchestratorSettings.from_env()
    service = ServiceMain("orchestrator", settings)
    service.setup()
    pool = await create_pool(settings.database_url, max_size=20)
    await apply_migrations(pool, "orchestrator", MIGRATIONS)
    nc = await events.connect(settings.nats_url, "orchestrator")
    js = nc.jetstream()
    subjects = Subjects(settings.nats_namespace)
    await events.ensure_streams(
        js,
        subjects,
        event_max_age_seconds=settings.event_retention_days * 86400,
        ack_wait_seconds=settings.ack_wait_seconds,
        replicas=settings.nats_replicas,
    )
    store = JobStore(pool)
    leases = JobLeases(pool)
    outbox = EventOutbox(pool)
    backends = Backends(settings.renderer_addr, settings.storage_addr)
    relay = events.EventRelay(js, subjects, outbox.relay_events, outbox.jobs_with_unpublished_events)
    runner = JobRunner(store, backends, relay, nc, subjects, settings)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    worker = JobWorker(js, subjects, store, leases, runner, relay, settings, owner)
    sweeper = StaleJobSweeper(js, subjects, leases, settings)
    retention = RetentionSweeper(
        pool,
        backends.blobs,
        retention_days=settings.retention_days,
        partial_grace_seconds=settings.partial_blob_grace_seconds,
        interval_seconds=settings.retention_sweep_seconds,
    )
    servicer = OrchestratorServicer(
        store, outbox, ExportCache(pool), backends, relay, nc, js, subjects, retention
    )

    async def close() -> None:
        # The worker has handed its jobs back by now (background tasks stop first): what they
        # wrote on the way out is published before NATS closes, then the clients close.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_grace_seconds / 2):
                await relay.flush()
        await events.close(nc)
        await backends.close()
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
        except TimeoutError:
            pool.terminate()  # a connection stuck on an unreachable PostgreSQL

    service.on_shutdown.append(close)
    await service.serve(
        [
            (
                orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                servicer,
                "mangakai.v1.OrchestratorService",
            )
        ],
        background=[relay.run, worker.run, sweeper.run, retention.run],
    )


if __name__ == "__main__":
    asyncio.run(main())
