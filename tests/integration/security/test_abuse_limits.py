"""Minting sessions bypasses no limit: new sessions per address, idle sessions expire, a ceiling of jobs.

Three real gateway replicas on one database, as in production; callers'
addresses come from X-Forwarded-For (the gateways trust loopback as a proxy),
so every test picks addresses of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mangakai.v1 import jobs_pb2, sessions_pb2, sessions_pb2_grpc
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.mesh_client import Session, new_session

GATEWAYS = 3
STORY = "Mara lit the lamp, and the ferry turned away from the rocks."
# The defaults, spelled out (conftest turns the per-address limits off for other tests).
LIMITS = {
    "RATE_LIMIT_PERIOD_SECONDS": "60",
    "RATE_LIMIT_SESSION_CALLS": "60",
    "RATE_LIMIT_SESSION_BURST": "10",
    "RATE_LIMIT_ADDRESS_CALLS": "60",
    "RATE_LIMIT_ADDRESS_BURST": "10",
    "RATE_LIMIT_NEW_SESSION_CALLS": "30",
    "RATE_LIMIT_NEW_SESSION_BURST": "20",
    "TRUSTED_PROXIES": "127.0.0.0/8",
}
_addresses = (f"198.51.100.{i}" for i in itertools.count(1))


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


@dataclass
class Outcomes:
    """How a flood of calls was answered."""

    ok: int = 0
    refused: int = 0
    refused_without_retry_info: int = 0

    def count(self, error: grpc.aio.AioRpcError | None) -> None:
        if error is None:
            self.ok += 1
            return
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        self.refused += 1
        if _retry_delay(error) is None:
            self.refused_without_retry_info += 1


@pytest.fixture(scope="module")
def limited_stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack({"gateway": LIMITS}, replicas={"gateway": GATEWAYS})


@pytest.fixture
async def channels(limited_stack: Stack) -> AsyncIterator[list[grpc.aio.Channel]]:
    opened = [grpc.aio.insecure_channel(g.address) for g in limited_stack.replicas("gateway")]
    assert len(opened) == GATEWAYS
    try:
        yield opened
    finally:
        for channel in opened:
            await channel.close()


async def _create_session(channel: grpc.aio.Channel, address: str) -> str | grpc.aio.AioRpcError:
    """A new session's token, or the error that refused it."""
    try:
        session = await sessions_pb2_grpc.SessionServiceStub(channel).CreateSession(
            sessions_pb2.CreateSessionRequest(client="flood"),
            metadata=(("x-forwarded-for", address),),
            timeout=30,
        )
    except grpc.aio.AioRpcError as error:
        return error
    return session.token


async def test_300_new_sessions_from_one_address_are_mostly_refused(
    limited_stack: Stack, channels: list[grpc.aio.Channel]
) -> None:
    address = next(_addresses)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = Outcomes()
    # 300 calls, 30 at a time, spread over the three replicas.
    for first in range(0, 300, 30):
        batch = range(first, first + 30)
        results = await asyncio.gather(*(_create_session(channels[i % GATEWAYS], address) for i in batch))
        for result in results:
            outcomes.count(result if isinstance(result, grpc.aio.AioRpcError) else None)
    elapsed = loop.time() - started
    assert elapsed < 10, f"the flood took {elapsed:.1f} s; the test wants it within 10 s"
    # GCRA: a burst of 20, then one every 2 s, whichever replica serves the call.
    assert 20 <= outcomes.ok <= 20 + elapsed / 2 + 1, (outcomes, elapsed)
    assert outcomes.refused == 300 - outcomes.ok
    assert outcomes.refused_without_retry_info == 0
    # Another address is not held back by this one.
    assert isinstance(await _create_session(channels[1], next(_addresses)), str)


