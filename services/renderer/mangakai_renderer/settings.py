"""Settings of the renderer service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mangakai_runtime.settings import ServiceSettings


class RendererSettings(ServiceSettings):
    """Environment variables of `python -m mangakai_renderer`."""

    grpc_port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(9103, ge=-1, le=65535)
    storage_addr: str = Field("127.0.0.1:50054", description="gRPC target of the storage service")
    renderer_backend: Literal["auto", "local", "gemini", "fixed-latency"] = Field(
        "auto",
        description="auto: Gemini when GEMINI_API_KEY is set, else local (in production: the key is required)",
    )
    gemini_api_key: str = Field("", repr=False)
    gemini_base_url: str = Field(
        "", description="Overrides the Gemini API endpoint (tests point it at a fake)"
    )
    gemini_plan_model: str = "gemini-3.8-flash"
    gemini_image_model: str = "gemini-3.1-flash-image"
    gemini_timeout_seconds: float = Field(120.0, gt=0, description="Deadline of one Gemini HTTP call")
    gemini_attempts: int = Field(
        4, ge=1, le=10, description="Tries of one Gemini call on 429, 5xx and timeouts (the first included)"
    )
    gemini_max_retry_wait_seconds: float = Field(
        60.0,
        ge=0,
        description="A 429 asking for a longer wait is not slept on: the caller gets RESOURCE_EXHAUSTED",
    )
    gemini_project: str = Field(
        "", description="Names the quota budget; replicas with the same one share it (default: from the key)"
    )
    gemini_requests_per_minute: int = Field(
        60, ge=0, description="Requests per minute of the Gemini project, all replicas together; 0: no limit"
    )
    gemini_images_per_minute: int = Field(
        20, ge=0, description="Images per minute of the Gemini project, all replicas together; 0: no limit"
    )
    gemini_quota_wait_seconds: float = Field(
        30.0, ge=0, description="How long a call may wait for the next minute's budget"
    )
    gemini_soften_blocked: bool = Field(
        True, description="Retry a safety-blocked panel once with a softened prompt"
    )
    nats_url: str = Field(
        "",
        description="NATS server(s) sharing the Gemini quota between replicas, comma-separated for a cluster; "
        "empty: this process only",
    )
    nats_replicas: int = Field(
        1, ge=1, le=5, description="Copies JetStream keeps of the quota bucket (3 on a 3-node cluster)"
    )
    nats_namespace: str = Field("mangakai", description="Prefix of the NATS names (the quota bucket)")
    render_concurrency: int = Field(8, ge=1, le=256, description="Panels this replica draws at the same time")
    panel_size: int = Field(1024, ge=256, le=4096, description="Edge of a local panel in pixels")
    fixed_latency_ms: int = Field(
        0, ge=0, description="fixed-latency backend only: how long each panel takes (benchmarks)"
    )
