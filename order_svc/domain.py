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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from service_runtime.validation import check_email, check_id, check_money, check_text
from service_runtime.values import Address, Money


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


def check_shipment(current: OrderStatus, recorded: str, requested: str) -> None:
    """MarkShipped on a SHIPPED or DELIVERED order is a replay only with the shipment it shipped with."""
    if recorded != requested:
        raise FailedPrecondition(
            f"the order already shipped with shipment {recorded}",
            reason="ORDER_ALREADY_SHIPPED",
            metadata={"status": current.contract_name, "shipmentId": recorded},
        )


# Amounts


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price: Money
    line_total: Money


def check_amounts(
    lines: Sequence[PricedLine],
    *,
    subtotal: Money,
    shipping_cost: Money,
    tax: Money,
    total: Money,
    discount_total: Money | None = None,
    violations: Violations | None = None,
) -> None:
    """CreateOrder's amounts must add up, in one currency, in minor units; raises INVALID_ARGUMENT naming each field.

    Each line_total = unit_price × quantity, subtotal = Σ line_total, total = subtotal - discount_total +
    shipping_cost + tax, the discount is at most the subtotal, and no amount is negative. The subtotal's
    currency is the order's. With `violations`, adds to it instead of raising.
    """
    v = violations if violations is not None else Violations()
    currency = subtotal.currency_code
    discount = discount_total if discount_total is not None else Money(currency, 0)
    amounts: list[tuple[str, Money]] = [
        ("subtotal", subtotal),
        ("discount_total", discount),
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
    v.check(discount.amount_minor <= subtotal.amount_minor, "discount_total", "must not exceed the subtotal")
    expected_total = subtotal.amount_minor - discount.amount_minor + shipping_cost.amount_minor + tax.amount_minor
    v.check(
        total.amount_minor == expected_total,
        "total",
        f"must be subtotal - discount_total + shipping_cost + tax = {expected_total}",
    )
    if violations is None:
        v.raise_if_any()


# The order as the service holds it


class ShippingMethod(enum.Enum):
    STANDARD = "standard"
    EXPRESS = "express"
    OVERNIGHT = "overnight"


class CancelReason(enum.Enum):
    CUSTOMER_REQUEST = "customer_request"
    PAYMENT_FAILED = "payment_failed"
    OUT_OF_STOCK = "out_of_stock"
    FRAUD_SUSPECTED = "fraud_suspected"
    OPERATOR = "operator"
    OTHER = "other"


#: Reasons only trusted callers (operators, the gateway's saga) may give.
OPERATOR_ONLY_REASONS = frozenset({CancelReason.OPERATOR, CancelReason.FRAUD_SUSPECTED})


class CompensationStatus(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    NOT_REQUIRED = "not_required"
    FAILED = "failed"


@dataclass(frozen=True)
class OrderLine:
    sku: str
    product_name: str
    quantity: int
    unit_price: Money
    line_total: Money


@dataclass(frozen=True)
class Cancellation:
    reason: CancelReason
    note: str
    cancelled_at: datetime
    cancelled_from: OrderStatus
    refund_status: CompensationStatus
    refund_id: str
    refunded: Money
    restock_status: CompensationStatus
    idempotency_key: str | None


@dataclass(frozen=True)
class Order:
    order_id: str
    checkout_id: str
    user_id: str
    customer_email: str
    payment_id: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    subtotal: Money
    discount_total: Money
    shipping_cost: Money
    tax: Money
    total: Money
    shipping_address: Address
    shipping_method: ShippingMethod
    shipment_id: str
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancellation: Cancellation | None
    #: Events written so far; the next one gets sequence event_count + 1.
    event_count: int


# Commands and their validation

MAX_LINES = 100
MAX_QUANTITY = 99
MAX_AMOUNT_MINOR = 10**12
TRACKING_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class CreateOrder:
    checkout_id: str
    user_id: str
    customer_email: str
    payment_id: str
    lines: tuple[OrderLine, ...]
    subtotal: Money | None
    discount_total: Money | None
    shipping_cost: Money | None
    tax: Money | None
    total: Money | None
    shipping_address: Address | None
    shipping_method: ShippingMethod | None


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    reason: CancelReason | None
    note: str
    idempotency_key: str


@dataclass(frozen=True)
class MarkShipped:
    order_id: str
    shipment_id: str
    tracking_number: str
    carrier: str
    shipped_at: datetime | None


@dataclass(frozen=True)
class MarkDelivered:
    order_id: str
    delivered_at: datetime | None


def validate_order_id(order_id: str, field: str = "order_id") -> None:
    v = Violations()
    check_id(v, order_id, field)
    v.raise_if_any()


def validate_create(command: CreateOrder) -> None:
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    check_id(v, command.user_id, "user_id")
    check_id(v, command.payment_id, "payment_id")
    check_email(v, command.customer_email, "customer_email")
    if not command.lines:
        v.add("lines", "must have at least one line")
    elif len(command.lines) > MAX_LINES:
        v.add("lines", f"must have at most {MAX_LINES} lines")
    seen: set[str] = set()
    for index, line in enumerate(command.lines):
        check_id(v, line.sku, f"lines[{index}].sku")
        if line.sku in seen:
            v.add(f"lines[{index}].sku", f"duplicates an earlier line for {line.sku}")
        seen.add(line.sku)
        check_text(v, line.product_name, f"lines[{index}].product_name", maximum=200, required=True)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            v.add(f"lines[{index}].quantity", f"must be between 1 and {MAX_QUANTITY}")
    amounts = {
        "subtotal": command.subtotal,
        "shipping_cost": command.shipping_cost,
        "tax": command.tax,
        "total": command.total,
    }
    for field, money in amounts.items():
        check_money(v, money, field, maximum_minor=MAX_AMOUNT_MINOR)
    for index, line in enumerate(command.lines):
        check_money(v, line.unit_price, f"lines[{index}].unit_price", maximum_minor=MAX_AMOUNT_MINOR)
        check_money(v, line.line_total, f"lines[{index}].line_total", maximum_minor=MAX_AMOUNT_MINOR)
    if command.discount_total is not None:
        check_money(v, command.discount_total, "discount_total", maximum_minor=MAX_AMOUNT_MINOR)
    if command.shipping_address is None:
        v.add("shipping_address", "is required")
    else:
        address = command.shipping_address
        check_text(v, address.recipient_name, "shipping_address.recipient_name", maximum=200, required=True)
        check_text(v, address.line1, "shipping_address.line1", maximum=200, required=True)
        check_text(v, address.line2, "shipping_address.line2", maximum=200, required=False)
        check_text(v, address.city, "shipping_address.city", maximum=100, required=True)
        check_text(v, address.region, "shipping_address.region", maximum=100, required=False)
        check_text(v, address.postal_code, "shipping_address.postal_code", maximum=20, required=False)
        check_text(v, address.phone, "shipping_address.phone", maximum=40, required=False)
        if not re.fullmatch(r"[A-Z]{2}", address.country_code):
            v.add("shipping_address.country_code", "must be a 2-letter ISO 3166-1 code")
    if command.shipping_method is None:
        v.add("shipping_method", "must be set and not UNSPECIFIED")
    if not v.items and None not in amounts.values():
        assert command.subtotal and command.shipping_cost and command.tax and command.total
        check_amounts(
            [PricedLine(line.sku, line.quantity, line.unit_price, line.line_total) for line in command.lines],
            subtotal=command.subtotal,
            shipping_cost=command.shipping_cost,
            tax=command.tax,
            total=command.total,
            discount_total=command.discount_total,
            violations=v,
        )
    v.raise_if_any()


def same_order(order: Order, command: CreateOrder) -> bool:
    """Whether a CreateOrder replay asks for the order that exists (same payload)."""
    currency = order.subtotal.currency_code
    return (
        order.user_id == command.user_id
        and order.customer_email == command.customer_email
        and order.payment_id == command.payment_id
        and order.lines == command.lines
        and (order.subtotal, order.shipping_cost, order.tax, order.total)
        == (command.subtotal, command.shipping_cost, command.tax, command.total)
        and order.discount_total == (command.discount_total or Money(currency, 0))
        and order.shipping_address == command.shipping_address
        and order.shipping_method is command.shipping_method
    )


def validate_cancel(command: CancelOrder) -> None:
    v = Violations()
    check_id(v, command.order_id, "order_id")
    if command.reason is None:
        v.add("reason", "must be set and not UNSPECIFIED")
    check_text(v, command.note, "note", maximum=500, required=False)
    if not command.idempotency_key:
        v.add("idempotency_key", "is required")
    elif not KEY_PATTERN.fullmatch(command.idempotency_key):
        v.add("idempotency_key", "must be 1..128 characters of [A-Za-z0-9._:-]")
    v.raise_if_any()


def check_customer_may_cancel(order: Order, reason: CancelReason) -> None:
    """What a customer (not a trusted caller) may not do: pick an operator's reason, or cancel a PENDING
    order, whose checkout's saga is still running (it confirms or cancels the order itself)."""
    if reason in OPERATOR_ONLY_REASONS:
        raise PermissionDenied(
            f"customers cannot cancel with reason {reason.name}",
            reason="CANCEL_REASON_NOT_ALLOWED",
            metadata={"reason": f"CANCEL_REASON_{reason.name}"},
        )
    if order.status is OrderStatus.PENDING:
        raise FailedPrecondition(
            "the order's checkout is still being placed; cancel it once it is confirmed",
            reason="CHECKOUT_IN_PROGRESS",
            metadata={"status": order.status.contract_name},
        )


def check_cancel_replay(order: Order, command: CancelOrder) -> bool:
    """True when the cancellation with this key is this order's (a replay); refuses a key reused otherwise."""
    cancellation = order.cancellation
    if cancellation is None or cancellation.idempotency_key != command.idempotency_key:
        return False
    if cancellation.reason is not command.reason or cancellation.note != command.note:
        raise key_reused(command.idempotency_key)
    return True


def key_reused(key: str) -> AlreadyExists:
    return AlreadyExists(
        "the idempotency key was used for another cancellation",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"idempotencyKey": key},
    )


def validate_mark_shipped(command: MarkShipped, now: datetime) -> None:
    v = Violations()
    check_id(v, command.order_id, "order_id")
    check_id(v, command.shipment_id, "shipment_id")
    if not TRACKING_PATTERN.fullmatch(command.tracking_number):
        v.add("tracking_number", "must be 1..64 characters of [A-Za-z0-9-]")
    check_text(v, command.carrier, "carrier", maximum=64, required=False)
    if command.shipped_at is not None and command.shipped_at > now + CLOCK_SKEW:
        v.add("ship_time", "must not be in the future")
    v.raise_if_any()


def validate_mark_delivered(command: MarkDelivered, now: datetime) -> None:
    v = Violations()
    check_id(v, command.order_id, "order_id")
    if command.delivered_at is not None and command.delivered_at > now + CLOCK_SKEW:
        v.add("deliver_time", "must not be in the future")
    v.raise_if_any()


def check_delivered_after_shipped(order: Order, delivered_at: datetime) -> None:
    if order.shipped_at is not None and delivered_at < order.shipped_at:
        raise InvalidArgument([FieldViolation("deliver_time", "must not be before the order's ship_time")])


#: Tolerated difference between the caller's clock and ours for "not in the future".
CLOCK_SKEW = timedelta(seconds=5)


def not_found(order_id: str) -> NotFound:
    return NotFound(f"order {order_id} not found", reason="ORDER_NOT_FOUND", metadata={"orderId": order_id})


def checkout_already_ordered(order_id: str) -> AlreadyExists:
    return AlreadyExists(
        "the checkout already has an order with a different payload",
        reason="CHECKOUT_ALREADY_ORDERED",
        metadata={"orderId": order_id},
    )


def owned_by(order: Order, owner: str) -> bool:
    """Orders belong to signed-in customers: caller.owner "user:<sub>" sees the orders of user <sub>."""
    return owner == f"user:{order.user_id}"


# Compensation of a cancellation (the cancel worker's decisions)


class RefundAction(enum.Enum):
    REFUND = "refund"  # captured money goes back (RefundPayment)
    VOID = "void"  # an authorization is released (VoidPayment)


class RestockAction(enum.Enum):
    RETURN = "return"  # sold stock comes back (ReturnStock)
    RELEASE = "release"  # a reservation is released (ReleaseReservation)


def refund_action(cancelled_from: OrderStatus) -> RefundAction:
    """A CONFIRMED order's payment was captured (refund it); a PENDING order's was only authorized (void it)."""
    return RefundAction.REFUND if cancelled_from is OrderStatus.CONFIRMED else RefundAction.VOID


def restock_action(cancelled_from: OrderStatus) -> RestockAction:
    return RestockAction.RETURN if cancelled_from is OrderStatus.CONFIRMED else RestockAction.RELEASE


def refund_key(order_id: str) -> str:
    """The refund's idempotency key: derived from the order and the step, the same on every retry."""
    return f"order:{order_id}:refund"


def compensation_delay(attempts: int, *, base_seconds: float, max_seconds: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: exponential, capped."""
    return float(min(max_seconds, base_seconds * 2 ** max(0, attempts - 1)))
