"""The runtime's unit of work against a real PostgreSQL: its commit and rollback rule, the one retry
policy (retries never multiply when units of work nest), and no RPC inside a transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import errors as pg_errors

from inventory_svc.__main__ import SPEC as INVENTORY
from inventory_svc.domain.model import MAX_STOCK
from service_runtime import errors
from service_runtime.channels import Channels, RpcInsideTransaction
from service_runtime.database import Database
from service_runtime.sql import CommitThenRaise, QueryFile, RaceLost, RetryPolicy, Statements, UnitOfWork
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from tests.identity import as_service

QUERIES = """
-- name: add_note
-- Appends a note.
INSERT INTO uow_test.notes (body) VALUES (%(body)s) RETURNING id

-- name: notes
-- Every note in order.
SELECT body FROM uow_test.notes ORDER BY id

-- name: pause
-- Half a second of a statement running.
SELECT pg_sleep(0.5)
"""


class NoteStatements(Statements):
    async def add_note(self, body: str) -> int:
        return int((await self._one("add_note", {"body": body}))["id"])

    async def notes(self) -> list[str]:
        return [row["body"] for row in await self._rows("notes")]

    async def pause(self) -> None:
        await self._rows("pause")


@pytest.fixture
async def work(database_url: str, tmp_path: Path) -> AsyncIterator[UnitOfWork[NoteStatements]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(
            "CREATE SCHEMA uow_test; CREATE TABLE uow_test.notes (id serial PRIMARY KEY, body text)"
        )
    queries = tmp_path / "queries.sql"
    queries.write_text(QUERIES)
    NoteStatements.queries = QueryFile(queries)
    database = Database(database_url, min_size=1, max_size=4, statement_timeout_ms=5000, application_name="uow-test")
    await database.open()
    try:
        yield UnitOfWork(database, NoteStatements, policy=RetryPolicy(attempts=4, base_delay_seconds=0.001))
    finally:
        await database.close()


async def notes(work: UnitOfWork[NoteStatements]) -> list[str]:
    return await work.read(lambda tx: tx.notes())


async def test_work_that_returns_commits_and_work_that_raises_rolls_back(work):
    assert await work.run(lambda tx: tx.add_note("kept")) >= 1

    async def fails(tx: NoteStatements) -> None:
        await tx.add_note("lost")
        raise errors.FailedPrecondition("refused", reason="TEST_REFUSAL")

    with pytest.raises(errors.FailedPrecondition):
        await work.run(fails)
    assert await notes(work) == ["kept"]


async def test_commit_then_raise_keeps_the_change_and_still_refuses_the_caller(work):
    async def expires(tx: NoteStatements) -> None:
        await tx.add_note("expired")
        raise CommitThenRaise(errors.FailedPrecondition("it expired", reason="EXPIRED"))

    with pytest.raises(errors.FailedPrecondition) as raised:
        await work.run(expires)
    assert raised.value.reason == "EXPIRED"
    assert await notes(work) == ["expired"]


async def test_conflicts_are_retried_from_a_clean_transaction_up_to_the_policys_attempts(work):
    calls: list[int] = []

    async def deadlocks_twice(tx: NoteStatements) -> int:
        calls.append(await tx.add_note(f"attempt {len(calls) + 1}"))
        if len(calls) < 3:
            raise pg_errors.DeadlockDetected("deadlock detected")
        return len(calls)

    assert await work.run(deadlocks_twice) == 3
    assert await notes(work) == ["attempt 3"]  # the failed attempts were rolled back

    async def always_deadlocks(tx: NoteStatements) -> None:
        raise pg_errors.DeadlockDetected("deadlock detected")

    with pytest.raises(pg_errors.DeadlockDetected):  # the error mapping answers it ABORTED (CONFLICT)
        await work.run(always_deadlocks)


async def test_nested_units_of_work_retry_once_at_the_outermost_call_never_multiplied(work):
    runs = 0

    async def inner(tx: NoteStatements) -> None:
        nonlocal runs
        runs += 1
        raise RaceLost

    async def outer() -> None:
        await work.run(inner)  # would retry by itself outside `attempts`

    with pytest.raises(errors.Aborted) as raised:
        await work.attempts(outer)
    assert raised.value.reason == "CONFLICT"
    assert runs == work.policy.attempts  # 4, not 4 × 4


async def test_a_business_refusal_is_never_retried(work):
    runs = 0

    async def refuses(tx: NoteStatements) -> None:
        nonlocal runs
        runs += 1
        raise errors.FailedPrecondition("no", reason="NO")

    with pytest.raises(errors.FailedPrecondition):
        await work.run(refuses)
    assert runs == 1


async def test_an_rpc_started_inside_a_transaction_is_refused_and_one_outside_goes_through(work, start_service):
    inventory = await start_service(INVENTORY)
    channels = Channels()
    stub = pb_grpc.InventoryServiceStub(channels.get(inventory.address))
    request = pb.GetReservationRequest(checkout_id="c1")
    try:

        async def calls_out(tx: NoteStatements) -> None:
            await tx.add_note("before the call")
            await stub.GetReservation(request, metadata=as_service())

        with pytest.raises(RpcInsideTransaction):
            await work.run(calls_out)
        assert await notes(work) == []
        with pytest.raises(grpc.aio.AioRpcError) as outside:
            await stub.GetReservation(request, metadata=as_service())
        assert outside.value.code() == grpc.StatusCode.NOT_FOUND  # it reached the service
    finally:
        await channels.close()


async def test_the_stock_cap_in_code_is_the_one_the_database_enforces(database_url):
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'inventory.products'::regclass AND contype = 'c'"
        )
        definitions = [row[0] for row in await cursor.fetchall()]
    assert any(f"stock_on_hand <= {MAX_STOCK}" in definition for definition in definitions), definitions


async def test_a_read_sees_one_snapshot_refuses_writes_and_leaves_its_connection_clean(work):
    await work.run(lambda tx: tx.add_note("first"))

    with pytest.raises(pg_errors.ReadOnlySqlTransaction):
        await work.read(lambda tx: tx.add_note("written in a read"))

    async def twice(tx: NoteStatements) -> tuple[list[str], list[str]]:
        before = await tx.notes()
        await work.run(lambda other: other.add_note("committed meanwhile"))  # another connection of the pool
        return before, await tx.notes()

    seen = await work.read(twice)
    assert seen == (["first"], ["first"])  # one snapshot: the concurrent commit is not seen inside the read
    assert await notes(work) == ["first", "committed meanwhile"]  # every connection back idle and usable
    assert await work.run(lambda tx: tx.add_note("after")) >= 1


@pytest.mark.parametrize("kind", ["run", "read"])
async def test_work_cancelled_mid_statement_never_leaves_a_used_connection_in_the_pool(work, kind):
    """A deadline or a departed client cancels work while a statement runs, dozens of times at every
    moment of it; each next unit of work still gets a clean connection (no transaction left open, no
    psycopg bookkeeping half-done) and commits."""

    async def slow(tx: NoteStatements) -> None:
        await tx.pause()
        if kind == "run":
            await tx.add_note("never")

    for round_ in range(30):
        task = asyncio.create_task(work.run(slow) if kind == "run" else work.read(slow))
        await asyncio.sleep(0.001 * (round_ % 10) + 0.01 * (round_ // 10))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await work.run(lambda tx, body=f"after {round_}": tx.add_note(body))
    written = await notes(work)
    assert "never" not in written
    assert written == [f"after {round_}" for round_ in range(30)]
