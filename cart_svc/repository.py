"""The cart's history in PostgreSQL: the only module of the service that runs SQL (statements in
queries.sql). Active carts are in Redis (store.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cart_svc.domain import CartStatus, StoredCart, StoredLine
from service_runtime.sql import QueryFile, Statements
from service_runtime.values import Money


class CartStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    async def record(self, cart: StoredCart, subtotal_minor: int) -> bool:
        """Records a cart that left ACTIVE with its lines; False when it was already recorded."""
        recorded = await self._row(
            "record_cart",
            {
                "cart_id": cart.cart_id,
                "user_id": cart.user_id or None,
                "session_id": cart.session_id or None,
                "status": cart.status.value,
                "currency_code": cart.currency_code or None,
                "subtotal_minor": subtotal_minor,
                "checkout_id": cart.checkout_id or None,
                "order_id": cart.order_id or None,
                "merged_into_cart_id": cart.merged_into_cart_id or None,
                "created_at": cart.create_time,
                "updated_at": cart.update_time,
            },
        )
        if recorded is None:
            return False
        if cart.lines:
            lines = cart.lines
            await self._rows(
                "record_lines",
                {
                    "cart_id": cart.cart_id,
                    "currency_code": cart.currency_code,
                    "skus": [line.sku for line in lines],
                    "product_names": [line.product_name[:200] for line in lines],
                    "quantities": [line.quantity for line in lines],
                    "unit_prices": [(line.unit_price or line.added_unit_price).amount_minor for line in lines],
                    "added_prices": [line.added_unit_price.amount_minor for line in lines],
                    "unavailable": [line.unavailable for line in lines],
                    "added_at": [line.add_time for line in lines],
                    "updated_at": [line.update_time for line in lines],
                },
            )
        return True

    async def convert_abandoned(self, cart_id: str, checkout_id: str, order_id: str) -> bool:
        row = await self._row(
            "convert_abandoned", {"cart_id": cart_id, "checkout_id": checkout_id, "order_id": order_id or None}
        )
        return row is not None

    async def cart(self, cart_id: str) -> StoredCart | None:
        row = await self._row("cart", {"cart_id": cart_id})
        if row is None:
            return None
        lines = await self._rows("cart_lines", {"cart_id": cart_id})
        return _cart(row, [_line(line) for line in lines])


def _line(row: Mapping[str, Any]) -> StoredLine:
    currency = row["currency_code"]
    return StoredLine(
        sku=row["sku"],
        quantity=row["quantity"],
        added_unit_price=Money(currency, row["added_unit_price_minor"]),
        product_name=row["product_name"],
        add_time=row["added_at"],
        update_time=row["updated_at"],
        unit_price=Money(currency, row["unit_price_minor"]),
        unavailable=row["unavailable"],
    )


def _cart(row: Mapping[str, Any], lines: list[StoredLine]) -> StoredCart:
    return StoredCart(
        cart_id=row["cart_id"],
        user_id=row["user_id"] or "",
        session_id=row["session_id"] or "",
        status=CartStatus(row["status"]),
        lines=tuple(lines),
        create_time=row["created_at"],
        update_time=row["updated_at"],
        expire_time=None,
        currency_code=row["currency_code"] or "",
        checkout_id=row["checkout_id"] or "",
        order_id=row["order_id"] or "",
        convert_time=row["converted_at"],
        merged_into_cart_id=row["merged_into_cart_id"] or "",
    )
