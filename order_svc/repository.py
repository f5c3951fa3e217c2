"""The only module of the order service that runs SQL: one method per statement of `queries.sql`.

`OrderStatements` runs on the connection of a unit of work (`service_runtime.sql.UnitOfWork`), which
owns the transaction and the retry policy; every method returns domain types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from psycopg.types.json import Jsonb

from order_svc.domain import (
    Cancellation,
    CancelOrder,
    CancelReason,
    CompensationStatus,
    Order,
    OrderLine,
    OrderStatus,
    ShippingMethod,
)
from service_runtime.sql import QueryFile, Row, Statements
from service_runtime.values import Address, Money


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An outbox row the relay publishes: the bus message's key, type and value."""

    order_id: str
    event_type: str
    payload: bytes


def _lines(currency: str, lines: Sequence[Row]) -> tuple[OrderLine, ...]:
    return tuple(
        OrderLine(
            sku=line["sku"],
            product_name=line["product_name"],
            quantity=line["quantity"],
            unit_price=Money(currency, line["unit_price_minor"]),
            line_total=Money(currency, line["line_total_minor"]),
        )
        for line in lines
    )


def _locked_lines(row: Row) -> tuple[OrderLine, ...]:
    """The lines `lock_order` reads with the order, as arrays in checkout order."""
    currency = row["currency_code"]
    return tuple(
        OrderLine(
            sku=sku,
            product_name=name,
            quantity=quantity,
            unit_price=Money(currency, unit_price),
            line_total=Money(currency, line_total),
        )
        for sku, name, quantity, unit_price, line_total in zip(
            row["line_skus"],
            row["line_names"],
            row["line_quantities"],
            row["line_unit_prices"],
            row["line_totals"],
            strict=True,
        )
    )


def _order(row: Row, lines: tuple[OrderLine, ...]) -> Order:
    currency = row["currency_code"]
    cancellation = None
    if row["status"] == OrderStatus.CANCELLED.value:
        cancellation = Cancellation(
            reason=CancelReason(row["cancel_reason"]),
            note=row["cancel_note"],
            cancelled_at=row["cancelled_at"],
            cancelled_from=OrderStatus(row["cancelled_from"]),
            refund_status=CompensationStatus(row["refund_status"]),
            refund_id=row["refund_id"] or "",
            refunded=Money(currency, row["refunded_minor"]),
            restock_status=CompensationStatus(row["restock_status"]),
            idempotency_key=row["cancel_idempotency_key"],
        )
    return Order(
        order_id=row["order_id"],
        checkout_id=row["checkout_id"],
        user_id=row["user_id"],
        customer_email=row["customer_email"],
        payment_id=row["payment_id"],
        status=OrderStatus(row["status"]),
        lines=lines,
        subtotal=Money(currency, row["subtotal_minor"]),
        discount_total=Money(currency, row["discount_minor"]),
        shipping_cost=Money(currency, row["shipping_cost_minor"]),
        tax=Money(currency, row["tax_minor"]),
        total=Money(currency, row["total_minor"]),
        shipping_address=Address(**row["shipping_address"]),
        shipping_method=ShippingMethod(row["shipping_method"]),
        shipment_id=row["shipment_id"] or "",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        confirmed_at=row["confirmed_at"],
        shipped_at=row["shipped_at"],
        delivered_at=row["delivered_at"],
        cancellation=cancellation,
        event_count=row["event_count"],
    )


class OrderStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    async def _with_lines(self, rows: Sequence[Row]) -> list[Order]:
        if not rows:
            return []
        lines = await self._rows("lines_of", {"order_ids": [row["order_id"] for row in rows]})
        by_order: dict[str, list[Row]] = {}
        for line in lines:
            by_order.setdefault(line["order_id"], []).append(line)
        return [_order(row, _lines(row["currency_code"], by_order.get(row["order_id"], []))) for row in rows]

    async def _maybe(self, row: Row | None) -> Order | None:
        return (await self._with_lines([row]))[0] if row is not None else None

    # Orders

    async def insert_order(self, order_id: str, command_fields: dict[str, object], lines: Sequence[OrderLine]) -> bool:
        """Writes a PENDING order and its lines; False when its checkout already has one."""
        row = await self._row("insert_order", {"order_id": order_id, **command_fields})
        if row is None:
            return False
        await self._rows(
            "insert_lines",
            {
                "order_id": order_id,
                "currency_code": command_fields["currency_code"],
                "skus": [line.sku for line in lines],
                "positions": list(range(len(lines))),
                "names": [line.product_name for line in lines],
                "quantities": [line.quantity for line in lines],
                "unit_prices": [line.unit_price.amount_minor for line in lines],
                "line_totals": [line.line_total.amount_minor for line in lines],
            },
        )
        return True

    async def order(self, order_id: str, *, lock: bool) -> Order | None:
        if lock:
            row = await self._row("lock_order", {"order_id": order_id})
            return _order(row, _locked_lines(row)) if row is not None else None
        return await self._maybe(await self._row("order_by_id", {"order_id": order_id}))

    async def order_by_checkout(self, checkout_id: str) -> Order | None:
        return await self._maybe(await self._row("order_by_checkout", {"checkout_id": checkout_id}))

    async def order_by_cancel_key(self, key: str) -> Order | None:
        return await self._maybe(await self._row("order_by_cancel_key", {"key": key}))

    async def list_orders(
        self, user_id: str, statuses: Sequence[OrderStatus], after: tuple[datetime, str] | None, limit: int
    ) -> list[Order]:
        rows = await self._rows(
            "list_orders",
            {
                "user_id": user_id,
                "statuses": [status.value for status in statuses],
                "after_time": after[0] if after else None,
                "after_id": after[1] if after else "",
                "limit": limit,
            },
        )
        return await self._with_lines(rows)

    # State changes of an order the caller locked (`order(..., lock=True)`) and checked; its lines do not change.

    async def confirm(self, locked: Order) -> Order:
        return await self._changed("confirm", {"order_id": locked.order_id}, locked.lines)

    async def ship(self, locked: Order, shipment_id: str, shipped_at: datetime) -> Order:
        return await self._changed(
            "ship", {"order_id": locked.order_id, "shipment_id": shipment_id, "shipped_at": shipped_at}, locked.lines
        )

    async def deliver(self, locked: Order, delivered_at: datetime) -> Order:
        return await self._changed("deliver", {"order_id": locked.order_id, "delivered_at": delivered_at}, locked.lines)

    async def cancel(self, locked: Order, command: CancelOrder, reason: CancelReason) -> Order:
        return await self._changed(
            "cancel",
            {
                "order_id": locked.order_id,
                "reason": reason.value,
                "note": command.note,
                "idempotency_key": command.idempotency_key,
            },
            locked.lines,
        )

    async def bump_event_count(self, order_id: str) -> Order:
        return (await self._with_lines([await self._one("bump_event_count", {"order_id": order_id})]))[0]

    async def _changed(self, name: str, params: dict[str, object], lines: tuple[OrderLine, ...]) -> Order:
        """A state change on a row the caller locked and checked: exactly one row comes back."""
        return _order(await self._one(name, params), lines)

    # The outbox

    async def insert_event(
        self, event_id: str, order_id: str, sequence: int, event_type: str, payload: bytes, created_at: datetime
    ) -> None:
        await self._rows(
            "insert_event",
            {
                "event_id": event_id,
                "order_id": order_id,
                "sequence": sequence,
                "event_type": event_type,
                "payload": payload,
                "created_at": created_at,
            },
        )

    async def publish_batch(self, limit: int) -> list[OutboxEvent]:
        """Claims and stamps published the next publishable events (see queries.sql); publication order."""
        rows = await self._rows("publish_batch", {"limit": limit})
        return [OutboxEvent(row["order_id"], row["event_type"], bytes(row["payload"])) for row in rows]

    async def prune_published(self, retention_seconds: float, limit: int) -> int:
        async with self._connection.cursor() as cursor:
            await cursor.execute(
                self.queries["prune_published"], {"retention_seconds": retention_seconds, "limit": limit}
            )
            return cursor.rowcount

    # The cancel worker

    async def claim_compensations(self, lease_seconds: float, limit: int, order_ids: Sequence[str] = ()) -> list[Order]:
        rows = await self._rows(
            "claim_compensations", {"lease_seconds": lease_seconds, "limit": limit, "order_ids": list(order_ids)}
        )
        return await self._with_lines(rows)

    async def record_refund(
        self, order_id: str, status: CompensationStatus, refund_id: str | None, refunded_minor: int
    ) -> Order | None:
        row = await self._row(
            "record_refund",
            {"order_id": order_id, "status": status.value, "refund_id": refund_id, "refunded_minor": refunded_minor},
        )
        return await self._maybe(row)

    async def record_restock(self, order_id: str, status: CompensationStatus) -> Order | None:
        return await self._maybe(await self._row("record_restock", {"order_id": order_id, "status": status.value}))

    async def compensation_attempts(self, order_id: str) -> int:
        row = await self._one("compensation_attempts", {"order_id": order_id})
        return int(row["compensation_attempts"])

    async def cancelled_event(self, order_id: str) -> bytes | None:
        row = await self._row("cancelled_event", {"order_id": order_id})
        return bytes(row["payload"]) if row is not None else None

    async def schedule_compensation(self, order_id: str, delay_seconds: float, error: str) -> None:
        await self._rows(
            "schedule_compensation", {"order_id": order_id, "delay_seconds": delay_seconds, "error": error}
        )


def address_json(address: Address) -> Jsonb:
    return Jsonb(asdict(address))
