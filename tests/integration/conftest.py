"""Fixtures that start real servers for the integration tests.

One PostgreSQL (`postgres`) and one nats-server (`nats`) serve the whole
session. Service processes come in stacks: `make_stack(overrides=...)` starts
the four services against those shared servers, each stack with a database of
its own so that tests do not see each other's rows. `make_stack` stacks are
stopped after the test, `make_module_stack` ones after the module; `stack` is
a plain stack shared by a module. Every test here is marked `integration`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from mangakai_devstack.nats import NatsCluster, NatsServer
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session

HERE = Path(__file__).parent

# The services inherit this environment: never let a developer's key send test traffic to Gemini.
os.environ.pop("GEMINI_API_KEY", None)
# Every test calls from 127.0.0.1, so a per-address limit would be shared by all the tests of a
# stack; tests of the limit set it themselves (tests/integration/gateway/).
os.environ.setdefault("RATE_LIMIT_ADDRESS_CALLS", "0")
os.environ.setdefault("RATE_LIMIT_NEW_SESSION_CALLS", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (non-durable: fsync off), with a `mangakai` database."""
    # Not under pytest's tmp_path: when we are root the server runs as `postgres`,
    # which cannot enter /tmp/pytest-of-root (mode 0700).
    directory = Path(tempfile.mkdtemp(prefix="mangakai-pg-"))
    server = PostgresServer(directory, durable=False)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream for the session."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A three-node NATS JetStream cluster for a module (real nats-server processes joined by routes)."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-cluster"), 3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def make_stack(
    postgres: PostgresServer, nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    """`make_stack(overrides={"orchestrator": {...}})` -> a started `Stack`, stopped after the test."""
    factory = StackFactory(postgres, nats, tmp_path_factory.mktemp("stacks"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def make_module_stack(
    postgres: PostgresServer, nats: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    """Like `make_stack`, but the stacks live until the end of the module (for module-scoped fixtures)."""
    factory = StackFactory(postgres, nats, tmp_path_factory.mktemp("stacks"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def stack(make_module_stack: StackFactory) -> Stack:
    """The four real services with default settings, shared by the tests of a module."""
    return make_module_stack()


@pytest.fixture
async def channel(stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the module's stack's gateway."""
    async with grpc.aio.insecure_channel(stack.gateway_address) as ch:
        yield ch


@pytest.fixture
async def session(channel: grpc.aio.Channel) -> Session:
    """A new session on the module's stack."""
    return await new_session(channel)
