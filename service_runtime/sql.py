"""The base every service's SQL module builds on: named statements, the unit of work, one retry policy.

A service keeps all its SQL in one `queries.sql` (each statement under a `-- name: <name>` header with
a one-line description and `%(param)s` parameters) and runs it from one module (`repository.py`) that
subclasses `Statements` with one method per named statement, returning domain types.

**The unit of work** (`UnitOfWork.run(work)`) borrows a connection, opens a transaction, hands `work`
an instance of the service's `Statements` bound to it, and

- commits when `work` returns (its return value is the result);
- rolls back when `work` raises, and the exception propagates;
- except `CommitThenRaise(error)`: the transaction commits and then `error` is raised. This is how a
  use case records a state change and still refuses the caller (a confirm that finds its reservation
  past its expiry expires it, and the expiry must stick).

**The retry policy** (`RetryPolicy`, applied by `UnitOfWork.run` and `UnitOfWork.attempts`) runs the
work again from the start when PostgreSQL aborted it for a conflict (serialization failure, deadlock,
lock timeout), when the work raised `RaceLost` (it saw another request move the state under it), and,
when asked, on a unique violation (a concurrent duplicate of an idempotent request committed first:
the next attempt finds it and replays). Only the outermost call retries: a `run` inside `attempts`
runs once, so attempts never multiply. Retried work is database work only: no RPC may be made while a
transaction is open (`service_runtime.channels` refuses it), so a retry can never re-send one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row

from service_runtime import errors, metrics, telemetry
from service_runtime.database import CONFLICTS, Database

T = TypeVar("T")
S = TypeVar("S", bound="Statements")
Row = Mapping[str, Any]

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

#: True while the current task holds an open transaction (see `channels`: no RPC may start then).
in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("in_transaction", default=False)
_retrying: contextvars.ContextVar[bool] = contextvars.ContextVar("retrying", default=False)


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


@functools.cache
def _operation(query: str) -> str:
    """The SQL verb of a statement (its first word after the comment lines), e.g. "UPDATE"."""
    for line in query.splitlines():
        words = line.split()
        if words and not words[0].startswith("--"):
            return words[0].upper()
    return "SQL"


class QueryFile:
    """A service's queries.sql, read the first time a statement is needed (never at import)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def statements(self) -> Mapping[str, str]:
        return load_queries(self.path)

    def __getitem__(self, name: str) -> str:
        return self.statements[name]


class RaceLost(Exception):
    """Raised by work that found the state moved under it by a concurrent request: retry from the start."""


