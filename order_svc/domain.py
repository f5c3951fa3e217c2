"""Order's business rules, free of I/O: the lifecycle and the arithmetic an order's amounts must obey.

    PENDING ──ConfirmOrder──▶ CONFIRMED ──MarkShipped──▶ SHIPPED ──MarkDelivered──▶ DELIVERED
       │                         │
       └──────CancelOrder────────┴──▶ CANCELLED

SHIPPED and DELIVERED orders are never cancelled (returns are a separate process). A call that
asks for a state the order has already reached is a replay, not an error: confirming a CONFIRMED
(or later) order, shipping a SHIPPED or DELIVERED one with the same tracking number, delivering a
DELIVERED one, cancelling a CANCELLED one.

Refusals are FAILED_PRECONDITION with the contract's reasons and metadata "status" holding the
current OrderStatus name (e.g. "ORDER_STATUS_SHIPPED").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service_runtime.errors import FailedPrecondition, Violations
from service_runtime.values import Money


class OrderStatus(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"

    @property
    def contract_name(self) -> str:
        return f"ORDER_STATUS_{self.name}"


TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

#: For each target, the states in which the order has already got there (the call is a replay).
_REACHED: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CONFIRMED: frozenset({OrderStatus.CONFIRMED, OrderStatus.SHIPPED, OrderStatus.DELIVERED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.SHIPPED, OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.CANCELLED}),
}

#: Why a target cannot be reached from a state (other than CANCELLED, which refuses everything).
_REFUSALS: Mapping[tuple[OrderStatus, OrderStatus], tuple[str, str]] = {
    (OrderStatus.PENDING, OrderStatus.SHIPPED): ("ORDER_NOT_CONFIRMED", "is not confirmed yet"),
    (OrderStatus.PENDING, OrderStatus.DELIVERED): ("ORDER_NOT_SHIPPED", "has not shipped"),
    (OrderStatus.CONFIRMED, OrderStatus.DELIVERED): ("ORDER_NOT_SHIPPED", "has not shipped"),
    (OrderStatus.SHIPPED, OrderStatus.CANCELLED): ("ORDER_NOT_CANCELLABLE", "has shipped and cannot be cancelled"),
    (OrderStatus.DELIVERED, OrderStatus.CANCELLED): ("ORDER_NOT_CANCELLABLE", "was delivered and cannot be cancelled"),
}


class Transition(enum.Enum):
    """What a state-changing call should do, decided from the order's state alone."""

    PROCEED = "proceed"
    ALREADY_DONE = "already_done"


def check_transition(current: OrderStatus, target: OrderStatus) -> Transition:
    """Whether an order in `current` may move to `target`; raises FailedPrecondition when it may not."""
    if target is OrderStatus.PENDING:
        raise ValueError("orders are created PENDING; no transition leads there")
    if target in TRANSITIONS[current]:
        return Transition.PROCEED
    if current in _REACHED[target]:
        return Transition.ALREADY_DONE
    reason, problem = _REFUSALS.get((current, target), ("ORDER_CANCELLED", "was cancelled"))
    raise FailedPrecondition(f"the order {problem}", reason=reason, metadata={"status": current.contract_name})


def check_tracking_number(current: OrderStatus, recorded: str, requested: str) -> None:
    """MarkShipped on a SHIPPED or DELIVERED order is a replay only with the tracking number it shipped with."""
    if recorded != requested:
        raise FailedPrecondition(
            f"the order already shipped with tracking number {recorded}",
            reason="ORDER_ALREADY_SHIPPED",
            metadata={"status": current.contract_name, "trackingNumber": recorded},
        )


# Amounts


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price: Money
    line_total: Money


def check_amounts(
    lines: Sequence[PricedLine], *, subtotal: Money, shipping_cost: Money, tax: Money, total: Money
) -> None:
    """CreateOrder's amounts must add up, in one currency, in minor units; raises INVALID_ARGUMENT naming each field.

    Each line_total = unit_price × quantity, subtotal = Σ line_total, total = subtotal + shipping_cost + tax,
    and no amount is negative. The subtotal's currency is the order's.
    """
    v = Violations()
    currency = subtotal.currency_code
    amounts: list[tuple[str, Money]] = [
        ("subtotal", subtotal),
        ("shipping_cost", shipping_cost),
        ("tax", tax),
        ("total", total),
    ]
    for index, line in enumerate(lines):
        amounts += [(f"lines[{index}].unit_price", line.unit_price), (f"lines[{index}].line_total", line.line_total)]
    for field, money in amounts:
        if money.currency_code != currency:
            v.add(f"{field}.currency_code", f"must be {currency}, the currency of the subtotal")
        if money.amount_minor < 0:
            v.add(f"{field}.amount_minor", "must not be negative")
    for index, line in enumerate(lines):
        expected = line.unit_price.amount_minor * line.quantity
        v.check(
            line.line_total.amount_minor == expected,
            f"lines[{index}].line_total",
            f"must be unit_price × quantity = {expected}",
        )
    line_sum = sum(line.line_total.amount_minor for line in lines)
    v.check(subtotal.amount_minor == line_sum, "subtotal", f"must be the sum of the line totals = {line_sum}")
    expected_total = subtotal.amount_minor + shipping_cost.amount_minor + tax.amount_minor
    v.check(total.amount_minor == expected_total, "total", f"must be subtotal + shipping_cost + tax = {expected_total}")
    v.raise_if_any()
