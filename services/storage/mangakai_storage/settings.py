"""Settings of the storage service, read from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from mangakai_runtime.settings import ServiceSettings

MIB = 1024 * 1024


class StorageSettings(ServiceSettings):
    """Where blobs live (local disk or S3) and how their URLs are served and signed."""

    grpc_port: int = Field(50054, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(
        9104, ge=-1, le=65535, description="Prometheus port; 0 picks a free one, -1 disables."
    )

    storage_backend: Literal["fs", "s3"] = Field("fs", description="Where blobs are kept: local disk or S3.")
    storage_data_dir: Path = Field(
        Path("./.data/blobs"),
        description="Blobs of the fs backend; for both backends, where uploads are staged before they are committed.",
    )
    storage_http_host: str = Field(
        "127.0.0.1", description="Address the HTTP server for signed URLs binds to."
    )
    storage_http_port: int = Field(8090, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    storage_public_base_url: str | None = Field(
        None, description="Base of signed fs URLs; default http://{STORAGE_HTTP_HOST}:{bound port}."
    )
    storage_signing_key: SecretStr | None = Field(
        None,
        description="HMAC key for signed fs URLs (hex or any string of 16+ characters); required for fs.",
    )
    storage_url_ttl_seconds: int = Field(
        3600, ge=1, le=604800, description="Default validity of signed URLs."
    )
    storage_fsync: bool = Field(
        True,
        description="fs backend: fsync every blob before it becomes visible. Turn off only for throwaway data.",
    )
    storage_max_blob_bytes: int = Field(64 * MIB, ge=1, description="Largest blob PutBlob accepts.")
    cdn_base_url: str | None = Field(None, description="When set, signed URLs point at this host instead.")
    webp_quality: int = Field(
        85, ge=1, le=100, description="Quality of the WebP copies made of panel images (1-100)."
    )
    thumbnail_pixels: int = Field(
        320, ge=16, le=2048, description="Longer side of the panel thumbnails, in pixels."
    )

    s3_bucket: str | None = Field(None, description="Bucket of the s3 backend; required for s3.")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint, for S3-compatible stores; default AWS."
    )
    s3_region: str | None = Field(None, description="S3 region; default from the AWS configuration.")
    s3_prefix: str = Field("", description="Prefix of every object key in the bucket, e.g. 'mangakai/'.")
    s3_sse: str | None = Field(
        None, description="Server-side encryption of new objects, e.g. AES256 or aws:kms."
    )

    @model_validator(mode="after")
    def _backend_requirements(self) -> Self:
        if self.storage_backend == "fs":
            if self.storage_signing_key is None or not self.storage_signing_key.get_secret_value():
                raise ValueError("STORAGE_SIGNING_KEY is required when STORAGE_BACKEND is fs")
            if len(self.storage_signing_key.get_secret_value()) < 16:
                raise ValueError("STORAGE_SIGNING_KEY must have at least 16 characters")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND is s3")
        return self
