"""The Gemini quota store on a three-node NATS JetStream cluster: restarting any node fails no panel.

Real nats-server nodes joined by routes (`NatsCluster`), PostgreSQL and the
services; the renderer draws with Gemini (the fake server on loopback, a
little slow so that draws overlap the restarts) under a shared per-minute
budget kept in the cluster's KV bucket. While panels are drawn, each node is
restarted in turn: the bucket keeps a copy on every node, the renderer rides
out the leader elections and reconnects, and every call ends OK (never
INTERNAL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import nats
import pytest

from mangakai.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from mangakai_devstack.nats import NatsCluster
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.stack import Stack, StackFactory
from mangakai_runtime.settings import nats_servers
from mangakai_runtime.subjects import Subjects
from tests.integration.mesh_client import scrape
from tests.integration.renderer.fake_gemini import FakeGemini

NODES = 3
DRAWERS = 4
# Calls that must succeed after each restart before the next node goes: drawing goes on between them.
CALLS_BETWEEN_RESTARTS = 8


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        fake.add_rule("ok", "", times=None, delay=0.2)
        yield fake


@pytest.fixture(scope="module")
def cluster_stack(
    postgres: PostgresServer,
    nats_cluster: NatsCluster,
    gemini: FakeGemini,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    factory = StackFactory(postgres, nats_cluster, tmp_path_factory.mktemp("cluster-stacks"))
    renderer = {
        "RENDERER_BACKEND": "gemini",
        "GEMINI_API_KEY": "test",
        "GEMINI_BASE_URL": gemini.url,
        "GEMINI_IMAGES_PER_MINUTE": "5000",
        "GEMINI_REQUESTS_PER_MINUTE": "5000",
    }
    try:
        yield factory({"renderer": renderer})
    finally:
        factory.close()


def panel_request(number: int) -> renderer_pb2.RenderPanelRequest:
    scene = common_pb2.Scene(number=number, setting="a harbour", action="waiting", visual_prompt="A boat.")
    return renderer_pb2.RenderPanelRequest(
        job=f"jobs/{uuid.uuid4()}",
        scene=scene,
        output_blob_key=f"jobs/{uuid.uuid4()}/panels/01/v1.png",
        fresh_output=True,
    )


async def test_streams_and_the_quota_bucket_keep_a_copy_on_every_node(
    cluster_stack: Stack, nats_cluster: NatsCluster
) -> None:
    subjects = Subjects(cluster_stack.nats_namespace)
    nc = await nats.connect(servers=nats_servers(nats_cluster.url))
    try:
        js = nc.jetstream()
        for stream in (
            subjects.events_stream,
            subjects.work_stream,
            f"KV_{cluster_stack.nats_namespace.upper()}_GEMINI_QUOTA",
        ):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == NODES, f"{stream} keeps {info.config.num_replicas} copies"
    finally:
        await nc.close()


async def test_restarting_each_nats_node_while_panels_are_drawn_fails_no_panel(
    cluster_stack: Stack, nats_cluster: NatsCluster
) -> None:
    renderer = cluster_stack.service("renderer")
    metrics = renderer.ports["metrics_port"]
    outcomes: Counter[str] = Counter()
    succeeded = asyncio.Condition()
    stop = asyncio.Event()

    async def draw(stub: renderer_pb2_grpc.RendererServiceStub) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            try:
                response = await stub.RenderPanel(panel_request(number), timeout=60)
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1
                continue
            assert response.drawn
            async with succeeded:
                outcomes["OK"] += 1
                succeeded.notify_all()

    async def calls_succeed(count: int) -> None:
        async with succeeded:
            target = outcomes["OK"] + count
            await asyncio.wait_for(succeeded.wait_for(lambda: outcomes["OK"] >= target), timeout=120)

    async with grpc.aio.insecure_channel(renderer.address) as channel:
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        drawers = [asyncio.create_task(draw(stub)) for _ in range(DRAWERS)]
        try:
            await calls_succeed(CALLS_BETWEEN_RESTARTS)
            for node in nats_cluster.nodes:
                await asyncio.to_thread(node.restart)
                await asyncio.to_thread(nats_cluster.wait_healthy, 60)
                await calls_succeed(CALLS_BETWEEN_RESTARTS)
        finally:
            stop.set()
            await asyncio.gather(*drawers)

    assert set(outcomes) == {"OK"}, f"every panel is drawn: {dict(outcomes)}"
    assert outcomes["OK"] >= (NODES + 1) * CALLS_BETWEEN_RESTARTS
    for code in ("INTERNAL", "UNKNOWN", "UNAVAILABLE"):
        assert scrape(metrics, "grpc_server_handled_total", grpc_method="RenderPanel", grpc_code=code) == 0
    assert scrape(metrics, "mangakai_gemini_quota_store_errors_total") > 0, (
        "the restarts reached the quota store (else this test proved nothing)"
    )
