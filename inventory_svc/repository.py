"""The only module of the inventory service that runs SQL: one method per statement of `queries.sql`.

`InventoryStatements` runs on the connection of a unit of work (`service_runtime.sql.UnitOfWork`),
which owns the transaction and the retry policy; every method returns domain types.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors

from inventory_svc.domain.model import (
    MAX_STOCK,
    Movement,
    MovementKind,
    Product,
    Reservation,
    ReservationRequest,
    ReservationStatus,
    StockDiscrepancy,
)
from inventory_svc.domain.rules import normalised
from service_runtime.sql import QueryFile, Row, Statements
from service_runtime.values import LineItem, Money

#: SQLSTATE raised by inventory.refuse_reservation (migration 0001) when a reserve statement rolls back.
RESERVATION_REFUSED = "IV001"


def _product(row: Row) -> Product:
    return Product(
        sku=row["sku"],
        name=row["name"],
        price=Money(row["currency_code"], row["price_minor"]),
        weight_grams=row["weight_grams"],
        stock_on_hand=row["stock_on_hand"],
        reserved=row["reserved"],
        updated_at=row["updated_at"],
        discontinued_at=row.get("discontinued_at"),
    )


def _reservation(row: Row, lines: Sequence[LineItem]) -> Reservation:
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


def _movement(row: Row) -> Movement:
    return Movement(
        movement_id=row["movement_id"],
        sku=row["sku"],
        delta=row["delta"],
        kind=MovementKind(row["kind"]),
        reason=row["reason"],
        note=row["note"],
        request_key=row["request_key"],
        created_at=row["created_at"],
    )


class InventoryStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    # Products

    async def upsert_product(self, sku: str, name: str, price: Money, weight_grams: int) -> tuple[Product, bool]:
        """The product as stored, and whether it was created."""
        row = await self._one(
            "upsert_product",
            {
                "sku": sku,
                "name": name,
                "price_minor": price.amount_minor,
                "currency_code": price.currency_code,
                "weight_grams": weight_grams,
            },
        )
        return _product(row), bool(row["created"])

    async def discontinue_product(self, sku: str) -> tuple[Product, bool] | None:
        """The product after discontinuing it and whether this call did; None for an unknown SKU."""
        row = await self._row("discontinue_product", {"sku": sku})
        return (_product(row), bool(row["changed"])) if row else None

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
        rows = await self._rows("give_back_reserved_lines", {"checkout_ids": list(checkout_ids)})
        return [row["sku"] for row in rows]

    async def sell_units(self, sku: str, quantity: int) -> None:
        await self._rows("sell_units", {"sku": sku, "quantity": quantity})

    async def restock_units(self, sku: str, quantity: int) -> bool:
        """False when the stock cap refused it."""
        row = await self._row("restock_units", {"sku": sku, "quantity": quantity, "max_stock": MAX_STOCK})
        return row is not None

    async def change_stock(self, sku: str, delta: int) -> Product | None:
        """None when the SKU is unknown or the change would go below reserved or past the cap."""
        row = await self._row("change_stock", {"sku": sku, "delta": delta, "max_stock": MAX_STOCK})
        return _product(row) if row else None

    # Audit trail

    async def record_movement(
        self, *, sku: str, delta: int, kind: MovementKind, reason: str, note: str, request_key: str
    ) -> Movement:
        row = await self._one(
            "record_movement",
            {
                "sku": sku,
                "delta": delta,
                "kind": kind.value,
                "reason": reason,
                "note": note,
                "request_key": request_key,
            },
        )
        return Movement(row["movement_id"], sku, delta, kind, reason, note, request_key, row["created_at"])

    async def movements_for_request(self, kind: MovementKind, request_key: str) -> list[Movement]:
        rows = await self._rows("movements_for_request", {"kind": kind.value, "request_key": request_key})
        return [_movement(row) for row in rows]

    # Reservations

    async def reserve_all_or_nothing(self, requests: Sequence[ReservationRequest]) -> list[Reservation | None]:
        """Makes, in one statement, the reservation of each request whose checkout has none and whose
        every line fits (in request order); per request, the reservation made or None (refused, or the
        whole batch rolled itself back). The checkout ids must differ. Run it as its own transaction."""
        if len({request.checkout_id for request in requests}) != len(requests):
            raise ValueError("a batch of reservations names a checkout twice")
        line_requests: list[int] = []
        skus: list[str] = []
        quantities: list[int] = []
        for position, request in enumerate(requests, start=1):
            for line in request.lines:
                line_requests.append(position)
                skus.append(line.sku)
                quantities.append(line.quantity)
        try:
            rows = await self._rows(
                "reserve_all_or_nothing",
                {
                    "checkout_ids": [request.checkout_id for request in requests],
                    "ttl_seconds": [request.ttl_seconds for request in requests],
                    "line_requests": line_requests,
                    "skus": skus,
                    "quantities": quantities,
                },
            )
        except psycopg.Error as error:
            if error.sqlstate == RESERVATION_REFUSED:
                return [None] * len(requests)
            raise
        made: list[Reservation | None] = [None] * len(requests)
        for row in rows:
            request = requests[row["request"] - 1]
            made[row["request"] - 1] = _reservation({**row, "checkout_id": request.checkout_id}, request.lines)
        return made

    async def insert_released_marker(self, checkout_id: str, reason: str) -> Reservation | None:
        """None when a reservation for the checkout exists (it landed since it was looked up)."""
        row = await self._row("insert_released_marker", {"checkout_id": checkout_id, "reason": reason})
        return _reservation(row, ()) if row else None

    async def _with_lines(self, row: Row | None) -> Reservation | None:
        if row is None:
            return None
        lines = await self._rows("reservation_lines", {"checkout_id": row["checkout_id"]})
        return _reservation(row, [LineItem(line["sku"], line["quantity"]) for line in lines])

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
        """Ends a locked ACTIVE reservation as RELEASED or EXPIRED."""
        row = await self._one(
            "mark_reservation_ended",
            {"checkout_id": reservation.checkout_id, "status": status.value, "reason": reason},
        )
        return _reservation(row, reservation.lines)

    async def extend(self, reservation: Reservation, ttl_seconds: float) -> Reservation:
        """Extends a locked ACTIVE reservation."""
        row = await self._one(
            "extend_reservation", {"checkout_id": reservation.checkout_id, "ttl_seconds": ttl_seconds}
        )
        return _reservation(row, reservation.lines)

    async def expire_due(self, batch: int) -> list[str]:
        """Ends up to `batch` due reservations as EXPIRED; their checkout ids (units not yet given back)."""
        return [row["checkout_id"] for row in await self._rows("expire_due_reservations", {"batch": batch})]

    async def stock_discrepancies(self) -> list[StockDiscrepancy]:
        return [StockDiscrepancy(**row) for row in await self._rows("invariant_violations")]
