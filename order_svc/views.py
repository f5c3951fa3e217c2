"""Order's read-only queries: one order, and a user's orders a page at a time. Nothing here writes.

Customers see only their own orders (another's is NOT_FOUND, and ListOrders for another user is
PERMISSION_DENIED OWNER_MISMATCH); trusted mesh callers see every order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from order_svc import domain
from order_svc.domain import Order, OrderStatus
from order_svc.handlers import customer_or_trusted
from order_svc.repository import OrderStatements
from service_runtime import pagination
from service_runtime.errors import FieldViolation, InvalidArgument, PermissionDenied, Violations
from service_runtime.sql import UnitOfWork
from service_runtime.validation import ID_PATTERN, check_id


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_page_token: str


class OrderViews:
    def __init__(self, work: UnitOfWork[OrderStatements], page_tokens: pagination.PageTokens) -> None:
        self._work = work
        self._page_tokens = page_tokens

    async def get_order(self, order_id: str) -> Order:
        caller = customer_or_trusted()
        domain.validate_order_id(order_id)
        order = await self._work.read(lambda tx: tx.order(order_id, lock=False))
        if order is None or not (caller.trusted or domain.owned_by(order, caller.owner)):
            raise domain.not_found(order_id)
        return order

    async def list_orders(
        self, user_id: str, statuses: Sequence[OrderStatus | None], page_size: int, page_token: str
    ) -> OrderPage:
        caller = customer_or_trusted()
        v = Violations()
        check_id(v, user_id, "user_id")
        for index, status in enumerate(statuses):
            v.check(status is not None, f"statuses[{index}]", "must be an order status, not UNSPECIFIED")
        v.raise_if_any()
        limit = pagination.page_size(page_size)
        if not caller.trusted and caller.owner != f"user:{user_id}":
            raise PermissionDenied(
                "customers list only their own orders", reason="OWNER_MISMATCH", metadata={"userId": user_id}
            )
        wanted = sorted({status for status in statuses if status is not None}, key=lambda s: s.value)
        query = {"userId": user_id, "statuses": [status.value for status in wanted]}
        after = _position(self._page_tokens.read(page_token, query))
        orders = await self._work.read(lambda tx: tx.list_orders(user_id, wanted, after, limit + 1))
        has_more = len(orders) > limit
        orders = orders[:limit]
        last = orders[-1] if orders else None
        token = (
            self._page_tokens.issue([last.created_at.isoformat(), last.order_id], query) if has_more and last else ""
        )
        return OrderPage(orders, token)


def _position(raw: object) -> tuple[datetime, str] | None:
    if raw is None:
        return None
    try:
        assert isinstance(raw, list) and len(raw) == 2
        moment, order_id = datetime.fromisoformat(raw[0]), raw[1]
        assert isinstance(order_id, str) and ID_PATTERN.fullmatch(order_id) and moment.tzinfo is not None
    except (AssertionError, TypeError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    return moment, order_id
