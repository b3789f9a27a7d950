"""Settings of the gateway service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from mangakai_gateway.client_address import parse_networks
from mangakai_runtime.settings import ServiceSettings

# The browser app as `make web` builds it, when the gateway runs from a source checkout.
DEFAULT_ASSETS_DIR = Path(__file__).resolve().parents[3] / "web" / "dist"


class GatewaySettings(ServiceSettings):
    """Environment variables of `python -m mangakai_gateway`."""

    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9101, ge=-1, le=65535)
    database_url: str = Field(description="PostgreSQL DSN, e.g. postgresql://user@host:5432/mangakai")
    nats_url: str = Field("nats://127.0.0.1:4222")
    nats_namespace: str = Field("mangakai", description="Prefix of every NATS subject and stream name")
    orchestrator_addr: str = Field("127.0.0.1:50052", description="gRPC target of the orchestrator")
    storage_addr: str = Field("127.0.0.1:50054", description="gRPC target of the storage service")
    url_ttl_seconds: int = Field(3600, ge=60, le=604800, description="Validity of the image URLs handed out")
    call_timeout_seconds: float = Field(30.0, gt=0, description="Deadline of calls to internal services")
    export_timeout_seconds: float = Field(300.0, gt=0)
    watch_idle_seconds: float = Field(
        3.0, gt=0, description="A watch with no new event for this long checks the job store for missed ones"
    )
    # Limits of the calls that start expensive work (CreateJob, RegeneratePanel, ExportJob),
    # shared by every replica through PostgreSQL (ratelimit.py).
    rate_limit_period_seconds: float = Field(
        60.0, gt=0, description="The period the RATE_LIMIT_*_CALLS counts are allowed in"
    )
    rate_limit_session_calls: int = Field(
        60, ge=0, description="Expensive calls per session per period; 0 turns the limit off"
    )
    rate_limit_session_burst: int = Field(10, ge=1, description="Of which this many may come at once")
    rate_limit_address_calls: int = Field(
        60, ge=0, description="Expensive calls per client address per period; 0 turns the limit off"
    )
    rate_limit_address_burst: int = Field(10, ge=1, description="Of which this many may come at once")
    rate_limit_new_session_calls: int = Field(
        30, ge=0, description="CreateSession calls per client address per period; 0 turns the limit off"
    )
    rate_limit_new_session_burst: int = Field(20, ge=1, description="Of which this many may come at once")
    session_idle_seconds: float = Field(
        30 * 24 * 3600.0, gt=0, description="A session unused for this long expires and is swept"
    )
    session_sweep_seconds: float = Field(300.0, gt=0, description="How often expired sessions are swept")
    max_jobs_in_flight: int = Field(
        500,
        ge=0,
        description="Job runs queued or running, all sessions and replicas together, above which "
        "CreateJob and RegeneratePanel are refused (RESOURCE_EXHAUSTED); 0 turns the ceiling off",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-For "
        "names the client (e.g. the ingress); empty: the direct peer is the client",
    )
    web_host: str = Field(
        "127.0.0.1", description="Address the web listener (gRPC-Web, Connect, the app) binds to"
    )
    web_port: int = Field(
        8080, ge=-1, le=65535, description="Port of the web listener; 0 picks a free one, -1 disables it"
    )
    web_cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API from another origin ('*' for any)"
    )
    web_assets_dir: Path = Field(DEFAULT_ASSETS_DIR, description="The built browser app (web/dist)")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value
