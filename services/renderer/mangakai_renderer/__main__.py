"""Entry point: `python -m mangakai_renderer`."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from mangakai.v1 import renderer_pb2_grpc
from mangakai_renderer.backend import FixedLatencyBackend, ImageBackend, LocalBackend
from mangakai_renderer.draws import DrawBook
from mangakai_renderer.quota import Counters, GeminiQuota, KeyValueCounters, MemoryCounters
from mangakai_renderer.servicer import RendererServicer
from mangakai_renderer.settings import RendererSettings
from mangakai_runtime.blobs import BlobClient
from mangakai_runtime.server import ServiceMain
from mangakai_runtime.settings import nats_servers
from mangakai_runtime.subjects import Subjects

log = logging.getLogger(__name__)


def backend_kind(settings: RendererSettings) -> str:
    """The backend to draw with; exits when the settings cannot give what was asked for."""
    kind = settings.renderer_backend
    if kind == "auto" and not settings.gemini_api_key and settings.mangakai_environment == "production":
        # Storyboard sketches instead of art, silently, because a Secret went missing: never.
        raise SystemExit(
            "MANGAKAI_ENVIRONMENT=production and GEMINI_API_KEY is empty: refusing to fall back to the "
            "local backend. Set GEMINI_API_KEY, or RENDERER_BACKEND=local to draw locally on purpose."
        )
    if kind == "auto":
        kind = "gemini" if settings.gemini_api_key else "local"
    if kind == "gemini" and not settings.gemini_api_key:
        raise SystemExit("RENDERER_BACKEND=gemini needs GEMINI_API_KEY")
    return kind


def quota_project(settings: RendererSettings) -> str:
    """The budget's name: the configured project, else a digest of the key (never the key itself)."""
    if settings.gemini_project:
        return settings.gemini_project
    return "key-" + hashlib.sha256(settings.gemini_api_key.encode()).hexdigest()[:16]


def choose_backend(settings: RendererSettings, counters: Counters | None = None) -> ImageBackend:
    kind = backend_kind(settings)
    if kind == "gemini":
        from mangakai_renderer.gemini_backend import GeminiBackend

        quota = GeminiQuota(
            counters or MemoryCounters(),
            quota_project(settings),
            requests_per_minute=settings.gemini_requests_per_minute,
            images_per_minute=settings.gemini_images_per_minute,
        )
        return GeminiBackend(settings, quota)
    if kind == "fixed-latency":
        return FixedLatencyBackend(settings.fixed_latency_ms / 1000)
    return LocalBackend(settings.panel_size)


async def main() -> None:
    settings = RendererSettings.from_env()
    kind = backend_kind(settings)
    service = ServiceMain("renderer", settings)
    service.setup()
    counters: Counters | None = None
    nc: NATS | None = None
    if settings.nats_url:
        nc = await _connect(settings.nats_url)
    if kind == "gemini":
        if nc is not None:
            bucket = f"{settings.nats_namespace.upper()}_GEMINI_QUOTA"
            counters = await KeyValueCounters.open(nc.jetstream(), bucket, replicas=settings.nats_replicas)
        else:
            log.warning("NATS_URL is not set: the Gemini quota budget counts this replica only")
    backend = choose_backend(settings, counters)
    log.info("renderer backend: %s", backend.name)
    blobs = BlobClient(settings.storage_addr)
    servicer = RendererServicer(backend, blobs, concurrency=settings.render_concurrency)
    if nc is not None:
        await _cancel_draws_of_cancelled_jobs(nc, Subjects(settings.nats_namespace), servicer.draws)

    loop = asyncio.get_running_loop()
    drain_deadline = loop.time() + 86_400.0

    async def draining() -> None:
        nonlocal drain_deadline
        drain_deadline = loop.time() + settings.shutdown_grace_seconds

    async def close() -> None:
        # The gRPC server has drained. Draws nobody waits for any more (their callers left) may
        # store their images until the grace runs out; then they are cancelled and the clients
        # they use close.
        await servicer.draws.close(max(0.0, drain_deadline - loop.time()))
        await blobs.close()
        if nc is not None:
            await nc.close()

    service.on_drain.append(draining)
    service.on_shutdown.append(close)
    await service.serve(
        [(renderer_pb2_grpc.add_RendererServiceServicer_to_server, servicer, "mangakai.v1.RendererService")]
    )


async def _cancel_draws_of_cancelled_jobs(nc: NATS, subjects: Subjects, draws: DrawBook) -> None:
    """Listens on every job's control subject: a cancelled job's draws stop here too (they
    outlive the orchestrator's calls, which is all the orchestrator can cancel itself)."""

    async def on_control(message: Msg) -> None:
        job_id = message.subject.split(".")[-2]
        stopped = draws.cancel_job(f"jobs/{job_id}")
        if stopped:
            log.info("job %s cancelled: stopped %d draws", job_id, stopped)

    await nc.subscribe(subjects.control("*"), cb=on_control)


async def _connect(url: str) -> NATS:
    return await nats.connect(
        servers=nats_servers(url),
        name="renderer",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


if __name__ == "__main__":
    asyncio.run(main())
