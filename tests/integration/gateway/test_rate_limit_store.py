"""The gateway's shared rate limits (mangakai_gateway.ratelimit) against a real PostgreSQL.

Several pools on one database stand for several gateway replicas: whichever
pool a call goes through, the allowance is the same one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from mangakai_devstack.postgres import PostgresServer
from mangakai_gateway.__main__ import MIGRATIONS
from mangakai_gateway.ratelimit import Limit, RateLimits
from mangakai_runtime.database import apply_migrations, create_pool
from mangakai_runtime.errors import ResourceExhausted, Unavailable

PER_MINUTE_BURST_10 = Limit(calls=60, period_seconds=60, burst=10)
OFF = Limit(calls=0, period_seconds=60, burst=1)


@pytest.fixture
async def pools(postgres: PostgresServer) -> AsyncIterator[list[asyncpg.Pool]]:
    """Three pools ("replicas") on a fresh database with the gateway's tables."""
    dsn = postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")
    opened = [await create_pool(dsn, max_size=4) for _ in range(3)]
    await apply_migrations(opened[0], "gateway", MIGRATIONS)
    try:
        yield opened
    finally:
        for pool in opened:
            await pool.close()


def limits(pool: asyncpg.Pool, *, per_session: Limit = OFF, per_address: Limit = OFF) -> RateLimits:
    return RateLimits(pool, per_session=per_session, per_address=per_address, timeout_seconds=10)


async def outcomes(checks: list[RateLimits], session: uuid.UUID, address: str, calls: int) -> list[object]:
    """Makes `calls` checks at once, spread over `checks` in turn; None for allowed, else the error."""

    async def one(i: int) -> object:
        try:
            await checks[i % len(checks)].check(session, address)
        except ResourceExhausted as exc:
            return exc
        return None

    return list(await asyncio.gather(*(one(i) for i in range(calls))))


async def test_a_burst_is_shared_by_every_replica(pools: list[asyncpg.Pool]) -> None:
    replicas = [limits(pool, per_session=PER_MINUTE_BURST_10) for pool in pools]
    session = uuid.uuid4()
    results = await outcomes(replicas, session, "198.51.100.1", 30)
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    # 30 calls at once through 3 replicas: 10 pass (the burst), whatever replica took them.
    assert results.count(None) == 10 and len(refused) == 20
    # The next allowance comes one emission interval (60 s / 60) after the burst.
    assert all(0.8 <= r.retry_after <= 1.0 for r in refused), [r.retry_after for r in refused]
    assert refused[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "session" in refused[0].message and "bursts of 10" in refused[0].message
    # Another session is not affected.
    assert await outcomes(replicas, uuid.uuid4(), "198.51.100.1", 1) == [None]


async def test_the_address_limit_spans_sessions(pools: list[asyncpg.Pool]) -> None:
    replicas = [limits(pool, per_session=PER_MINUTE_BURST_10, per_address=Limit(60, 60, 3)) for pool in pools]
    allowed = [await outcomes(replicas, uuid.uuid4(), "203.0.113.9", 1) for _ in range(3)]
    assert allowed == [[None]] * 3
    (refused,) = await outcomes(replicas, uuid.uuid4(), "203.0.113.9", 1)
    assert isinstance(refused, ResourceExhausted) and "address" in refused.message
    assert await outcomes(replicas, uuid.uuid4(), "203.0.113.10", 1) == [None]


async def test_allowance_comes_back_at_the_rate(pools: list[asyncpg.Pool]) -> None:
    # 20 per second in bursts of 2: after the burst, one call every 50 ms.
    checks = limits(pools[0], per_session=Limit(calls=20, period_seconds=1, burst=2))
    session = uuid.uuid4()
    # Three at once: two pass (which two depends on who gets the row lock first).
    assert (await outcomes([checks], session, "a", 3)).count(None) == 2
    loop = asyncio.get_running_loop()
    started, passed, polls = loop.time(), 0, 0
    while loop.time() - started < 1.0 or polls < 10:
        polls += 1
        passed += (await outcomes([checks], session, "a", 1)).count(None)
        await asyncio.sleep(0.005)
    elapsed = loop.time() - started
    # At most one call per 50 ms (+1 for the edges of the window), however fast we poll; and the
    # allowance does come back (a loaded machine polls slowly, so only a few are required).
    assert passed <= 20 * elapsed + 1, (passed, elapsed)
    assert passed >= 3, (passed, polls, elapsed)


async def test_nothing_is_kept_for_callers_whose_allowance_is_whole(pools: list[asyncpg.Pool]) -> None:
    checks = limits(pools[0], per_session=Limit(calls=100, period_seconds=1, burst=1))
    for _ in range(50):
        await checks.check(uuid.uuid4(), "a")
    assert await pools[0].fetchval("SELECT count(*) FROM rate_limits") == 50
    # Each row is stale 10 ms after its call; the sweep removes them all.
    deadline = asyncio.get_running_loop().time() + 10
    swept = 0
    while swept < 50 and asyncio.get_running_loop().time() < deadline:
        swept += await checks.sweep()
    assert swept == 50
    assert await pools[0].fetchval("SELECT count(*) FROM rate_limits") == 0


async def test_a_database_error_is_unavailable_not_internal(pools: list[asyncpg.Pool]) -> None:
    checks = limits(pools[0], per_session=PER_MINUTE_BURST_10)
    await pools[0].execute("ALTER TABLE rate_limits RENAME TO rate_limits_gone")
    with pytest.raises(Unavailable) as broken:
        await checks.check(uuid.uuid4(), "a")
    assert broken.value.code == grpc.StatusCode.UNAVAILABLE
    await pools[0].execute("ALTER TABLE rate_limits_gone RENAME TO rate_limits")

    await pools[1].close()
    with pytest.raises(Unavailable):
        await limits(pools[1], per_session=PER_MINUTE_BURST_10).check(uuid.uuid4(), "a")
