"""Notification's business rules, free of I/O: which message an order event becomes, where it goes, and
what a failed send leads to.

Templates by event (the stream entry's "type"):

    OrderCreated    → none: the saga confirms the order moments later, and a second message for the
                      same purchase would only repeat it; the customer hears once, at confirmation
    OrderConfirmed  → order_confirmed
    OrderCancelled  → order_cancelled
    OrderShipped    → order_shipped
    OrderDelivered  → order_delivered
    OrderRefunded   → order_refunded ("your refund was issued", with the amount)
    OrderPaymentVoided, OrderRestocked → none: the cancellation message already told the customer the
                      hold on their card goes away; stock coming back is not their concern

The gateway's checkout events (JSON on GATEWAY_EVENTS_STREAM): CheckoutExpired → reservation_expired.

An event with no template is still recorded in the inbox (so it is acknowledged once), just not sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class OrderEventType(enum.Enum):
    """The OrderEvent payloads, named as in the stream entry's "type" field."""

    CREATED = "OrderCreated"
    CONFIRMED = "OrderConfirmed"
    CANCELLED = "OrderCancelled"
    SHIPPED = "OrderShipped"
    DELIVERED = "OrderDelivered"
    REFUNDED = "OrderRefunded"
    PAYMENT_VOIDED = "OrderPaymentVoided"
    RESTOCKED = "OrderRestocked"


TEMPLATES: Mapping[OrderEventType, str | None] = {
    OrderEventType.CREATED: None,
    OrderEventType.CONFIRMED: "order_confirmed",
    OrderEventType.CANCELLED: "order_cancelled",
    OrderEventType.SHIPPED: "order_shipped",
    OrderEventType.DELIVERED: "order_delivered",
    OrderEventType.REFUNDED: "order_refunded",
    OrderEventType.PAYMENT_VOIDED: None,
    OrderEventType.RESTOCKED: None,
}


#: The gateway's checkout events (JSON on the checkout event topic) and their templates.
CHECKOUT_TEMPLATES: Mapping[str, str | None] = {"CheckoutExpired": "reservation_expired"}


def template_for(event_type: OrderEventType) -> str | None:
    """The template an order event is rendered with, or None when the event sends nothing."""
    return TEMPLATES[event_type]


class Channel(enum.Enum):
    EMAIL = "email"
    LOG = "log"


def channel_for(customer_email: str) -> Channel:
    """E-mail when the order has a customer address, otherwise the log."""
    return Channel.EMAIL if customer_email.strip() else Channel.LOG


class NotificationStatus(enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


def status_after_failed_attempt(attempts_made: int, max_attempts: int) -> NotificationStatus:
    """FAILED (another attempt is scheduled) until the last allowed attempt has failed, then DEAD_LETTERED."""
    if not 1 <= attempts_made <= max_attempts:
        raise ValueError(f"attempt {attempts_made} is outside 1..{max_attempts}")
    return NotificationStatus.DEAD_LETTERED if attempts_made == max_attempts else NotificationStatus.FAILED
