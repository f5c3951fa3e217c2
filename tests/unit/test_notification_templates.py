"""Notification rendering, no I/O: every template renders from its event's values, a missing value is
refused, ids are derived from the event so a redelivery cannot make a second notification."""

from __future__ import annotations

import pytest

from notification_svc import domain, templates
from notification_svc.consumer import Poison, decode, notification_id, values_of
from notification_svc.domain import Channel
from service_runtime.events import BusMessage, Delivery
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as order_pb
from shop.type.v1 import money_pb2


def event(payload: str) -> events.OrderEvent:
    message = events.OrderEvent(
        event_id="ev-1",
        order_id="ord-1",
        sequence=3,
        order=order_pb.Order(
            order_id="ord-1",
            user_id="u1",
            total=money_pb2.Money(currency_code="USD", amount_minor=5468),
            lines=[order_pb.OrderLine(sku="A", product_name="Mug", quantity=2)],
        ),
    )
    getattr(message, payload).SetInParent()
    return message


@pytest.mark.parametrize(
    ("payload", "template"),
    [
        ("order_confirmed", "order_confirmed"),
        ("order_shipped", "order_shipped"),
        ("order_delivered", "order_delivered"),
        ("order_cancelled", "order_cancelled"),
        ("order_refunded", "order_refunded"),
    ],
)
def test_every_template_renders_from_the_values_its_event_provides(payload, template):
    subject, body = templates.render(template, values_of(event(payload)))
    assert "ord-1" in subject and body


def test_the_confirmation_lists_the_lines_and_the_total():
    _, body = templates.render("order_confirmed", values_of(event("order_confirmed")))
    assert "2 × Mug" in body and "54.68 USD" in body


def test_a_template_missing_a_value_is_refused():
    with pytest.raises(templates.MissingValue):
        templates.render("order_shipped", {"order_id": "ord-1"})


def test_every_template_named_by_the_domain_exists():
    named = {name for name in [*domain.TEMPLATES.values(), *domain.CHECKOUT_TEMPLATES.values()] if name is not None}
    assert named == set(templates.TEMPLATES)


def test_notification_ids_are_derived_from_the_event_and_channel():
    assert notification_id("ev-1", Channel.EMAIL) == notification_id("ev-1", Channel.EMAIL)
    assert notification_id("ev-1", Channel.EMAIL) != notification_id("ev-1", Channel.LOG)
    assert len(notification_id("e" * 64, Channel.LOG)) <= 64


def _delivery(value: bytes) -> Delivery:
    return Delivery(BusMessage(key="k", type="t", value=value), id="1-0", topic="t")


def test_undecodable_or_empty_events_are_poison():
    with pytest.raises(Poison):
        decode(_delivery(b"\xff\xfe garbage"))
    with pytest.raises(Poison):
        decode(_delivery(events.OrderEvent(event_id="ev-1").SerializeToString()))
    assert decode(_delivery(event("order_confirmed").SerializeToString())).event_id == "ev-1"


def test_checkout_events_are_read_as_the_gateway_writes_them_and_garbage_is_poison():
    import json

    from notification_svc.consumer import decode_checkout_event

    value = json.dumps(
        {"eventId": "c1:expired", "eventType": "CheckoutExpired", "checkoutId": "c1", "userId": "u1", "cartId": "k"}
    ).encode()
    decoded = decode_checkout_event(_delivery(value))
    assert (decoded.event_id, decoded.checkout_id, decoded.order_id, decoded.template) == (
        "c1:expired",
        "c1",
        None,
        "reservation_expired",
    )
    for bad in (b"not json", b"[]", json.dumps({"eventId": "x", "eventType": "Nope", "checkoutId": "c"}).encode()):
        with pytest.raises(Poison):
            decode_checkout_event(_delivery(bad))
