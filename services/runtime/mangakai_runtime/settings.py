"""Settings every service shares, read from the environment.

Each service subclasses `ServiceSettings` with its own fields; a missing or
malformed value stops the process at start-up with a message naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings of one service process (environment variables, case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds to; '[::]' in containers.")
    grpc_port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(
        -1, ge=-1, le=65535, description="Prometheus port; 0 picks a free one, -1 disables."
    )
    metrics_host: str | None = Field(
        None, description="Address the Prometheus endpoint binds to; unset: the same as GRPC_HOST."
    )
    mangakai_environment: Literal["development", "production"] = Field(
        "development",
        description="production: refuse settings that only make sense on a developer's machine",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    shutdown_grace_seconds: float = Field(10.0, gt=0)
    grpc_max_connection_age_seconds: float = Field(
        30.0,
        gt=0,
        description="Connections older than this are closed gracefully so that clients re-resolve "
        "and reach replicas added since they connected",
    )
    grpc_max_connection_age_grace_seconds: float = Field(
        600.0, gt=0, description="How long calls on an aged connection may still run"
    )
    tls_ca_file: Path | None = Field(
        None, description="CA certificate of the mesh's identities; with the next two, calls use mutual TLS"
    )
    tls_cert_file: Path | None = Field(None, description="This service's certificate (its identity)")
    tls_key_file: Path | None = Field(None, description="The private key of TLS_CERT_FILE")
    ready_file: Path | None = Field(
        None, description="When set, the bound ports are written here as JSON once the service is serving."
    )

    @model_validator(mode="after")
    def _tls_all_or_nothing(self) -> Self:
        given = [self.tls_ca_file, self.tls_cert_file, self.tls_key_file]
        if any(given) and not all(given):
            raise ValueError("TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE go together: set all three or none")
        return self

    @classmethod
    def from_env(cls) -> Self:
        """Reads the settings, exiting with a readable message when they are invalid."""
        try:
            return cls()
        except ValidationError as exc:
            lines = [f"  {'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
            sys.exit(f"invalid settings for {cls.__name__}:\n" + "\n".join(lines))


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS_URL setting: one URL, or a cluster's URLs separated by commas."""
    return [server.strip() for server in url.split(",") if server.strip()]