async def test_120_jobs_through_120_fresh_sessions_are_limited(channels: list[grpc.aio.Channel]) -> None:
    # The sessions come from 120 addresses (each within its own allowance); the jobs from one.
    tokens = [await _create_session(channels[i % GATEWAYS], next(_addresses)) for i in range(120)]
    assert all(isinstance(t, str) for t in tokens)
    attacker = next(_addresses)

    async def create_job(index: int, token: str) -> grpc.aio.AioRpcError | None:
        session = Session(channels[index % GATEWAYS], token)
        try:
            await session.jobs.CreateJob(
                jobs_pb2.CreateJobRequest(story=STORY, panel_count=1),
                metadata=(*session.metadata, ("x-forwarded-for", attacker)),
                timeout=30,
            )
        except grpc.aio.AioRpcError as error:
            return error
        return None

    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = Outcomes()
    for result in await asyncio.gather(*(create_job(i, str(t)) for i, t in enumerate(tokens))):
        outcomes.count(result)
    elapsed = loop.time() - started
    # The address's burst of 10, then one a second.
    assert outcomes.ok <= 10 + elapsed + 1, (outcomes, elapsed)
    assert outcomes.refused >= 100, outcomes
    assert outcomes.refused_without_retry_info == 0


# ---- idle sessions and the ceiling of jobs in flight: a stack of their own -------------------

IDLE_SECONDS = 2.0
CEILING = 2


@pytest.fixture(scope="module")
def small_stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack(
        {
            "gateway": {
                "SESSION_IDLE_SECONDS": str(IDLE_SECONDS),
                "SESSION_SWEEP_SECONDS": "0.5",
                "MAX_JOBS_IN_FLIGHT": str(CEILING),
            }
        }
    )


@pytest.fixture
async def small_channel(small_stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(small_stack.gateway_address) as channel:
        yield channel


async def _list(session: Session) -> grpc.StatusCode:
    try:
        await session.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=session.metadata, timeout=30)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_idle_sessions_expire_and_are_swept(
    small_stack: Stack, small_channel: grpc.aio.Channel
) -> None:
    busy, idle = await new_session(small_channel), await new_session(small_channel)
    assert await _list(idle) == grpc.StatusCode.OK
    loop = asyncio.get_running_loop()
    last_idle_use = loop.time()
    # The busy session calls every few tenths of a second, for well past the idle time.
    while loop.time() - last_idle_use < 3 * IDLE_SECONDS:
        assert await _list(busy) == grpc.StatusCode.OK
        await asyncio.sleep(0.2)
    assert await _list(idle) == grpc.StatusCode.UNAUTHENTICATED
    assert await _list(busy) == grpc.StatusCode.OK
    # The sweep deletes the idle session's row; the busy one stays.
    connection = await asyncpg.connect(small_stack.database_url)
    try:
        deadline = loop.time() + 30
        while await connection.fetchval("SELECT count(*) FROM sessions") != 1:
            assert loop.time() < deadline, "the idle session was not swept"
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    assert await _list(busy) == grpc.StatusCode.OK


@contextlib.contextmanager
def _paused(pid: int | None) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the duration, so that jobs stay in flight."""
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_no_more_jobs_than_the_ceiling_are_in_flight(
    small_stack: Stack, small_channel: grpc.aio.Channel
) -> None:
    sessions = [await new_session(small_channel) for _ in range(CEILING + 1)]
    with _paused(small_stack.service("renderer").pid):
        # No renderer answers: the jobs stay queued or planning.
        jobs = [await s.create_job(story=STORY, panels=1) for s in sessions[:CEILING]]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sessions[CEILING].create_job(story=STORY, panels=1)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
    assert "ceiling" in (refused.value.details() or "")
    assert _retry_delay(refused.value) is not None
    # Once they have ended, there is room again.
    for session, job in zip(sessions, jobs, strict=False):
        await session.events(job.name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    # The orchestrator acks a run's message just after the job's last event.
    while (code := await _create(sessions[CEILING])) != grpc.StatusCode.OK:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and loop.time() < deadline, code
        await asyncio.sleep(0.1)


async def _create(session: Session) -> grpc.StatusCode:
    try:
        await session.create_job(story=STORY, panels=1)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
