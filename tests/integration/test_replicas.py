"""The mesh as a mesh of replicas: every service twice, NATS as a three-node JetStream cluster.

Replica i of a service listens on 127.0.0.(i+1) and the services reach each
other through one DNS name per service (the stack's own DNS server), with
round-robin, as pods do through headless Services. These tests show that
every replica takes a share of the work, that a replica started after a client
connected receives calls (servers age their connections, clients re-resolve),
and that killing one replica of every service and one NATS node under load
loses nothing: every job completes, no panel is drawn twice and no job's event
sequence has a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mangakai.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from mangakai_devstack.nats import NatsCluster
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.services import ServiceProcess
from mangakai_devstack.stack import SERVICE_ORDER, Stack, StackFactory
from mangakai_runtime.clients import channel as service_channel
from tests.integration.mesh_client import Session, new_session, scrape

ROUND_ROBIN = [("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))]
DONE = common_pb2.Job.STATE_COMPLETED
TERMINAL = {common_pb2.Job.STATE_COMPLETED, common_pb2.Job.STATE_FAILED, common_pb2.Job.STATE_CANCELLED}
PANELS = 3
# Short, so that draws are still under way when replicas are killed, and cheap on two cores.
RENDERER = {"RENDERER_BACKEND": "fixed-latency", "FIXED_LATENCY_MS": "150"}
_DRAWN = '"panel drawn: '  # the renderer's JSON log line for each panel it drew


@pytest.fixture(scope="module")
def replicated(
    postgres: PostgresServer, nats_cluster: NatsCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Two replicas of every service on the three-node NATS cluster."""
    factory = StackFactory(postgres, nats_cluster, tmp_path_factory.mktemp("replicated"))
    try:
        # 56 jobs from one session in a few seconds: the per-session limit is another test's subject.
        yield factory({"renderer": RENDERER, "gateway": {"RATE_LIMIT_SESSION_CALLS": "0"}}, replicas=2)
    finally:
        factory.close()


def _metric(service: ServiceProcess, name: str, **labels: str) -> float:
    return scrape(service.ports["metrics_port"], name, **labels)


