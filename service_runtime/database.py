"""PostgreSQL access shared by every service: the pool, named queries, and bounded retry of conflicts.

Each service keeps all its SQL in one `queries.sql` (statements under `-- name: <name>` headers) and
executes it from one repository module; this module only provides the plumbing.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from service_runtime import errors

T = TypeVar("T")

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

#: Errors that mean "another transaction got in the way": the whole transaction may be retried.
RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.LockNotAvailable)


def create_pool(
    database_url: str, *, min_size: int, max_size: int, statement_timeout_ms: int, application_name: str
) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections; open it with `await pool.open(wait=True, timeout=...)`.

    Connections run in autocommit so that every transaction is explicit (`async with conn.transaction()`).
    `statement_timeout` stops a runaway statement from holding locks past any caller's deadline.
    """
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={
            "autocommit": True,
            "application_name": application_name,
            "options": f"-c statement_timeout={statement_timeout_ms}",
        },
        name=application_name,
        timeout=10.0,
    )


def load_queries(path: Path) -> Mapping[str, str]:
    """Parses a queries.sql file into {name: statement}."""
    text = path.read_text()
    headers = list(_HEADER.finditer(text))
    if not headers:
        raise ValueError(f"{path} has no '-- name: <name>' headers")
    queries: dict[str, str] = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.end() : end].strip()
        name = header.group(1)
        if name in queries:
            raise ValueError(f"{path}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{path}: query {name!r} is empty")
        queries[name] = body
    return queries


async def retry_conflicts(
    transaction: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay: float = 0.005,
    also: tuple[type[BaseException], ...] = (),
) -> T:
    """Runs `transaction` again when PostgreSQL aborted it for a serialization failure or deadlock
    (or one of the `also` errors, e.g. a unique violation from a concurrent duplicate request).

    The callable must open its own transaction so that each attempt starts clean. After `attempts`
    the last error propagates; the error interceptor maps it to ABORTED.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await transaction()
        except (*RETRYABLE, *also):
            if attempt == attempts:
                raise
            await asyncio.sleep(base_delay * (2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")


async def ping(pool: AsyncConnectionPool, *, timeout: float = 2.0) -> None:
    """One round trip through the pool. A pool so busy that no connection frees up within `timeout`
    counts as a failure too: a replica in that state should not get more traffic."""
    async with pool.connection(timeout=timeout) as connection:
        await connection.execute("SELECT 1")


def is_connection_error(error: BaseException) -> bool:
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout))


def as_service_error(error: BaseException) -> errors.ServiceError | None:
    """Translates a database failure that escaped a handler into what the caller should see, or None.

    Conflicts that survived `retry_conflicts` are ABORTED (retry the request); a statement timeout or an
    unreachable database is UNAVAILABLE with a RetryInfo hint. Nothing is committed in either case.
    """
    if isinstance(error, PoolTimeout):
        return errors.Unavailable(
            "the service has no free database connection; retry shortly",
            reason="DATABASE_BUSY",
            retry_after_seconds=0.5,
        )
    if isinstance(error, RETRYABLE):
        return errors.Aborted(
            "the request conflicted with concurrent requests; retry it", reason="CONFLICT", retry_after_seconds=0.05
        )
    if isinstance(error, pg_errors.QueryCanceled):
        return errors.Unavailable(
            "the database did not answer in time", reason="DATABASE_TIMEOUT", retry_after_seconds=1.0
        )
    if is_connection_error(error):
        return errors.Unavailable("the database is unreachable", reason="DATABASE_UNAVAILABLE", retry_after_seconds=1.0)
    return None
