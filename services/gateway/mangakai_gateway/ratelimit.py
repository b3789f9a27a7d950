"""Rate limits on the calls that start expensive work and on new sessions, kept in PostgreSQL and
shared by every replica.

Each limit is a GCRA (generic cell rate algorithm) state per (scope, key): a
"theoretical arrival time" (tat) that every allowed call pushes one emission
interval (period / calls) further; a call is allowed while the tat is at most
the burst tolerance ((burst - 1) intervals) ahead of now. One
`INSERT ... ON CONFLICT DO UPDATE ... RETURNING` statement checks and updates
the session's and the address's state at once, under PostgreSQL's row locks,
so replicas never both spend the same allowance, and times come from the
database's clock, so replicas' clocks do not matter. The gateway keeps
nothing in memory per session or address; rows whose tat has passed carry no
information and are swept.

A call refused by one scope still spends the other scope's allowance (one
statement cannot undo its own write); only callers already over a limit lose
anything by it.

New sessions are limited per client address on their own scope: otherwise
minting a session per call would sidestep the per-session limit, and a flood
of sessions would fill the sessions table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from mangakai_runtime.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0
EXPENSIVE_CALLS = "CreateJob, RegeneratePanel and ExportJob"
NEW_SESSIONS = "CreateSession"

# The decision reads the clock once, after the row is locked (a correlated sub-select runs per
# row, at update time): a check that waited for another replica's must not judge by the time it
# started, or calls queued behind one another would be refused inside their burst.
_CHECK = """
INSERT INTO rate_limits AS r (scope, key, tat, allowed, emission_interval, tolerance)
SELECT c.scope, c.key, clock_timestamp() + c.emission_interval, true, c.emission_interval, c.tolerance
FROM unnest($1::text[], $2::text[], $3::interval[], $4::interval[])
    AS c(scope, key, emission_interval, tolerance)
ON CONFLICT (scope, key) DO UPDATE SET (tat, allowed, emission_interval, tolerance) = (
    SELECT CASE WHEN d.allowed THEN d.start + excluded.emission_interval ELSE r.tat END,
           d.allowed, excluded.emission_interval, excluded.tolerance
    FROM (
        SELECT greatest(r.tat, t.now) AS start, greatest(r.tat, t.now) - t.now <= excluded.tolerance AS allowed
        FROM (SELECT clock_timestamp() AS now) AS t
    ) AS d
)
RETURNING r.scope, r.allowed,
    extract(epoch FROM r.tat - clock_timestamp() - r.tolerance)::float8 AS wait_seconds
"""

# Errors of an unreachable, restarting or overloaded database: the caller may retry.
_STORE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True)
class Limit:
    """`calls` per `period_seconds`, of which up to `burst` may come at once; calls=0 means no limit."""

    calls: int
    period_seconds: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.calls > 0

    @property
    def emission_interval(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.period_seconds / self.calls)

    @property
    def tolerance(self) -> datetime.timedelta:
        return self.emission_interval * (self.burst - 1)

    def describe(self) -> str:
        return f"at most {self.calls} per {self.period_seconds:g} s in bursts of {self.burst}"


class RateLimits:
    """The per-session and per-client-address limits of expensive calls, and of new sessions per address."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        per_session: Limit,
        per_address: Limit,
        timeout_seconds: float,
        new_sessions_per_address: Limit | None = None,
    ) -> None:
        self._pool = pool
        self._limits = {
            "session": per_session,
            "address": per_address,
            "new_session_address": new_sessions_per_address or Limit(0, 1.0, 1),
        }
        self._timeout = timeout_seconds

    async def check(self, session: uuid.UUID, address: str) -> None:
        """Counts one expensive call; RESOURCE_EXHAUSTED with the delay to wait if a limit is reached."""
        # Always session before address: concurrent checks lock rows in one order, so never deadlock.
        await self._spend({"session": str(session), "address": address}, EXPENSIVE_CALLS)

    async def check_new_session(self, address: str) -> None:
        """Counts one CreateSession from `address`; RESOURCE_EXHAUSTED with the delay to wait if over."""
        await self._spend({"new_session_address": address}, NEW_SESSIONS)

    async def _spend(self, keys: dict[str, str], calls: str) -> None:
        scopes = [scope for scope in keys if self._limits[scope].enabled]
        if not scopes:
            return
        try:
            async with asyncio.timeout(self._timeout):
                rows = await self._pool.fetch(
                    _CHECK,
                    scopes,
                    [keys[s] for s in scopes],
                    [self._limits[s].emission_interval for s in scopes],
                    [self._limits[s].tolerance for s in scopes],
                )
        except _STORE_ERRORS as exc:
            log.warning("rate limit check failed: %r", exc)
            raise Unavailable(
                "cannot check the rate limit now (its database is unavailable); retry later",
                reason="RATE_LIMIT_STORE_UNAVAILABLE",
            ) from None
        refused = [row for row in rows if not row["allowed"]]
        if refused:
            worst = max(refused, key=lambda row: float(row["wait_seconds"]))
            scope, wait = str(worst["scope"]), max(0.0, float(worst["wait_seconds"]))
            raise ResourceExhausted(
                f"too many {calls} calls from this {scope.rpartition('_')[2]} "
                f"({self._limits[scope].describe()}); retry in {wait:.1f} s",
                retry_after=wait,
            )

    async def sweep(self) -> int:
        """Deletes the rows whose allowance is whole again; returns how many."""
        status: str = await self._pool.execute("DELETE FROM rate_limits WHERE tat < now()")
        return int(status.rsplit(" ", 1)[-1])

    async def sweep_forever(self) -> None:
        """Sweeps every SWEEP_SECONDS until cancelled (every replica does; a sweep is cheap and idempotent)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            with contextlib.suppress(*_STORE_ERRORS):
                swept = await self.sweep()
                if swept:
                    log.debug("swept %d rate limit rows", swept)
