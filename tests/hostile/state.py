"""What a refused request must leave unchanged: the rows of every table in every service's schema and
the Redis keys under the test's prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import redis.asyncio as redis
from psycopg import sql

Snapshot = dict[str, int]

#: Tables a refusal may add a row to by contract: the gateway stores a business refusal as the answer to
#: its idempotency key (Stripe-style, docs/saga.md "Idempotency keys"), so a retry gets the same answer.
REMEMBERED_ANSWERS = frozenset({"checkout.idempotency_keys"})


def cache_or_bucket(key: str) -> bool:
    """Redis keys that come and go without anyone writing state: the gateway's rate-limit buckets (every
    call spends a token, refused or not) and read-through caches (filled by reads, expired by time)."""
    return ":ratelimit:" in f":{key}" or key.split(":")[-2:-1] in (["product"], ["payment"])


async def row_counts(database_url: str, connection: psycopg.AsyncConnection[Any] | None = None) -> Snapshot:
    """Rows per table ("schema.table") of every service's schema (on `connection` when given)."""
    if connection is not None:
        return await _count(connection)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as opened:
        return await _count(opened)


async def _count(connection: psycopg.AsyncConnection[Any]) -> Snapshot:
    """Rows per table on an open connection."""
    tables = await connection.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'public') AND table_type = 'BASE TABLE'"
        " ORDER BY 1, 2"
    )
    parts = [
        sql.SQL("SELECT {label}, count(*) FROM {table}").format(
            label=sql.Literal(f"{schema}.{table}"), table=sql.Identifier(schema, table)
        )
        for schema, table in await tables.fetchall()
    ]
    if not parts:
        return {}
    counted = await connection.execute(sql.SQL(" UNION ALL ").join(parts))
    return {str(label): int(count) for label, count in await counted.fetchall()}


async def redis_keys(
    redis_url: str, prefix: str, ignore: Callable[[str], bool] = lambda key: False, client: redis.Redis | None = None
) -> Snapshot:
    """Keys under `prefix` (the name after the prefix → 1), less those `ignore` accepts."""
    own = client is None
    client = client or redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    finally:
        if own:
            await client.aclose()
    names = (key.removeprefix(prefix) for key in keys)
    return {f"redis:{name}": 1 for name in names if not ignore(name)}


async def snapshot(
    database_url: str, redis_url: str, prefix: str, ignore: Callable[[str], bool] = lambda key: False
) -> Snapshot:
    return {**await row_counts(database_url), **await redis_keys(redis_url, prefix, ignore)}


class StateReader:
    """`snapshot` over one open connection and one Redis client, for tests that read the state often."""

    def __init__(self, database_url: str, redis_url: str, prefix: str, ignore: Callable[[str], bool]) -> None:
        self._urls = (database_url, redis_url)
        self._prefix, self._ignore = prefix, ignore

    async def __aenter__(self) -> StateReader:
        self._connection = await psycopg.AsyncConnection.connect(self._urls[0], autocommit=True)
        self._redis = redis.Redis.from_url(self._urls[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._connection.close()
        await self._redis.aclose()

    async def read(self) -> Snapshot:
        rows = await row_counts(self._urls[0], self._connection)
        return {**rows, **await redis_keys(self._urls[1], self._prefix, self._ignore, self._redis)}


def difference(before: Snapshot, after: Snapshot) -> dict[str, tuple[int, int]]:
    """Every table or key whose count changed (less one remembered answer): name → (before, after)."""
    changed = {
        name: (before.get(name, 0), after.get(name, 0))
        for name in sorted(before.keys() | after.keys())
        if before.get(name, 0) != after.get(name, 0)
    }
    for name in REMEMBERED_ANSWERS:
        if changed.get(name, (0, 0))[1] - changed.get(name, (0, 0))[0] == 1:
            del changed[name]
    return changed