class CommitThenRaise(Exception):
    """Raised by work to commit what it wrote and then refuse the caller with `error`."""

    def __init__(self, error: errors.ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


def conflict_persisted() -> errors.Aborted:
    return errors.Aborted(
        "concurrent requests kept conflicting with this one; retry the request",
        reason="CONFLICT",
        retry_after_seconds=0.05,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How the unit of work retries conflicts: `attempts` in all, with jittered exponential backoff."""

    attempts: int = 5
    base_delay_seconds: float = 0.005
    max_delay_seconds: float = 0.2

    def delay(self, attempt: int) -> float:
        backoff: float = self.base_delay_seconds * 2 ** (attempt - 1)
        return min(self.max_delay_seconds, backoff) * (0.5 + random.random())

    async def run(self, work: Callable[[], Awaitable[T]], *, also: tuple[type[BaseException], ...] = ()) -> T:
        """Runs `work`, again from the start after a conflict; the outermost caller alone retries.

        A conflict that outlives every attempt is ABORTED (CONFLICT) if it was `RaceLost`; PostgreSQL's
        own conflict errors propagate and the error mapping (service_runtime.status) answers ABORTED too.
        """
        if _retrying.get():
            return await work()
        retryable: tuple[type[BaseException], ...] = (*CONFLICTS, RaceLost, *also)
        token = _retrying.set(True)
        try:
            for attempt in range(1, self.attempts + 1):
                try:
                    return await work()
                except retryable as lost:
                    metrics.conflict(type(lost).__name__)
                    if attempt == self.attempts:
                        raise
                await asyncio.sleep(self.delay(attempt))
        except RaceLost:
            raise conflict_persisted() from None
        finally:
            _retrying.reset(token)
        raise AssertionError("unreachable")


class WorkSpan:
    """The one CLIENT span of a unit of work's SQL (service_runtime.telemetry): from the moment it has its
    connection until it commits or rolls back, so BEGIN, every statement and COMMIT are inside it.

    Named after its statement (`<VERB> <statement name>`, e.g. `UPDATE start_attempt`) when it ran one, or
    after the statements it ran (`start_attempt, record_step +2`) when it ran several; `db.query.summary`
    lists every statement name in order and `db.query.text` their text (named placeholders, never
    parameters), `db.operation.name` the verb (`TRANSACTION` for several). A failed statement sets the
    span's status to its error's class only (PostgreSQL's text can quote a row). Before, each statement
    was a span of its own: a checkout made about 80 of them; one per transaction is about half that.
    """

    __slots__ = ("_names", "_queries", "_span")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._names: list[str] = []
        self._queries: list[str] = []

    @classmethod
    def begin(cls) -> WorkSpan:
        return cls(telemetry.tracer().start_span("TRANSACTION", kind=SpanKind.CLIENT))

    def statement(self, name: str, query: str) -> None:
        self._names.append(name)
        self._queries.append(query)

    def failed(self, error: BaseException) -> None:
        telemetry.fail(self._span, type(error).__name__)

    def end(self) -> None:
        names, span = self._names, self._span
        if len(names) == 1:
            operation = _operation(self._queries[0])
            span.update_name(f"{operation} {names[0]}")
        else:
            operation = "TRANSACTION"
            if names:
                span.update_name(", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else ""))
        span.set_attributes(
            {
                "db.system": "postgresql",
                "db.operation.name": operation,
                "db.query.summary": " ".join(names),
                "db.query.text": ";\n".join(self._queries),
            }
        )
        span.end()


#: The span of the unit of work the current task is in (None: none, or it is not traced).
_work_span: contextvars.ContextVar[WorkSpan | None] = contextvars.ContextVar("work_span", default=None)


@contextlib.contextmanager
def _traced_work() -> Iterator[None]:
    """Makes the unit of work run inside the block one span (`WorkSpan`), when it runs inside a recording
    span; untraced work (tracing off, an idle poller, an unsampled request) costs one lookup."""
    if not trace.get_current_span().is_recording():
        yield
        return
    work = WorkSpan.begin()
    token = _work_span.set(work)
    try:
        yield
    except psycopg.Error as error:  # a statement or the COMMIT failed (not a refusal of the work's own)
        work.failed(error)
        raise
    finally:
        _work_span.reset(token)
        work.end()


class Statements:
    """One method per named statement, run on the connection of the current unit of work.

    Subclasses set `queries = QueryFile(Path(__file__).with_name("queries.sql"))` and map rows to
    domain types in their public methods; `_rows`/`_row`/`_one`/`_execute` are for them alone.
    """

    queries: QueryFile

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection = connection

    async def _rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        work = _work_span.get()
        if work is not None:  # inside a traced unit of work: its one span lists the statement
            work.statement(name, self.queries[name])
            try:
                return await self._execute_named(name, params)
            except BaseException as error:
                work.failed(error)
                raise
        if not trace.get_current_span().is_recording():  # untraced work (an idle poller, tracing off)
            return await self._execute_named(name, params)
        # A statement run outside a unit of work (on a connection of its own) is a span of its own.
        span = WorkSpan.begin()
        span.statement(name, self.queries[name])
        try:
            return await self._execute_named(name, params)
        except BaseException as error:
            span.failed(error)
            raise
        finally:
            span.end()

    async def _execute_named(self, name: str, params: Mapping[str, Any] | None) -> list[Row]:
        async with self._connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(self.queries[name], params or {})
            # Whether it returned rows, from the result's status: `cursor.description` would build a Column
            # object per column on every statement (~80 us for a 40-column row), only to be thrown away.
            result = cursor.pgresult
            return list(await cursor.fetchall()) if result is not None and result.status == ExecStatus.TUPLES_OK else []

    async def _row(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self._rows(name, params)
        return rows[0] if rows else None

    async def _one(self, name: str, params: Mapping[str, Any] | None = None) -> Row:
        """The statement's single row; a statement that returns none here is a bug in the caller."""
        row = await self._row(name, params)
        if row is None:
            raise LookupError(f"statement {name!r} returned no row")
        return row


class UnitOfWork(Generic[S]):
    """Hands out transactions over a service's `Statements`; the rules are in the module docstring."""

    def __init__(self, database: Database, statements: type[S], *, policy: RetryPolicy = RetryPolicy()) -> None:
        self._database = database
        self._statements = statements
        self.policy = policy

    async def run(self, work: Callable[[S], Awaitable[T]], *, retry_duplicates: bool = False) -> T:
        """`work` in one transaction, retried from the start after a conflict (see the module docstring)."""

        async def attempt() -> T:
            async with self.transaction() as statements:
                return await work(statements)

        also = (pg_errors.UniqueViolation,) if retry_duplicates else ()
        return await self.policy.run(attempt, also=also)

    async def attempts(self, work: Callable[[], Awaitable[T]]) -> T:
        """Retries `work`, which may run several units of work (and single statements) but no RPC."""
        return await self.policy.run(work)

    async def read(self, work: Callable[[S], Awaitable[T]]) -> T:
        """`work` in a read-only transaction (one snapshot); nothing to commit, nothing to retry.

        Begun with one `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` (before: BEGIN, then SET
        TRANSACTION READ ONLY, a round trip more on every read, and at READ COMMITTED each statement saw
        its own snapshot); a read-only transaction at REPEATABLE READ never fails to serialize. Ended with
        COMMIT, or ROLLBACK when `work` raises."""
        async with self._database.connection() as connection:
            with _traced_work():
                await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                token = in_transaction.set(True)
                try:
                    result = await work(self._statements(connection))
                except BaseException:
                    with contextlib.suppress(psycopg.Error):  # a broken connection: the pool discards it
                        await connection.execute("ROLLBACK")
                    raise
                finally:
                    in_transaction.reset(token)
                await connection.execute("COMMIT")
                return result

    async def statement(self, work: Callable[[S], Awaitable[T]]) -> T:
        """`work` as autocommit statements, each its own transaction (for the one-statement hot paths,
        whose row locks must end with the statement). Retried like `run`."""

        async def attempt() -> T:
            async with self._database.connection() as connection:
                with _traced_work():
                    token = in_transaction.set(True)
                    try:
                        return await work(self._statements(connection))
                    finally:
                        in_transaction.reset(token)

        return await self.policy.run(attempt)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[S]:
        """One transaction, not retried: commits on a normal exit or `CommitThenRaise`, else rolls back."""
        refusal: errors.ServiceError | None = None
        async with self._database.connection() as connection:
            with _traced_work():
                token = in_transaction.set(True)
                try:
                    async with connection.transaction():
                        try:
                            yield self._statements(connection)
                        except CommitThenRaise as raised:
                            refusal = raised.error  # leave the block normally: the transaction commits
                finally:
                    in_transaction.reset(token)
        if refusal is not None:
            raise refusal
