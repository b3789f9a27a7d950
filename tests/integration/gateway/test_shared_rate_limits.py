"""Rate limits shared by gateway replicas: three real gateway processes on one database.

Calls are spread over the three gateways, over gRPC and Connect alike; the
limit counts them as one caller's, whichever replica serves each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mangakai.v1 import jobs_pb2
from mangakai_devstack.stack import Stack, StackFactory
from tests.integration.gateway import connect_client
from tests.integration.mesh_client import Session, new_session

GATEWAYS = 3
STORY = "Mara lit the lamp, and the ferry turned away from the rocks."
# The defaults, spelled out: 60 expensive calls a minute in bursts of 10, per session and per
# address. The gateways trust X-Forwarded-For from loopback, so each test picks its callers' addresses.
DEFAULT_LIMITS = {
    "RATE_LIMIT_PERIOD_SECONDS": "60",
    "RATE_LIMIT_SESSION_CALLS": "60",
    "RATE_LIMIT_SESSION_BURST": "10",
    "RATE_LIMIT_ADDRESS_CALLS": "60",
    "RATE_LIMIT_ADDRESS_BURST": "10",
    "TRUSTED_PROXIES": "127.0.0.0/8",
}
_addresses = (f"198.51.100.{i}" for i in itertools.count(1))


@dataclass
class Gateways:
    stack: Stack
    channels: list[grpc.aio.Channel]

    def web_url(self, index: int) -> str:
        gateway = self.stack.service("gateway", index)
        return f"http://{gateway.host}:{gateway.ports['web_port']}"

    async def session(self) -> Session:
        return await new_session(self.channels[0])

    async def create_job(self, index: int, session: Session, address: str) -> grpc.StatusCode:
        """CreateJob over gRPC through gateway `index`, from `address`; the call's code."""
        on_gateway = Session(self.channels[index], session.token)
        try:
            await on_gateway.jobs.CreateJob(
                jobs_pb2.CreateJobRequest(story=STORY, panel_count=1),
                metadata=(*session.metadata, ("x-forwarded-for", address)),
                timeout=30,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def create_job_connect(
        self, index: int, session: Session, address: str
    ) -> connect_client.ConnectResponse:
        """CreateJob over Connect (JSON) through gateway `index`'s web listener."""
        return await asyncio.to_thread(
            connect_client.call,
            self.web_url(index),
            "mangakai.v1.JobService/CreateJob",
            {"story": STORY, "panelCount": 1},
            token=session.token,
            headers={"X-Forwarded-For": address},
        )


@contextlib.asynccontextmanager
async def open_gateways(stack: Stack) -> AsyncIterator[Gateways]:
    replicas = stack.replicas("gateway")
    assert len(replicas) == GATEWAYS
    channels = [grpc.aio.insecure_channel(gateway.address) for gateway in replicas]
    try:
        yield Gateways(stack, channels)
    finally:
        for channel in channels:
            await channel.close()


@pytest.fixture(scope="module")
def default_stack(make_module_stack: StackFactory) -> Stack:
    return make_module_stack({"gateway": DEFAULT_LIMITS}, replicas={"gateway": GATEWAYS})


@pytest.fixture
async def gateways(default_stack: Stack) -> AsyncIterator[Gateways]:
    async with open_gateways(default_stack) as opened:
        yield opened


async def refusal(gateways: Gateways, index: int, session: Session, address: str) -> tuple[str, float]:
    """The message and RetryInfo delay of a CreateJob that must be refused with RESOURCE_EXHAUSTED."""
    on_gateway = Session(gateways.channels[index], session.token)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await on_gateway.jobs.CreateJob(
            jobs_pb2.CreateJobRequest(story=STORY, panel_count=1),
            metadata=(*session.metadata, ("x-forwarded-for", address)),
            timeout=30,
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return status.message, info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError(f"no RetryInfo in {status}")


async def test_the_eleventh_quick_call_is_refused_whichever_gateway_serves_it(gateways: Gateways) -> None:
    session = await gateways.session()
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The burst of 10: nine gRPC calls and one Connect call, spread over the three gateways.
    grpc_codes, web = await asyncio.gather(
        asyncio.gather(*(gateways.create_job(i % GATEWAYS, session, next(_addresses)) for i in range(9))),
        gateways.create_job_connect(2, session, next(_addresses)),
    )
    assert list(grpc_codes) == [grpc.StatusCode.OK] * 9 and web.code == "ok", (grpc_codes, web.body)

    # The 11th call is refused on every gateway, and so is a Connect call.
    for index in range(GATEWAYS):
        message, delay = await refusal(gateways, index, session, next(_addresses))
        elapsed = loop.time() - started
        # One call a second comes back: the wait is what remains of the second since the burst.
        assert 1.0 - elapsed - 0.05 <= delay <= 1.0, (delay, elapsed)
        assert "session" in message and "bursts of 10" in message
    web = await gateways.create_job_connect(0, session, next(_addresses))
    assert (web.status, web.code) == (429, "resource_exhausted"), web.body
    delay = web.retry_delay()
    assert delay is not None and 0 <= delay <= 1.0


async def test_the_address_limit_spans_sessions_and_gateways(gateways: Gateways) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    sessions = [await gateways.session() for _ in range(11)]
    codes = await asyncio.gather(
        *(gateways.create_job(i % GATEWAYS, s, address) for i, s in enumerate(sessions[:10]))
    )
    assert list(codes) == [grpc.StatusCode.OK] * 10
    # An eleventh session from the same address is refused; the same session elsewhere is not.
    message, _ = await refusal(gateways, 1, sessions[10], address)
    assert "address" in message
    assert await gateways.create_job(2, sessions[10], next(_addresses)) == grpc.StatusCode.OK


async def test_no_more_than_burst_plus_rate_pass_in_a_period(make_stack: StackFactory) -> None:
    # A "minute" of 2 s, to keep the test short: 10 calls per period in bursts of 5.
    calls, period, burst = 10, 2.0, 5
    stack = make_stack(
        {
            "gateway": {
                "RATE_LIMIT_PERIOD_SECONDS": str(period),
                "RATE_LIMIT_SESSION_CALLS": str(calls),
                "RATE_LIMIT_SESSION_BURST": str(burst),
                "RATE_LIMIT_ADDRESS_CALLS": "0",
            }
        },
        replicas={"gateway": GATEWAYS},
    )
    async with open_gateways(stack) as gateways:
        session = await gateways.session()
        loop = asyncio.get_running_loop()
        allowed_by_gateway = [0] * GATEWAYS
        refused = 0
        started = loop.time()

        async def hammer(index: int) -> None:
            nonlocal refused
            while loop.time() - started < period:
                code = await gateways.create_job(index, session, "192.0.2.1")
                if code == grpc.StatusCode.OK:
                    allowed_by_gateway[index] += 1
                else:
                    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused += 1

        await asyncio.gather(*(hammer(i) for i in range(GATEWAYS)))
        span = loop.time() - started
        allowed = sum(allowed_by_gateway)
        # GCRA: n calls pass in a window of L seconds only if (n - burst) * (period / calls) <= L.
        # Every allowed call was decided inside [started, started + span].
        assert burst <= allowed <= burst + calls * span / period, (allowed, span)
        # Replicas with limits of their own would have let up to three times as many through.
        assert refused > allowed
        assert sum(1 for n in allowed_by_gateway if n) >= 2, allowed_by_gateway
