"""Entry point: `python -m mangakai_storage` runs the storage service until SIGTERM."""

from __future__ import annotations

import asyncio

from mangakai.v1 import storage_pb2_grpc
from mangakai_runtime.server import ServiceMain
from mangakai_storage.backend import BlobBackend
from mangakai_storage.fs_backend import FsBlobBackend
from mangakai_storage.http import BlobHttpApp, BlobHttpServer
from mangakai_storage.s3_backend import S3BlobBackend
from mangakai_storage.servicer import StorageServicer
from mangakai_storage.settings import StorageSettings
from mangakai_storage.signing import UrlSigner, signing_key_bytes


def _public_base_url(settings: StorageSettings, http_port: int) -> str:
    if settings.storage_public_base_url:
        return settings.storage_public_base_url
    host = settings.storage_http_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{http_port}"


def build_backend(settings: StorageSettings, http_port: int) -> tuple[BlobBackend, UrlSigner | None]:
    """The configured backend, and the signer of fs URLs (None for s3, which presigns its own)."""
    staging = settings.storage_data_dir / "tmp"
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None  # checked by the settings
        backend = S3BlobBackend(
            bucket=settings.s3_bucket,
            staging_dir=staging,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            sse=settings.s3_sse,
            cdn_base_url=settings.cdn_base_url,
        )
        return backend, None
    assert settings.storage_signing_key is not None  # checked by the settings
    signer = UrlSigner(
        signing_key_bytes(settings.storage_signing_key.get_secret_value()),
        settings.cdn_base_url or _public_base_url(settings, http_port),
    )
    return FsBlobBackend(settings.storage_data_dir, signer, sync=settings.storage_fsync), signer


async def run(service: ServiceMain, settings: StorageSettings) -> None:
    # Bind the HTTP port first: fs URLs embed it, and the ready file reports it.
    http = BlobHttpServer.bind(settings.storage_http_host, settings.storage_http_port)
    backend, signer = build_backend(settings, http.port)
    await backend.start()
    http.attach(BlobHttpApp(backend, signer))
    service.extra_ports["http_port"] = http.port
    service.on_shutdown.append(backend.close)
    servicer = StorageServicer(
        backend,
        max_blob_bytes=settings.storage_max_blob_bytes,
        default_ttl_seconds=settings.storage_url_ttl_seconds,
        webp_quality=settings.webp_quality,
        thumbnail_pixels=settings.thumbnail_pixels,
    )
    await service.serve(
        [(storage_pb2_grpc.add_StorageServiceServicer_to_server, servicer, "mangakai.v1.StorageService")],
        background=[http.run],
    )


def main() -> None:
    settings = StorageSettings.from_env()
    service = ServiceMain("storage", settings)
    service.setup()
    asyncio.run(run(service, settings))


if __name__ == "__main__":
    main()
