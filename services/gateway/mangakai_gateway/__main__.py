"""Entry point: `python -m mangakai_gateway`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from mangakai.v1 import jobs_pb2_grpc, orchestrator_pb2_grpc, sessions_pb2_grpc
from mangakai_gateway import connect, web
from mangakai_gateway.assets import StaticAssets
from mangakai_gateway.ceiling import JobsInFlightCeiling
from mangakai_gateway.client_address import ClientAddresses, parse_networks
from mangakai_gateway.cors import CorsMiddleware
from mangakai_gateway.ratelimit import Limit, RateLimits
from mangakai_gateway.servicer import JobApi, JobServicer, SessionApi, SessionServicer
from mangakai_gateway.sessions import SessionStore
from mangakai_gateway.settings import GatewaySettings
from mangakai_gateway.urls import UrlSigner
from mangakai_gateway.watch import JobEventHub
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.clients import channel
from mangakai_runtime.database import apply_migrations, create_pool
from mangakai_runtime.server import Listener, ServiceMain
from mangakai_runtime.settings import nats_servers
from mangakai_runtime.subjects import Subjects

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> None:
    settings = GatewaySettings.from_env()
    service = ServiceMain("gateway", settings)
    service.setup()
    pool = await create_pool(settings.database_url)
    await apply_migrations(pool, "gateway", MIGRATIONS)
    nc = await nats.connect(
        servers=nats_servers(settings.nats_url),
        name="gateway",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )
    orchestrator_channel = channel(settings.orchestrator_addr)
    orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(orchestrator_channel)
    blobs = BlobClient(settings.storage_addr)
    sessions = SessionStore(pool, idle_seconds=settings.session_idle_seconds)
    subjects = Subjects(settings.nats_namespace)
    hub = JobEventHub(nc.jetstream(), subjects, idle_seconds=settings.watch_idle_seconds)
    signer = UrlSigner(blobs, settings.url_ttl_seconds)
    limits = RateLimits(
        pool,
        per_session=Limit(
            settings.rate_limit_session_calls,
            settings.rate_limit_period_seconds,
            settings.rate_limit_session_burst,
        ),
        per_address=Limit(
            settings.rate_limit_address_calls,
            settings.rate_limit_period_seconds,
            settings.rate_limit_address_burst,
        ),
        new_sessions_per_address=Limit(
            settings.rate_limit_new_session_calls,
            settings.rate_limit_period_seconds,
            settings.rate_limit_new_session_burst,
        ),
        timeout_seconds=settings.call_timeout_seconds,
    )
    ceiling = JobsInFlightCeiling(nc.jetstream(), subjects, settings.max_jobs_in_flight)
    addresses = ClientAddresses(parse_networks(settings.trusted_proxies))
    session_api = SessionApi(sessions, limits, addresses)
    job_api = JobApi(sessions, orchestrator, hub, signer, limits, addresses, ceiling, settings)
    listeners: list[Listener] = []
    if settings.web_port >= 0:
        app = web.WebApp(
            [(a.path, a) for a in connect.applications(session_api, job_api)],
            StaticAssets(settings.web_assets_dir),
        )
        sock = web.bind(settings.web_host, settings.web_port)
        service.extra_ports["web_port"] = sock.getsockname()[1]
        listeners.append(
            web.server(
                CorsMiddleware(app, settings.web_cors_origins.split(",")),
                sock,
                settings.shutdown_grace_seconds,
            )
        )

    async def close() -> None:
        await hub.close()
        await nc.drain()
        await orchestrator_channel.close()
        await blobs.close()
        await pool.close()

    service.on_drain.append(hub.drain)
    service.on_shutdown.append(close)
    await service.serve(
        [
            (
                sessions_pb2_grpc.add_SessionServiceServicer_to_server,
                SessionServicer(session_api),
                "mangakai.v1.SessionService",
            ),
            (
                jobs_pb2_grpc.add_JobServiceServicer_to_server,
                JobServicer(job_api),
                "mangakai.v1.JobService",
            ),
        ],
        background=[limits.sweep_forever, lambda: sessions.sweep_forever(settings.session_sweep_seconds)],
        listeners=listeners,
    )


if __name__ == "__main__":
    asyncio.run(main())
