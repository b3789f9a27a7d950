"""Fixtures for the CLI tests: the fake gateway on port 0, the file server, and `cli` to run commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from fake_gateway import Cli, FakeGateway, FileServer, Workdir

from mangakai.v1 import jobs_pb2_grpc, sessions_pb2_grpc


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = FakeGateway()
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(fake, server)
    sessions_pb2_grpc.add_SessionServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


@pytest.fixture
def cli(gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MANGAKAI_GATEWAY", raising=False)
    return Cli(gateway=gateway, session_file=tmp_path / "config" / "sessions.json", work=Workdir(work))
