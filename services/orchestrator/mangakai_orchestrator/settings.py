"""Settings of the orchestrator service."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from mangakai_runtime.settings import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    """Environment variables of `python -m mangakai_orchestrator`."""

    grpc_port: int = Field(50052, ge=0, le=65535)
    metrics_port: int = Field(9102, ge=-1, le=65535)
    database_url: str = Field(description="PostgreSQL DSN, e.g. postgresql://user@host:5432/mangakai")
    nats_url: str = Field(
        "nats://127.0.0.1:4222", description="NATS server(s), comma-separated for a cluster"
    )
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        # NATS_STREAM_REPLICAS is the name this setting had before the renderer's bucket shared it.
        validation_alias=AliasChoices("nats_replicas", "nats_stream_replicas"),
        description="Copies JetStream keeps of each stream (3 on a 3-node cluster)",
    )
    nats_namespace: str = Field("mangakai", description="Prefix of every NATS subject and stream name")
    renderer_addr: str = Field("127.0.0.1:50053", description="gRPC target of the renderer")
    storage_addr: str = Field("127.0.0.1:50054", description="gRPC target of the storage service")
    render_concurrency: int = Field(4, ge=1, le=64, description="Panels of one job drawn at the same time")
    max_active_jobs: int = Field(16, ge=1, le=1000, description="Jobs this replica runs at the same time")
    ack_wait_seconds: float = Field(
        10.0,
        gt=0,
        description="How long JetStream waits for a sign of life (an in-progress ack) before it delivers "
        "a job run again",
    )
    lease_seconds: float = Field(
        8.0,
        gt=0,
        description="How long a worker's claim on a job lasts without a heartbeat: a dead worker's job is "
        "queued again within this plus HEARTBEAT_SECONDS",
    )
    heartbeat_seconds: float = Field(
        2.0,
        gt=0,
        description="How often a worker renews its lease and acks its job run in progress, and how often "
        "expired leases are looked for",
    )
    retry_seconds: float = Field(
        1.0,
        gt=0,
        description="Delay before a job run interrupted by a database or NATS error is delivered again",
    )
    max_job_attempts: int = Field(5, ge=1, description="Deliveries of a job before it is failed for good")
    plan_timeout_seconds: float = Field(180.0, gt=0)
    render_timeout_seconds: float = Field(300.0, gt=0)
    render_attempts: int = Field(3, ge=1, le=10, description="Tries per panel on transient renderer errors")
    stale_job_seconds: float = Field(
        300.0, gt=0, description="An active job nobody holds for this long is queued again"
    )
    event_retention_days: float = Field(30.0, gt=0)
    retention_days: float = Field(
        30.0,
        ge=0,
        description="Ended jobs unchanged for this long are deleted with their blobs; 0 keeps them forever",
    )
    retention_sweep_seconds: float = Field(3600.0, gt=0, description="How often the retention sweep runs")
    partial_blob_grace_seconds: float = Field(
        600.0,
        ge=0,
        description="A failed or cancelled job's unfinished images are deleted this long after it ended",
    )
