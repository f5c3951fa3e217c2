"""Message templates: a subject and a body per template name, filled from an event's values. No I/O.

Values every event provides: order_id, total (e.g. "54.68 USD"), lines (one "2 × Mug" per line).
OrderShipped adds carrier, tracking_number, ship_date; OrderDelivered deliver_date; OrderCancelled
reason; OrderRefunded refund_amount and refund_id.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    subject: str
    body: str


TEMPLATES: Mapping[str, Template] = {
    "order_confirmed": Template(
        subject="Your order {order_id} is confirmed",
        body="Thank you for your order.\n\n{lines}\n\nTotal charged: {total}\n\nWe will write again when it ships.",
    ),
    "order_shipped": Template(
        subject="Your order {order_id} has shipped",
        body="Your order left our warehouse on {ship_date}.\n\nCarrier: {carrier}\nTracking number: {tracking_number}",
    ),
    "order_delivered": Template(
        subject="Your order {order_id} was delivered",
        body="Your order was delivered on {deliver_date}. We hope you enjoy it.",
    ),
    "order_cancelled": Template(
        subject="Your order {order_id} was cancelled",
        body="Your order was cancelled ({reason}).\n\nAny payment is given back to you: a refund follows for money "
        "already taken, and a hold on your card is released.",
    ),
    "reservation_expired": Template(
        subject="Your checkout {checkout_id} expired",
        body="We held the items of your checkout for you, but the time ran out and they went back on the shelf. "
        "Your cart is still there: check out again whenever you are ready.",
    ),
    "order_refunded": Template(
        subject="Your refund for order {order_id} was issued",
        body="We issued a refund of {refund_amount} for order {order_id} (reference {refund_id}). "
        "Depending on your bank it shows on your statement within a few days.",
    ),
}


class MissingValue(KeyError):
    """A template needs a value the event did not provide: a poison event for this template."""


@functools.cache
def _needed(template: Template) -> frozenset[str]:
    """The values a template's subject and body name (parsed once per template)."""
    return frozenset(
        field
        for text in (template.subject, template.body)
        for _, field, _, _ in string.Formatter().parse(text)
        if field
    )


def render(template: str, values: Mapping[str, str]) -> tuple[str, str]:
    """(subject, body) of `template` filled with `values`; raises MissingValue or KeyError (unknown template)."""
    chosen = TEMPLATES[template]
    missing = _needed(chosen) - values.keys()
    if missing:
        raise MissingValue(f"template {template} needs {sorted(missing)}")
    subject = chosen.subject.format_map(values)[:200]
    return subject, chosen.body.format_map(values)


def format_money(amount_minor: int, currency_code: str) -> str:
    """ "54.68 USD": two decimals (enough for the mesh's currencies; a zero-decimal currency shows .00)."""
    return f"{amount_minor // 100}.{amount_minor % 100:02d} {currency_code}"
