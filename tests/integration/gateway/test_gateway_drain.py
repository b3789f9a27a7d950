"""On SIGTERM the gateway drains its web listener together with its gRPC server.

A Connect call is held in flight for real: the test locks the rate limit
table, so the gateway's limit check waits in PostgreSQL. The gateway is then
told to stop; it must refuse new connections on both ports at once, yet finish
the call in flight once the lock is released, and exit cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable

import asyncpg

from mangakai_devstack.services import ServiceProcess
from mangakai_devstack.stack import StackFactory
from tests.integration.gateway import connect_client

OLD_WEB_GRACE_SECONDS = 1.0


async def until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await asyncio.to_thread(condition):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def test_a_browser_call_in_flight_completes_while_new_connections_are_refused(
    make_stack: StackFactory,
) -> None:
    stack = make_stack({"gateway": {"SHUTDOWN_GRACE_SECONDS": "30"}})
    gateway: ServiceProcess = stack.service("gateway")
    web_port, grpc_port = gateway.ports["web_port"], gateway.ports["grpc_port"]
    web = f"http://{gateway.host}:{web_port}"
    session = await asyncio.to_thread(
        connect_client.call, web, "mangakai.v1.SessionService/CreateSession", {"client": "browser"}
    )
    token = session.body["token"]

    db = await asyncpg.connect(stack.database_url)
    observer = await asyncpg.connect(stack.database_url)
    try:
        holding = db.transaction()
        await holding.start()
        await db.execute("LOCK TABLE rate_limits IN EXCLUSIVE MODE")
        in_flight = asyncio.create_task(
            asyncio.to_thread(
                connect_client.call,
                web,
                "mangakai.v1.JobService/CreateJob",
                {"story": "Mara lit the lamp.", "panelCount": 1},
                token=token,
                timeout=60,
            )
        )

        async def check_waits_for_the_lock() -> bool:
            # Not on `db`: inside its transaction the activity view would stay as first read.
            waiting: int = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%rate_limits%' AND pid <> $1",
                db.get_server_pid(),
            )
            return waiting == 1

        deadline = asyncio.get_running_loop().time() + 20
        while not await check_waits_for_the_lock():
            assert asyncio.get_running_loop().time() < deadline, "the CreateJob never reached its limit check"
            assert not in_flight.done(), in_flight.result()
            await asyncio.sleep(0.02)

        assert gateway.pid is not None
        os.kill(gateway.pid, signal.SIGTERM)
        await until(lambda: refuses_connections(gateway.host, web_port), "the web port refuses connections")
        await until(lambda: refuses_connections(gateway.host, grpc_port), "the gRPC port refuses connections")
        # Hold the call past the 1 s the web listener used to get: the gateway keeps draining.
        await asyncio.sleep(OLD_WEB_GRACE_SECONDS + 1)
        assert gateway.returncode is None and not in_flight.done()

        await holding.commit()
        created = await in_flight
    finally:
        await db.close()
        await observer.close()

    assert created.code == "ok", (created.status, created.body)
    assert created.body["name"].startswith("jobs/")
    await until(lambda: gateway.returncode is not None, "the gateway exits")
    assert gateway.returncode == 0
    # A clean drain logs no error (the web listener's socket was once closed twice: EBADF).
    errors = [line for line in gateway.log_path.read_text().splitlines() if '"level": "ERROR"' in line]
    assert not errors, errors