def _draws(stack: Stack) -> Counter[str]:
    """Panels drawn, by blob key, from every renderer replica's log (a killed replica's log stays)."""
    drawn: Counter[str] = Counter()
    for path in (stack.base_dir / "logs").glob("renderer*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if _DRAWN in line:
                drawn[json.loads(line)["blob_key"]] += 1
    return drawn


async def _follow(session: Session, name: str, within: float) -> list[common_pb2.JobEvent]:
    """Every event of a job until its terminal one, re-attaching after a broken stream.

    Re-attaching asks for the events after the last one seen; each event must
    carry the next sequence number, so a gap or a duplicate fails here.
    """
    events: list[common_pb2.JobEvent] = []
    deadline = time.monotonic() + within
    while True:
        after = events[-1].sequence if events else 0
        try:
            async for event in session.watch(name, after):
                assert event.sequence == (events[-1].sequence if events else 0) + 1, (
                    f"{name}: event {event.sequence} after {[e.sequence for e in events[-3:]]}"
                )
                events.append(event)
                if event.terminal:
                    return events
        except grpc.aio.AioRpcError as error:
            # A killed gateway replica cuts its streams; anything else is a real failure.
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not end within {within}s; last events {events[-3:]}")
        await asyncio.sleep(0.1)  # back off before re-attaching to another replica


async def _run_jobs(session: Session, count: int, within: float) -> list[common_pb2.Job]:
    jobs = [await session.create_job(panels=PANELS) for _ in range(count)]
    streams = await asyncio.gather(*(_follow(session, job.name, within) for job in jobs))
    for job, events in zip(jobs, streams, strict=True):
        assert events[-1].job_state == DONE, f"{job.name} ended {events[-1]}"
    return [await session.get(job.name) for job in jobs]


def _assert_each_panel_once(stack: Stack, jobs: list[common_pb2.Job]) -> None:
    for job in jobs:
        assert job.state == DONE
        assert [len(panel.versions) for panel in job.panels] == [1] * PANELS, job.name
    drawn = _draws(stack)
    twice = {key: n for key, n in drawn.items() if n > 1}
    assert not twice, f"panels drawn more than once: {twice}"
    keys = {panel.versions[0].image.blob_key for job in jobs for panel in job.panels}
    assert keys <= set(drawn), f"panels never drawn: {sorted(keys - set(drawn))[:5]}"


def test_stack_json_lists_every_replica(replicated: Stack) -> None:
    described = replicated.describe()
    rows = {(row["service"], row["index"]): row for row in described["replicas"]}
    assert set(rows) == {(name, i) for name in SERVICE_ORDER for i in (0, 1)}
    for (name, index), row in rows.items():
        assert row["host"] == f"127.0.0.{index + 1}"
        assert row["ports"]["grpc_port"] == rows[(name, 0)]["ports"]["grpc_port"]
        assert Path(row["log"]).name == (f"{name}.log" if index == 0 else f"{name}-{index}.log")
    assert [node["url"] for node in described["nats"]["nodes"]] == replicated.nats.url.split(",")
    gateway_port = rows[("gateway", 0)]["ports"]["grpc_port"]
    assert described["targets"]["gateway"].endswith(f"/gateway.mangakai.test:{gateway_port}")


async def test_every_replica_works_and_one_of_each_can_die_under_load(
    replicated: Stack, nats_cluster: NatsCluster
) -> None:
    stack = replicated
    assert [len(stack.replicas(name)) for name in SERVICE_ORDER] == [2] * len(SERVICE_ORDER)
    async with grpc.aio.insecure_channel(stack.target("gateway"), options=ROUND_ROBIN) as channel:
        session = await new_session(channel)
        jobs = await _run_jobs(session, 40, within=180)
        _assert_each_panel_once(stack, jobs)

        # Each replica's own metrics show it did its share.
        for index in (0, 1):
            gateway = stack.service("gateway", index)
            assert _metric(gateway, "grpc_server_handled_total", grpc_method="CreateJob") > 0
            orchestrator = stack.service("orchestrator", index)
            assert _metric(orchestrator, "mangakai_jobs_finished_total", state="completed") > 0
            renderer = stack.service("renderer", index)
            assert _metric(renderer, "mangakai_renderer_panels_drawn_total") > 0
            storage = stack.service("storage", index)
            assert _metric(storage, "grpc_server_handled_total", grpc_method="PutBlob") > 0

        # Under load: kill replica 1 of every service and one NATS node.
        under_load = [await session.create_job(panels=PANELS) for _ in range(16)]
        follows = [asyncio.create_task(_follow(session, job.name, 120)) for job in under_load]
        await session.until(under_load[-1].name, lambda e: e.WhichOneof("kind") == "panel_finished")
        for name in reversed(SERVICE_ORDER):
            stack.service(name, 1).kill()
        nats_cluster.nodes[2].kill()
        try:
            streams = await asyncio.gather(*follows)
        finally:
            nats_cluster.nodes[2].start()
            nats_cluster.wait_healthy()
        for job, events in zip(under_load, streams, strict=True):
            assert events[-1].job_state == DONE, f"{job.name} ended {events[-1]}"
        _assert_each_panel_once(stack, jobs + [await session.get(job.name) for job in under_load])


async def test_a_replica_added_after_the_client_connected_receives_calls(
    make_stack: StackFactory,
) -> None:
    age = 2.0
    stack = make_stack({"storage": {"GRPC_MAX_CONNECTION_AGE_SECONDS": str(age)}})
    async with service_channel(stack.target("storage")) as channel:
        blobs = storage_pb2_grpc.StorageServiceStub(channel)

        async def stat() -> None:
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await blobs.StatBlob(storage_pb2.StatBlobRequest(key="jobs/none/none.png"), timeout=5)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        await stat()  # the channel is connected to the only replica
        added = await asyncio.to_thread(stack.add_replica, "storage")
        started = time.monotonic()
        while _metric(added, "grpc_server_handled_total", grpc_method="StatBlob") == 0:
            # Jitter of +-10 % on the age, a resolution, a connection: well inside twice the age.
            assert time.monotonic() - started < 2 * age + 3, "the new replica never received a call"
            await stat()
            await asyncio.sleep(0.05)
        assert _metric(stack.service("storage", 0), "grpc_server_handled_total", grpc_method="StatBlob") > 0
