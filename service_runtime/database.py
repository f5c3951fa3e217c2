"""The service's PostgreSQL: a connection pool plus what the service knows of the server's health.

`Database` is what repositories borrow connections from. It keeps three promises that a bare pool
does not:

- **Fail fast when the server is known to be down.** A probe (its own connection, never the pool's)
  decides whether PostgreSQL answers. While it does not, `connection()` refuses at once with
  UNAVAILABLE `DATABASE_UNAVAILABLE` and a RetryInfo, instead of waiting out the pool timeout; the
  moment the probe sees the outage, the pool is closed, so requests already queued for a connection
  are refused too.
- **Recover in bounded time.** psycopg_pool reconnects with exponential backoff (1, 2, 4, 8… s), so
  after a long outage it could take most of a minute to serve again. Here the probe runs every
  `DOWN_PROBE_INTERVAL_SECONDS` while the server is down, and when it answers again a fresh pool is
  opened: the service serves within about a second of PostgreSQL's return, whatever the outage's length.
- **A busy pool is not a failure.** Waiting for a free connection ends in UNAVAILABLE `DATABASE_BUSY`
  (retry shortly); readiness does not change, because the probe does not use the pool.

A request that fails on a connection error reports it (`suspect`), which wakes the probe at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from service_runtime import errors

log = logging.getLogger(__name__)

#: Errors that mean "another transaction got in the way": the whole transaction may be retried.
CONFLICTS: tuple[type[BaseException], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)

#: How often the probe asks a server that is down whether it is back.
DOWN_PROBE_INTERVAL_SECONDS = 0.5
#: How long the probe waits to connect or for `SELECT 1` before calling the server down.
PROBE_TIMEOUT_SECONDS = 2.0


class DatabaseState(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet
    UP = "up"
    DOWN = "down"


def unavailable() -> errors.Unavailable:
    return errors.Unavailable("the database is unreachable", reason="DATABASE_UNAVAILABLE", retry_after_seconds=1.0)


def busy() -> errors.Unavailable:
    return errors.Unavailable(
        "the service has no free database connection; retry shortly", reason="DATABASE_BUSY", retry_after_seconds=0.5
    )


def is_connection_error(error: BaseException) -> bool:
    """The connection or the server failed (as opposed to the statement): PostgreSQL may be down."""
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed)) and not (
        isinstance(error, (*CONFLICTS, pg_errors.QueryCanceled))
    )


def as_service_error(error: BaseException) -> errors.ServiceError | None:
    """Translates a database failure that escaped a handler into what the caller should see, or None.

    Conflicts that survived the retry policy are ABORTED (retry the request); a statement timeout or an
    unreachable database is UNAVAILABLE with a RetryInfo hint. Nothing is committed in either case.
    """
    if isinstance(error, PoolTimeout):
        return busy()
    if isinstance(error, CONFLICTS):
        return errors.Aborted(
            "the request conflicted with concurrent requests; retry it", reason="CONFLICT", retry_after_seconds=0.05
        )
    if isinstance(error, pg_errors.QueryCanceled):
        return errors.Unavailable(
            "the database did not answer in time", reason="DATABASE_TIMEOUT", retry_after_seconds=1.0
        )
    if is_connection_error(error):
        return unavailable()
    return None


class Database:
    """A pool of autocommit connections and the server's known state; see the module docstring.

    Connections run in autocommit so that every transaction is explicit (`async with conn.transaction()`).
    `statement_timeout` stops a runaway statement from holding locks past any caller's deadline.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int,
        max_size: int,
        statement_timeout_ms: int,
        application_name: str,
        acquire_timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._application_name = application_name
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": application_name,
            "options": f"-c statement_timeout={statement_timeout_ms}",
        }
        self._acquire_timeout = acquire_timeout_seconds
        self._pool: AsyncConnectionPool | None = None
        self._state = DatabaseState.UNKNOWN
        self._probe_connection: psycopg.AsyncConnection[Any] | None = None
        self._suspected = asyncio.Event()
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> DatabaseState:
        return self._state

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            kwargs=self._connect_kwargs,
            name=self._application_name,
            timeout=self._acquire_timeout,
        )

    def pool_stats(self) -> dict[str, int]:
        """The current pool's counters (psycopg_pool's `get_stats`: pool_size, pool_available,
        requests_waiting, pool_max…); empty while no pool is open."""
        pool = self._pool
        return pool.get_stats() if pool is not None else {}

    async def open(self) -> None:
        """Creates the pool and starts connecting in the background (never blocks on the server)."""
        if self._pool is None:
            self._pool = self._new_pool()
            await self._pool.open(wait=False)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrows a connection; UNAVAILABLE at once when the server is known to be down."""
        pool = self._pool
        if pool is None or self._state is DatabaseState.DOWN:
            raise unavailable()
        try:
            async with pool.connection() as connection:
                yield connection
        except PoolClosed:
            raise unavailable() from None
        except PoolTimeout:
            # The probe may have found the server down while this request waited.
            raise (unavailable() if self.state is DatabaseState.DOWN else busy()) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            if is_connection_error(error):
                self.suspect()
            raise

    def suspect(self) -> None:
        """A request saw a connection error: probe now rather than at the next interval."""
        self._suspected.set()

    async def wait_suspected(self, timeout: float) -> None:
        """Sleeps up to `timeout`, less if a request reports a connection error meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._suspected.wait(), timeout)
        self._suspected.clear()

    async def probe(self) -> bool:
        """One round trip on the probe's own connection; updates the state and the pool. True when up."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                if self._probe_connection is None or self._probe_connection.closed:
                    self._probe_connection = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, application_name=f"{self._application_name}-probe"
                    )
                await self._probe_connection.execute("SELECT 1")
        except Exception as error:  # any failure to answer means "down"
            await self._close_probe_connection()
            if self._state is not DatabaseState.DOWN:
                log.warning("PostgreSQL is unreachable: %s", _one_line(error))
                self._state = DatabaseState.DOWN
                self._retire_pool()
            return False
        if self._state is DatabaseState.DOWN:
            log.warning("PostgreSQL answers again; opening a fresh connection pool")
            self._retire_pool()
            await self.open()
        self._state = DatabaseState.UP
        return True

    def _retire_pool(self) -> None:
        """Closes the current pool in the background: queued requests are refused now, and the pool's
        reconnection backoff cannot delay recovery."""
        pool, self._pool = self._pool, None
        if pool is not None:
            task = asyncio.create_task(pool.close(timeout=5.0))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def _close_probe_connection(self) -> None:
        connection, self._probe_connection = self._probe_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        self._retire_pool()
        await self._close_probe_connection()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
