"""PostgreSQL connection pools and versioned SQL migrations, applied at start-up.

Each service owns its tables and keeps its migrations as numbered `.sql`
files in its own `migrations/` folder; they are applied in order, once, under
an advisory lock so that replicas starting together do not race.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool; fails with a clear message when the database is unreachable."""
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=30)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"cannot connect to PostgreSQL at DATABASE_URL: {exc}") from exc
    assert pool is not None
    return pool


async def apply_migrations(pool: asyncpg.Pool, component: str, directory: Path) -> list[str]:
    """Applies the not yet applied `NNNN_name.sql` files of `component`; returns their names."""
    files = sorted(directory.glob("*.sql"))  # noqa: ASYNC240 - a handful of small local files at start-up
    lock_key = int.from_bytes(
        hashlib.sha256(f"migrations:{component}".encode()).digest()[:8], "big", signed=True
    )
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       component text NOT NULL,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (component, name))"""
            )
            done = {
                r["name"]
                for r in await conn.fetch(
                    "SELECT name FROM schema_migrations WHERE component = $1", component
                )
            }
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migrations (component, name) VALUES ($1, $2)",
                        component,
                        path.name,
                    )
                applied.append(path.name)
                log.info("applied migration %s/%s", component, path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied
