"""Mutual TLS between the services: a job runs end to end, and internal RPCs answer only the right identity.

Each internal RPC is called with no certificate, with the certificate of a
service that may not call it, and with the right one: only the last one
succeeds, and the others change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mangakai.v1 import (
    common_pb2,
    jobs_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from mangakai_devstack.certificates import mesh_certificates
from mangakai_devstack.nats import NatsServer
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.stack import Stack
from tests.integration.mesh_client import STORY_EN, new_session

SERVICES = ("gateway", "orchestrator", "renderer", "storage")


@pytest.fixture(scope="module")
def tls_stack(
    postgres: PostgresServer, nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The dev stack with mutual TLS (`python -m mangakai_devstack up --tls`)."""
    stack = Stack(
        tmp_path_factory.mktemp("tls-stack"),
        durable=False,
        postgres=postgres,
        nats=nats,
        database=f"t_{uuid.uuid4().hex[:16]}",
        tls=True,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def certificates(tls_stack: Stack) -> dict[str, dict[str, str]]:
    """The stack's certificates, the operator's included (as stack.json names them)."""
    assert tls_stack.describe()["tls"] is not None
    return mesh_certificates(tls_stack.base_dir / "tls", [*SERVICES, "operator"])


def _credentials(files: dict[str, str] | None, ca: str) -> grpc.ChannelCredentials:
    if files is None:
        # TLS that trusts the servers, but presents no certificate of its own.
        return grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=Path(files["TLS_CA_FILE"]).read_bytes(),
        private_key=Path(files["TLS_KEY_FILE"]).read_bytes(),
        certificate_chain=Path(files["TLS_CERT_FILE"]).read_bytes(),
    )


@pytest.fixture
async def connect(
    tls_stack: Stack, certificates: dict[str, dict[str, str]]
) -> AsyncIterator[Callable[[str, str | None], grpc.aio.Channel]]:
    """`connect(service, identity)`: a channel to `service` as `identity` (None: no certificate)."""
    opened: list[grpc.aio.Channel] = []
    ca = certificates["operator"]["TLS_CA_FILE"]

    def open_channel(service: str, identity: str | None) -> grpc.aio.Channel:
        files = certificates[identity] if identity is not None else None
        channel = grpc.aio.secure_channel(tls_stack.service(service).address, _credentials(files, ca))
        opened.append(channel)
        return channel

    yield open_channel
    for channel in opened:
        await channel.close()


async def _code(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


REFUSED_WITHOUT_CERTIFICATE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED}


async def test_a_job_runs_end_to_end_under_mutual_tls(tls_stack: Stack) -> None:
    async with grpc.aio.insecure_channel(tls_stack.gateway_address) as channel:
        session = await new_session(channel)
        job = await session.create_job(story=STORY_EN, panels=2)
        events = await session.events(job.name)
        assert events[-1].job_state == common_pb2.Job.State.STATE_COMPLETED, events[-1]
        done = await session.get(job.name)
        assert all(p.versions[-1].image.uri for p in done.panels)
        export = await session.jobs.ExportJob(
            jobs_pb2.ExportJobRequest(name=job.name, format=common_pb2.EXPORT_FORMAT_PDF),
            metadata=session.metadata,
            timeout=120,
        )
        assert export.page_count >= 1 and export.uri


async def test_the_orchestrator_answers_the_gateway_only(
    tls_stack: Stack, connect: Callable[[str, str | None], grpc.aio.Channel]
) -> None:
    session = (("x-mangakai-session", str(uuid.uuid4())),)
    request = jobs_pb2.CreateJobRequest(
        story="x" * 25_000, panel_count=1, style=common_pb2.StylePreferences()
    )

    def create(identity: str | None) -> Any:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(connect("orchestrator", identity))
        return stub.CreateJob(request, metadata=session, timeout=30)

    assert await _code(create(None)) in REFUSED_WITHOUT_CERTIFICATE
    for wrong in ("renderer", "storage", "operator"):
        assert await _code(create(wrong)) == grpc.StatusCode.PERMISSION_DENIED, wrong
    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(connect("orchestrator", "gateway"))
    listed = await stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session, timeout=30)
    assert list(listed.jobs) == []  # none of the refused calls created a job


async def test_retention_sweeps_answer_the_operator_only(
    connect: Callable[[str, str | None], grpc.aio.Channel],
) -> None:
    def sweep(identity: str | None) -> Any:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(connect("orchestrator", identity))
        return stub.SweepRetention(orchestrator_pb2.SweepRetentionRequest(), timeout=60)

    assert await _code(sweep(None)) in REFUSED_WITHOUT_CERTIFICATE
    assert await _code(sweep("gateway")) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(sweep("operator")) == grpc.StatusCode.OK


async def test_the_renderer_answers_the_orchestrator_only(
    connect: Callable[[str, str | None], grpc.aio.Channel],
) -> None:
    request = renderer_pb2.PlanStoryRequest(story=STORY_EN, panel_count=1)

    def plan(identity: str | None) -> Any:
        return renderer_pb2_grpc.RendererServiceStub(connect("renderer", identity)).PlanStory(
            request, timeout=60
        )

    assert await _code(plan(None)) in REFUSED_WITHOUT_CERTIFICATE
    assert await _code(plan("gateway")) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(plan("orchestrator")) == grpc.StatusCode.OK


async def test_storage_answers_each_method_to_its_callers_only(
    tls_stack: Stack, connect: Callable[[str, str | None], grpc.aio.Channel]
) -> None:
    key = f"jobs/{uuid.uuid4()}/panels/probe"
    stored = tls_stack.base_dir / "blobs" / "refs" / key

    def put(identity: str | None) -> Any:
        stub = storage_pb2_grpc.StorageServiceStub(connect("storage", identity))

        async def parts() -> AsyncIterator[storage_pb2.PutBlobRequest]:
            header = storage_pb2.PutBlobHeader(key=key, content_type="application/octet-stream", size_bytes=5)
            yield storage_pb2.PutBlobRequest(header=header)
            yield storage_pb2.PutBlobRequest(chunk=b"hello")

        return stub.PutBlob(parts(), timeout=30)

    def delete(identity: str) -> Any:
        stub = storage_pb2_grpc.StorageServiceStub(connect("storage", identity))
        return stub.DeleteBlobs(
            storage_pb2.DeleteBlobsRequest(prefix=key.rpartition("/")[0] + "/"), timeout=30
        )

    # Writing another tenant's panel: not without a certificate, not as the gateway.
    assert await _code(put(None)) in REFUSED_WITHOUT_CERTIFICATE
    assert await _code(put("gateway")) == grpc.StatusCode.PERMISSION_DENIED
    assert not stored.parent.exists()
    assert await _code(put("renderer")) == grpc.StatusCode.OK
    assert stored.parent.exists()
    # Deleting by prefix: the orchestrator's retention only.
    for wrong in ("gateway", "renderer"):
        assert await _code(delete(wrong)) == grpc.StatusCode.PERMISSION_DENIED, wrong
    assert stored.parent.exists()
    assert await _code(delete("orchestrator")) == grpc.StatusCode.OK
