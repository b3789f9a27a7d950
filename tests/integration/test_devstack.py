"""The local stack tooling against real servers: PostgreSQL, nats-server and service processes.

The services are played by `devstack_standin` (the shared runtime's server
with no API of its own), so these tests do not depend on the real services.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats as nats_client
import pytest

from mangakai_devstack.nats import NatsServer
from mangakai_devstack.postgres import PostgresServer
from mangakai_devstack.processes import is_alive
from mangakai_devstack.services import ServiceProcess, ServiceStartError, check_health
from mangakai_devstack.stack import SERVICE_ORDER, Stack, StackFactory

STANDIN = "devstack_standin"
STANDIN_PATH = str(Path(__file__).parent)
ALL_STANDINS = {name: STANDIN for name in SERVICE_ORDER}
STANDIN_ENV = {name: {"PYTHONPATH": STANDIN_PATH} for name in SERVICE_ORDER}


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A directory the `postgres` user can enter, so the data stays in it.

    pytest's tmp_path is root-only when we are root, which moves the data to the
    `postgres` user's home: devstack/test_postgres_layout.py covers that layout.
    """
    directory = Path(tempfile.mkdtemp(prefix="mangakai-pg-test-"))
    directory.chmod(0o755)  # the CLI test puts the stack (and so PostgreSQL) one level down
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _standin(tmp_path: Path, name: str = "renderer", **env: str) -> ServiceProcess:
    return ServiceProcess(
        name,
        STANDIN,
        {"PYTHONPATH": STANDIN_PATH, "GRPC_PORT": "0", "METRICS_PORT": "0", **env},
        log_path=tmp_path / f"{name}.log",
        ready_file=tmp_path / "run" / f"{name}.ready",
    )


def _wiring(stack: Stack, name: str) -> dict[str, str]:
    ready_file = stack.service(name).ready_file
    wiring: dict[str, str] = json.loads(Path(f"{ready_file}.env.json").read_text())
    return wiring


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# PostgreSQL


async def test_postgres_serves_separate_databases(postgres: PostgresServer) -> None:
    first = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    second = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    assert postgres.create_database(first.rsplit("/", 1)[1]) == first  # idempotent

    conn = await asyncpg.connect(first)
    try:
        assert await conn.fetchval("select 1") == 1
        await conn.execute("create table jobs (id text primary key)")
        await conn.execute("insert into jobs values ('a')")
        # The session server trades durability for speed.
        assert await conn.fetchval("show fsync") == "off"
    finally:
        await conn.close()
    conn = await asyncpg.connect(second)
    try:
        assert await conn.fetchval("select to_regclass('jobs') is null") is True
    finally:
        await conn.close()
    default = await asyncpg.connect(postgres.dsn)
    try:
        assert await default.fetchval("select current_database()") == "mangakai"
    finally:
        await default.close()


async def test_durable_postgres_keeps_its_data_across_restarts(postgres_dir: Path) -> None:
    server = PostgresServer(postgres_dir, durable=True)
    try:
        server.start()
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("show fsync") == "on"
            await conn.execute("create table kept (v int); insert into kept values (42)")
        finally:
            await conn.close()
        pid = server.pid
        assert pid is not None
        server.stop()
        assert not is_alive(pid)
        assert not server.is_running()

        server.start()  # reuses the initialised data directory
        # A second `up` adopts the running server instead of failing.
        adopted = PostgresServer(postgres_dir, durable=True)
        adopted.start()
        assert adopted.port == server.port
        conn = await asyncpg.connect(adopted.dsn)
        try:
            assert await conn.fetchval("select v from kept") == 42
        finally:
            await conn.close()
    finally:
        server.stop()
    assert not server.is_running()


# NATS


async def test_nats_jetstream_round_trip(nats: NatsServer) -> None:
    stream = f"T{uuid.uuid4().hex[:8]}"
    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.jobs", b"hello")
        assert ack.stream == stream
        sub = await js.pull_subscribe(f"{stream}.>", durable="reader")
        [message] = await sub.fetch(1, timeout=5)
        assert message.data == b"hello"
        await message.ack_sync()
    finally:
        await nc.close()


