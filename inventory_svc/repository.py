"""The only module of the inventory service that runs SQL. Statements live in `queries.sql`.

`InventoryStore.run(work)` is the unit of work: it borrows a connection, opens a transaction, passes
an `InventoryTransaction` (one method per named statement) to `work`, and commits when `work` returns
or rolls back when it raises; deadlocks and serialization failures start it again, a bounded number
of times. `InventoryStore.reserve` is the one operation that runs as a single autocommit statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from inventory_svc.domain import Line, Product, Reservation, ReservationStatus, normalised
from service_runtime.database import load_queries, retry_conflicts
from service_runtime.money import Money

Row = Mapping[str, Any]
T = TypeVar("T")

#: SQLSTATE raised by inventory.refuse_reservation (migration 0001) when a reserve statement rolls back.
RESERVATION_REFUSED = "IV001"


@cache
def queries() -> Mapping[str, str]:
    return load_queries(Path(__file__).with_name("queries.sql"))


def _product(row: Row) -> Product:
    return Product(
        sku=row["sku"],
        name=row["name"],
        price=Money(row["currency_code"], row["price_minor"]),
        weight_grams=row["weight_grams"],
        stock_on_hand=row["stock_on_hand"],
        reserved=row["reserved"],
        updated_at=row["updated_at"],
    )


def _reservation(row: Row, lines: Sequence[Line]) -> Reservation:
    return Reservation(
        checkout_id=row["checkout_id"],
        status=ReservationStatus(row.get("status", ReservationStatus.ACTIVE.value)),
        lines=normalised(lines),  # SKU order as Python sorts it, whatever the database's collation
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        confirmed_at=row.get("confirmed_at"),
        released_at=row.get("released_at"),
        order_id=row.get("order_id"),
        release_reason=row.get("release_reason", ""),
        past_expiry=bool(row.get("past_expiry", False)),
    )


class InventoryTransaction:
    """Statements run on one connection, inside the transaction the store opened."""

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection = connection

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        async with self._connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(queries()[name], params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else []

    async def _row(self, name: str, params: Mapping[str, Any]) -> Row | None:
        rows = await self._rows(name, params)
        return rows[0] if rows else None

    # Products

    async def upsert_product(self, sku: str, name: str, price: Money, weight_grams: int) -> tuple[Product, bool]:
        row = await self._row(
            "upsert_product",
            {
                "sku": sku,
                "name": name,
                "price_minor": price.amount_minor,
                "currency_code": price.currency_code,
                "weight_grams": weight_grams,
            },
        )
        assert row is not None  # INSERT … ON CONFLICT DO UPDATE always returns the row
        return _product(row), bool(row["created"])

    async def products(self, skus: Sequence[str]) -> dict[str, Product]:
        rows = await self._rows("products_by_sku", {"skus": list(skus)})
        return {row["sku"]: _product(row) for row in rows}

    async def list_products(self, after_sku: str, in_stock_only: bool, limit: int) -> list[Product]:
        rows = await self._rows(
            "list_products", {"after_sku": after_sku, "in_stock_only": in_stock_only, "limit": limit}
        )
        return [_product(row) for row in rows]

    async def lock_products(self, skus: Sequence[str]) -> set[str]:
        """Locks the rows in SKU order; returns the SKUs that exist."""
        return {row["sku"] for row in await self._rows("lock_products", {"skus": sorted(skus)})}

    async def lock_products_of_reservations(self, checkout_ids: Sequence[str]) -> None:
        await self._rows("lock_products_of_reservations", {"checkout_ids": list(checkout_ids)})

    async def give_back_units(self, sku: str, quantity: int) -> None:
        await self._rows("give_back_units", {"sku": sku, "quantity": quantity})

    async def give_back_reserved_lines(self, checkout_ids: Sequence[str]) -> list[str]:
        """Returns the reserved units of these reservations; the SKUs that changed."""
        return [
            row["sku"] for row in await self._rows("give_back_reserved_lines", {"checkout_ids": list(checkout_ids)})
        ]

    async def sell_units(self, sku: str, quantity: int) -> None:
        await self._rows("sell_units", {"sku": sku, "quantity": quantity})

    async def restock_units(self, sku: str, quantity: int) -> bool:
        """False when the stock cap refused it."""
        return await self._row("restock_units", {"sku": sku, "quantity": quantity}) is not None

    async def change_stock(self, sku: str, delta: int) -> Product | None:
        """None when the SKU is unknown or the change would go below reserved or past the cap."""
        row = await self._row("change_stock", {"sku": sku, "delta": delta})
        return _product(row) if row else None

    # Audit trail

    async def record_movement(
        self, *, sku: str, delta: int, kind: str, reason: str, note: str, request_key: str
    ) -> tuple[int, datetime]:
        row = await self._row(
            "record_movement",
            {"sku": sku, "delta": delta, "kind": kind, "reason": reason, "note": note, "request_key": request_key},
        )
        assert row is not None  # INSERT … RETURNING
        return row["movement_id"], row["created_at"]

    async def movements_for_request(self, kind: str, request_key: str) -> list[Row]:
        return await self._rows("movements_for_request", {"kind": kind, "request_key": request_key})

    # Reservations

    async def _reserve_all_or_nothing(
        self, checkout_id: str, lines: Sequence[Line], ttl_seconds: float
    ) -> Reservation | None:
        try:
            row = await self._row(
                "reserve_all_or_nothing",
                {
                    "checkout_id": checkout_id,
                    "skus": [line.sku for line in lines],
                    "quantities": [line.quantity for line in lines],
                    "ttl_seconds": ttl_seconds,
                },
            )
        except psycopg.Error as error:
            if error.sqlstate == RESERVATION_REFUSED:
                return None
            raise
        return _reservation({**row, "checkout_id": checkout_id}, lines) if row else None

    async def insert_released_marker(self, checkout_id: str, reason: str) -> Reservation | None:
        row = await self._row("insert_released_marker", {"checkout_id": checkout_id, "reason": reason})
        return _reservation(row, ()) if row else None

    async def _with_lines(self, row: Row | None) -> Reservation | None:
        if row is None:
            return None
        lines = await self._rows("reservation_lines", {"checkout_id": row["checkout_id"]})
        return _reservation(row, [Line(line["sku"], line["quantity"]) for line in lines])

    async def reservation(self, checkout_id: str, *, lock: bool) -> Reservation | None:
        name = "lock_reservation" if lock else "reservation"
        return await self._with_lines(await self._row(name, {"checkout_id": checkout_id}))

    async def lock_reservation_by_order(self, order_id: str) -> Reservation | None:
        return await self._with_lines(await self._row("lock_reservation_by_order", {"order_id": order_id}))

    async def mark_confirmed(self, reservation: Reservation, order_id: str) -> Reservation | None:
        """None when `order_id` already confirmed another checkout (the transaction must then end)."""
        try:
            row = await self._row(
                "mark_reservation_confirmed", {"checkout_id": reservation.checkout_id, "order_id": order_id}
            )
        except pg_errors.UniqueViolation:
            return None
        return _reservation(row, reservation.lines) if row else None

    async def mark_ended(self, reservation: Reservation, status: ReservationStatus, reason: str) -> Reservation:
        row = await self._row(
            "mark_reservation_ended",
            {"checkout_id": reservation.checkout_id, "status": status.value, "reason": reason},
        )
        assert row is not None, "mark_ended needs a locked ACTIVE reservation"
        return _reservation(row, reservation.lines)

    async def extend(self, reservation: Reservation, ttl_seconds: float) -> Reservation:
        row = await self._row(
            "extend_reservation", {"checkout_id": reservation.checkout_id, "ttl_seconds": ttl_seconds}
        )
        assert row is not None, "extend needs a locked ACTIVE reservation"
        return _reservation(row, reservation.lines)

    async def expire_due(self, batch: int) -> list[str]:
        """Ends up to `batch` due reservations as EXPIRED; their checkout ids (units not yet given back)."""
        return [row["checkout_id"] for row in await self._rows("expire_due_reservations", {"batch": batch})]

    async def invariant_violations(self) -> list[Row]:
        return await self._rows("invariant_violations", {})


class InventoryStore:
    """Hands out units of work over the service's connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def run(self, work: Callable[[InventoryTransaction], Awaitable[T]], *, duplicates_race: bool = False) -> T:
        """Runs `work` in one transaction, again from the start if a concurrent transaction got in the
        way (deadlock, serialization failure, or with `duplicates_race` a unique violation: a concurrent
        duplicate of the same idempotent request committed first, so the next attempt sees it)."""

        async def attempt() -> T:
            async with self.transaction() as tx:
                return await work(tx)

        return await retry_conflicts(attempt, also=(pg_errors.UniqueViolation,) if duplicates_race else ())

    async def reserve(self, checkout_id: str, lines: Sequence[Line], ttl_seconds: float) -> Reservation | None:
        """Makes the reservation in one autocommit statement if the checkout has none and every line fits
        (None otherwise). The hot product rows stay locked only while PostgreSQL runs the statement,
        never across a round trip to this process."""

        async def attempt() -> Reservation | None:
            async with self._pool.connection() as connection:
                return await InventoryTransaction(connection)._reserve_all_or_nothing(checkout_id, lines, ttl_seconds)

        return await retry_conflicts(attempt)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InventoryTransaction]:
        async with self._pool.connection() as connection, connection.transaction():
            yield InventoryTransaction(connection)
