"""Retention on a real mesh: expired jobs lose their rows and blobs, failed ones their partial blobs,
and nothing a live job uses is touched.

Jobs are made through the gateway and drawn by the real renderer into the real
storage service. Their age (and, for the partial-blob case, a version that did
not succeed) is then set in PostgreSQL, since a test cannot wait 30 days.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from mangakai.v1 import (
    common_pb2,
    jobs_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session

JobState = common_pb2.Job.State
VersionState = common_pb2.PanelVersion.State
RETENTION = {"RETENTION_DAYS": "1", "PARTIAL_BLOB_GRACE_SECONDS": "60"}


class Mesh:
    """A stack seen by an operator: the gateway as a user, the orchestrator, storage and the database."""

    def __init__(self, stack: Stack, channels: list[grpc.aio.Channel], db: asyncpg.Connection) -> None:
        self.stack = stack
        gateway, orchestrator, storage = channels
        self.gateway = gateway
        self.orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(orchestrator)
        self.storage = storage_pb2_grpc.StorageServiceStub(storage)
        self.db = db

    async def finished_job(self, session: Session, panels: int = 2) -> common_pb2.Job:
        job = await session.create_job(panels=panels)
        events = await session.events(job.name)
        assert events[-1].state_changed.state == JobState.STATE_COMPLETED
        return await session.get(job.name)

    async def exists(self, key: str) -> bool:
        try:
            await self.storage.StatBlob(storage_pb2.StatBlobRequest(key=key), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def age(self, job: common_pb2.Job, days: float) -> None:
        """Makes `job` look as if it last changed `days` ago."""
        await self.db.execute(
            "UPDATE jobs SET update_time = now() - make_interval(secs => $2), "
            "end_time = now() - make_interval(secs => $2) WHERE id = $1",
            job_uuid(job),
            days * 86400,
        )

    async def sweep(self) -> orchestrator_pb2.SweepRetentionResponse:
        response: orchestrator_pb2.SweepRetentionResponse = await self.orchestrator.SweepRetention(
            orchestrator_pb2.SweepRetentionRequest(), timeout=60
        )
        return response


def job_uuid(job: common_pb2.Job) -> uuid.UUID:
    return uuid.UUID(job.name.removeprefix("jobs/"))


def image_keys(image: common_pb2.Image) -> list[str]:
    stem = image.blob_key.removesuffix(".png")
    return [image.blob_key, f"{stem}.webp", f"{stem}.thumb.webp"]


async def open_mesh(stack: Stack) -> AsyncIterator[Mesh]:
    channels = [
        grpc.aio.insecure_channel(address)
        for address in (
            stack.gateway_address,
            stack.service("orchestrator").address,
            stack.service("storage").address,
        )
    ]
    db = await asyncpg.connect(stack.database_url)
    try:
        yield Mesh(stack, channels, db)
    finally:
        await db.close()
        for channel in channels:
            await channel.close()


@pytest.fixture
async def mesh(make_stack: StackFactory) -> AsyncIterator[Mesh]:
    # The periodic sweep is left to its own test: here only the operator RPC sweeps.
    stack = make_stack(overrides={"orchestrator": {**RETENTION, "RETENTION_SWEEP_SECONDS": "3600"}})
    async for opened in open_mesh(stack):
        yield opened


async def test_operator_sweep_deletes_expired_jobs_and_spares_the_rest(mesh: Mesh) -> None:
    session = await new_session(mesh.gateway)
    expired = await mesh.finished_job(session)
    recent = await mesh.finished_job(session)
    live = await mesh.finished_job(session)
    export = await session.jobs.ExportJob(
        jobs_pb2.ExportJobRequest(name=expired.name, format=common_pb2.EXPORT_FORMAT_CBZ),
        metadata=session.metadata,
        timeout=120,
    )
    expired_keys = [k for p in expired.panels for k in image_keys(p.versions[0].image)] + [export.blob.key]
    kept_keys = [k for job in (recent, live) for p in job.panels for k in image_keys(p.versions[0].image)]
    for key in expired_keys + kept_keys:
        assert await mesh.exists(key), key

    await mesh.age(expired, days=2)
    await mesh.age(recent, days=0.5)
    # An old job that is running again (e.g. being regenerated) is live: never expired.
    await mesh.age(live, days=40)
    await mesh.db.execute(
        "UPDATE jobs SET state = $2 WHERE id = $1", job_uuid(live), JobState.STATE_RENDERING
    )

    report = await mesh.sweep()

    assert report.expired_jobs == 1
    assert report.blobs_deleted >= len(expired_keys)
    for key in expired_keys:
        assert not await mesh.exists(key), key
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await session.get(expired.name)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    rows = await mesh.db.fetchval(
        "SELECT (SELECT count(*) FROM panels WHERE job_id = $1) + (SELECT count(*) FROM job_events WHERE job_id = $1)"
        " + (SELECT count(*) FROM job_exports WHERE job_id = $1)",
        job_uuid(expired),
    )
    assert rows == 0
    for key in kept_keys:
        assert await mesh.exists(key), key
    assert (await session.get(recent.name)).state == JobState.STATE_COMPLETED
    assert (await session.get(live.name)).name == live.name

    again = await mesh.sweep()
    assert (again.expired_jobs, again.blobs_deleted) == (0, 0)


async def test_partial_blobs_of_a_failed_job_go_and_its_drawn_panels_stay(mesh: Mesh) -> None:
    session = await new_session(mesh.gateway)
    job = await mesh.finished_job(session, panels=3)
    drawn, unfinished, fresh = job.panels
    job_id = job_uuid(job)
    # As when a job fails with one panel's image written but the panel not recorded as drawn.
    await mesh.db.execute(
        "UPDATE panel_versions SET state = $3, image = NULL WHERE job_id = $1 AND number = $2",
        job_id,
        unfinished.number,
        VersionState.STATE_FAILED,
    )
    await mesh.db.execute(
        "UPDATE jobs SET state = $2, end_time = now() - interval '1 hour' WHERE id = $1",
        job_id,
        JobState.STATE_FAILED,
    )
    # A failed job that ended a moment ago: its renderer calls may still be writing.
    other = await mesh.finished_job(session, panels=1)
    await mesh.db.execute(
        "UPDATE panel_versions SET state = $2, image = NULL WHERE job_id = $1",
        job_uuid(other),
        VersionState.STATE_FAILED,
    )
    await mesh.db.execute(
        "UPDATE jobs SET state = $2, end_time = now() WHERE id = $1", job_uuid(other), JobState.STATE_FAILED
    )

    report = await mesh.sweep()

    assert (report.expired_jobs, report.partial_jobs) == (0, 1)
    # The PNG, its WebP copy and thumbnail, and the un-lettered art when the backend keeps it.
    partial = image_keys(unfinished.versions[0].image)
    if unfinished.versions[0].HasField("art"):
        partial.append(unfinished.versions[0].art.blob_key)
    assert report.blobs_deleted == len(partial)
    for key in partial:
        assert not await mesh.exists(key), key
    for panel in (drawn, fresh):
        for key in image_keys(panel.versions[0].image):
            assert await mesh.exists(key), key
    for key in image_keys(other.panels[0].versions[0].image):
        assert await mesh.exists(key), key
    assert (await session.get(job.name)).state == JobState.STATE_FAILED

    again = await mesh.sweep()
    assert (again.partial_jobs, again.blobs_deleted) == (0, 0)


async def test_the_sweep_also_runs_on_its_own(make_stack: StackFactory) -> None:
    stack = make_stack(overrides={"orchestrator": {**RETENTION, "RETENTION_SWEEP_SECONDS": "0.5"}})
    async for mesh in open_mesh(stack):
        session = await new_session(mesh.gateway)
        job = await mesh.finished_job(session, panels=1)
        key = job.panels[0].versions[0].image.blob_key
        await mesh.age(job, days=3)
        deadline = asyncio.get_running_loop().time() + 30
        while await mesh.db.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_uuid(job)):
            assert asyncio.get_running_loop().time() < deadline, "the periodic sweep never deleted the job"
            await asyncio.sleep(0.1)
        assert not await mesh.exists(key)
