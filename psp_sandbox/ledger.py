"""The sandbox PSP's ledger in PostgreSQL: the only module of the sandbox that runs SQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

Row = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class Claim:
    """The result of presenting an Idempotency-Key: ours to run (`operation_id`), or an earlier answer."""

    operation_id: str | None
    existing: Row | None


class Ledger:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LedgerTx]:
        async with self._pool.connection() as connection, connection.transaction():
            yield LedgerTx(connection)

    async def claim(self, key: str, kind: str, request_hash: str) -> Claim:
        """Records `key` as in progress (committed at once), or returns the row an earlier request left."""
        operation_id = new_id("op")
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                "INSERT INTO psp_sandbox.operations (operation_id, idempotency_key, kind, request_hash, state)"
                " VALUES (%s, %s, %s, %s, 'in_progress') ON CONFLICT (idempotency_key) DO NOTHING"
                " RETURNING operation_id",
                (operation_id, key, kind, request_hash),
            )
            if await cursor.fetchone() is not None:
                return Claim(operation_id, None)
            await cursor.execute("SELECT * FROM psp_sandbox.operations WHERE idempotency_key = %s", (key,))
            return Claim(None, await cursor.fetchone())

    async def retake(self, operation_id: str) -> bool:
        """Takes over a claim its request abandoned (the process died, or its work failed and rolled back);
        False when it was completed meanwhile."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "UPDATE psp_sandbox.operations SET created_at = now()"
                " WHERE operation_id = %s AND state = 'in_progress'",
                (operation_id,),
            )
            return cursor.rowcount == 1

    async def forget(self, operation_id: str) -> None:
        """Drops an in-progress claim whose request was not processed (a 5xx), so a retry runs it."""
        async with self._pool.connection() as connection:
            await connection.execute(
                "DELETE FROM psp_sandbox.operations WHERE operation_id = %s AND state = 'in_progress'",
                (operation_id,),
            )

    async def fence(self, key: str) -> Row:
        """Closes an unused key for good; returns the key's row (the fence, or what was there)."""
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                "INSERT INTO psp_sandbox.operations (operation_id, idempotency_key, kind, request_hash, state,"
                " completed_at) VALUES (%s, %s, 'fence', '', 'fenced', now()) ON CONFLICT (idempotency_key) DO NOTHING",
                (new_id("op"), key),
            )
            await cursor.execute("SELECT * FROM psp_sandbox.operations WHERE idempotency_key = %s", (key,))
            row = await cursor.fetchone()
            assert row is not None
            return row

    async def operation(self, *, operation_id: str | None = None, key: str | None = None) -> Row | None:
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            if operation_id is not None:
                await cursor.execute("SELECT * FROM psp_sandbox.operations WHERE operation_id = %s", (operation_id,))
            else:
                await cursor.execute("SELECT * FROM psp_sandbox.operations WHERE idempotency_key = %s", (key,))
            return await cursor.fetchone()

    async def authorization(self, authorization_id: str) -> Row | None:
        async with self._pool.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                "SELECT * FROM psp_sandbox.authorizations WHERE authorization_id = %s", (authorization_id,)
            )
            return await cursor.fetchone()


class LedgerTx:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection = connection

    async def _row(self, query: str, params: tuple[Any, ...]) -> Row | None:
        async with self._connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchone() if cursor.description else None

    async def create_authorization(
        self, *, token: str, currency_code: str, amount_minor: int, lapse_seconds: int, now: datetime
    ) -> Row:
        row = await self._row(
            "INSERT INTO psp_sandbox.authorizations (authorization_id, token, currency_code, amount_minor, status,"
            " created_at, expires_at) VALUES (%s, %s, %s, %s, 'authorized', %s, %s) RETURNING *",
            (new_id("auth"), token, currency_code, amount_minor, now, now + timedelta(seconds=lapse_seconds)),
        )
        assert row is not None
        return row

    async def lock_authorization(self, authorization_id: str) -> Row | None:
        return await self._row(
            "SELECT * FROM psp_sandbox.authorizations WHERE authorization_id = %s FOR UPDATE", (authorization_id,)
        )

    async def update_authorization(
        self, authorization_id: str, *, status: str, captured_minor: int, refunded_minor: int
    ) -> Row:
        row = await self._row(
            "UPDATE psp_sandbox.authorizations SET status = %s, captured_minor = %s, refunded_minor = %s"
            " WHERE authorization_id = %s RETURNING *",
            (status, captured_minor, refunded_minor, authorization_id),
        )
        assert row is not None
        return row

    async def create_refund(self, authorization_id: str, amount_minor: int) -> Row:
        row = await self._row(
            "INSERT INTO psp_sandbox.refunds (refund_id, authorization_id, amount_minor) VALUES (%s, %s, %s)"
            " RETURNING *",
            (new_id("re"), authorization_id, amount_minor),
        )
        assert row is not None
        return row

    async def complete(self, operation_id: str, http_status: int, response: dict[str, Any]) -> None:
        await self._row(
            "UPDATE psp_sandbox.operations SET state = 'done', http_status = %s, response = %s, completed_at = now()"
            " WHERE operation_id = %s",
            (http_status, Jsonb(response), operation_id),
        )