async def test_nats_restart_keeps_port_and_store(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    try:
        server.start()
        port, first_pid = server.port, server.pid
        nc = await nats_client.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEEP", subjects=["keep.>"])
            await js.publish("keep.one", b"survives")
        finally:
            await nc.close()

        server.restart()
        assert server.port == port
        assert server.pid != first_pid
        nc = await nats_client.connect(server.url)
        try:
            info = await nc.jetstream().stream_info("KEEP")
            assert info.state.messages == 1
        finally:
            await nc.close()

        killed_pid = server.pid
        assert killed_pid is not None
        server.kill()
        assert not is_alive(killed_pid)
        assert not _accepts_tcp(port)
        server.restart()
        assert server.port == port
        assert _accepts_tcp(port)
    finally:
        server.stop()
    assert not server.is_running()


# Service processes


def test_service_is_healthy_and_restarts_on_its_port_after_a_kill(tmp_path: Path) -> None:
    service = _standin(tmp_path)
    try:
        ports = service.start()
        assert set(ports) >= {"grpc_port", "metrics_port"}
        assert service.address == f"127.0.0.1:{ports['grpc_port']}"
        assert check_health(service.address)
        first_pid = service.pid
        assert first_pid is not None

        service.kill()
        assert not is_alive(first_pid)
        assert not check_health(service.address, timeout=0.5)

        service.restart()
        assert service.port == ports["grpc_port"]
        assert service.pid != first_pid
        assert service.is_healthy()
        assert json.loads(service.ready_file.read_text())["pid"] == service.pid

        # SIGTERM lets the runtime drain and exit cleanly.
        assert service.stop(timeout=10) == 0
        assert not check_health(f"127.0.0.1:{ports['grpc_port']}", timeout=0.5)
    finally:
        service.stop()


def test_service_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    service = _standin(tmp_path, STANDIN_FAIL="settings are wrong: NO_SUCH_VAR")
    started = time.monotonic()
    with pytest.raises(ServiceStartError, match="NO_SUCH_VAR") as error:
        service.start(timeout=60)
    assert time.monotonic() - started < 20
    assert "exited with 3" in str(error.value)
    assert service.pid is None


def test_stale_ready_file_is_not_taken_for_the_new_process(tmp_path: Path) -> None:
    service = _standin(tmp_path)
    service.ready_file.parent.mkdir(parents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        stale_port = sock.getsockname()[1]
    service.ready_file.write_text(json.dumps({"pid": 1, "grpc_port": stale_port, "metrics_port": -1}))
    try:
        ports = service.start()
        assert ports["grpc_port"] != stale_port
        assert service.is_healthy()
    finally:
        service.stop()


# Stacks


def test_stack_wires_the_services_together(
    make_stack: StackFactory, postgres: PostgresServer, nats: NatsServer
) -> None:
    overrides = {name: dict(env) for name, env in STANDIN_ENV.items()}
    overrides["renderer"]["RENDERER_BACKEND"] = "gemini"
    overrides["gateway"]["STANDIN_MARK"] = "from-overrides"
    stack = make_stack(overrides, modules=ALL_STANDINS)
    other = make_stack(STANDIN_ENV, modules=ALL_STANDINS)

    assert list(stack.services) == list(SERVICE_ORDER)
    for service in stack.services.values():
        assert service.is_healthy()
    storage = stack.service("storage")
    wiring = {name: _wiring(stack, name) for name in SERVICE_ORDER}

    assert wiring["storage"]["STORAGE_BACKEND"] == "fs"
    assert wiring["storage"]["STORAGE_DATA_DIR"] == str(stack.base_dir / "blobs")
    assert wiring["storage"]["STORAGE_SIGNING_KEY"] == (stack.base_dir / "signing.key").read_text().strip()
    assert len(wiring["storage"]["STORAGE_SIGNING_KEY"]) == 64
    assert stack.storage_http_url == f"http://127.0.0.1:{storage.ports['http_port']}"
    assert _accepts_tcp(storage.ports["http_port"])

    # Services reach each other through the stack's DNS name of each service, at its port.
    assert stack.target("storage") == f"dns://127.0.0.1:{stack.dns.port}/storage.mangakai.test:{storage.port}"
    assert wiring["renderer"]["STORAGE_ADDR"] == stack.target("storage")
    assert wiring["renderer"]["RENDERER_BACKEND"] == "gemini"
    assert wiring["orchestrator"]["RENDERER_ADDR"] == stack.target("renderer")
    assert wiring["gateway"]["ORCHESTRATOR_ADDR"] == stack.target("orchestrator")
    assert wiring["gateway"]["STANDIN_MARK"] == "from-overrides"
    for name in ("orchestrator", "gateway"):
        assert wiring[name]["STORAGE_ADDR"] == stack.target("storage")
        assert wiring[name]["NATS_URL"] == nats.url
        assert wiring[name]["DATABASE_URL"] == stack.database_url
    assert stack.gateway_address == stack.service("gateway").address

    # Two stacks share the servers but not a database.
    assert stack.database != other.database
    assert _wiring(other, "gateway")["DATABASE_URL"] == postgres.dsn_for(other.database)
    assert stack.signing_key() != other.signing_key()

    pids = [service.pid for service in stack.services.values()]
    stack.stop()
    assert not any(pid is not None and is_alive(pid) for pid in pids)
    # The shared servers belong to the session, not to the stack.
    assert postgres.is_ready()
    assert nats.is_running()
    assert other.service("gateway").is_healthy()


def test_stack_that_fails_to_start_leaves_nothing_running(
    postgres: PostgresServer, nats: NatsServer, tmp_path: Path
) -> None:
    overrides = {name: dict(env) for name, env in STANDIN_ENV.items()}
    overrides["orchestrator"]["STANDIN_FAIL"] = "orchestrator cannot start"
    stack = Stack(
        tmp_path, durable=False, overrides=overrides, postgres=postgres, nats=nats, modules=ALL_STANDINS
    )
    with pytest.raises(ServiceStartError, match="orchestrator cannot start"):
        stack.start()
    started = [
        json.loads((tmp_path / "run" / f"{name}.ready").read_text())["pid"]
        for name in ("storage", "renderer")
    ]
    assert not any(is_alive(pid) for pid in started)
    assert stack.services == {}
    assert nats.is_running()


def test_unknown_service_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frontend"):
        Stack(tmp_path, overrides={"frontend": {}})


# The command line


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": STANDIN_PATH}
    return subprocess.run(
        [sys.executable, "-m", "mangakai_devstack", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_up_leaves_the_stack_running_until_down(postgres_dir: Path) -> None:
    directory = str(postgres_dir / "run")
    modules = [arg for name in SERVICE_ORDER for arg in ("--module", f"{name}={STANDIN}")]
    try:
        up = _cli("up", "--dir", directory, *modules)
        assert up.returncode == 0, up.stderr
        state = json.loads((Path(directory) / "stack.json").read_text())
        gateway = up.stdout.strip()
        assert gateway == state["gateway_address"]
        # The CLI has exited; what it started is still serving.
        assert check_health(gateway)
        pids = [
            state["postgres"]["pid"],
            state["nats"]["pid"],
            *(s["pid"] for s in state["services"].values()),
        ]
        assert all(is_alive(pid) for pid in pids)
        assert state["storage_http_url"].startswith("http://127.0.0.1:")
        assert Path(state["services"]["gateway"]["log"]).exists()

        again = _cli("up", "--dir", directory, *modules)
        assert again.returncode == 0, again.stderr
        assert "already up" in again.stderr
        assert again.stdout.strip() == gateway

        status = _cli("status", "--dir", directory)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" up ") == 6

        down = _cli("down", "--dir", directory)
        assert down.returncode == 0, down.stderr
        assert not any(is_alive(pid) for pid in pids)
        assert not (Path(directory) / "stack.json").exists()
        assert not check_health(gateway, timeout=0.5)
        assert _cli("status", "--dir", directory).returncode == 1
    finally:
        _cli("down", "--dir", directory)
