"""Notification's pure rules: templates per order event, channel choice, retry outcome; no I/O."""

from __future__ import annotations

import pytest

from notification_svc import domain
from notification_svc.domain import Channel, NotificationStatus, OrderEventType
from shop.order.v1 import events_pb2


@pytest.mark.parametrize(
    ("event_type", "template"),
    [
        (OrderEventType.CONFIRMED, "order_confirmed"),
        (OrderEventType.CANCELLED, "order_cancelled"),
        (OrderEventType.SHIPPED, "order_shipped"),
        (OrderEventType.DELIVERED, "order_delivered"),
    ],
)
def test_each_customer_facing_order_event_has_its_template(event_type, template):
    assert domain.template_for(event_type) == template


def test_an_order_created_event_sends_nothing_because_its_confirmation_follows():
    assert domain.template_for(OrderEventType.CREATED) is None


def test_every_payload_of_the_order_event_contract_has_a_decision():
    payloads = set()
    for field in events_pb2.OrderEvent.DESCRIPTOR.oneofs_by_name["payload"].fields:
        assert field.message_type is not None, f"payload {field.name} is not a message"
        payloads.add(field.message_type.name)
    assert payloads == {event_type.value for event_type in domain.TEMPLATES}


def test_a_customer_email_sends_by_email_and_none_falls_back_to_the_log():
    assert domain.channel_for("ada@example.com") is Channel.EMAIL
    assert domain.channel_for("") is Channel.LOG
    assert domain.channel_for("   ") is Channel.LOG


def test_a_failed_attempt_before_the_last_schedules_another():
    assert domain.status_after_failed_attempt(1, 5) is NotificationStatus.FAILED
    assert domain.status_after_failed_attempt(4, 5) is NotificationStatus.FAILED


def test_the_last_failed_attempt_dead_letters_the_notification():
    assert domain.status_after_failed_attempt(5, 5) is NotificationStatus.DEAD_LETTERED
    assert domain.status_after_failed_attempt(1, 1) is NotificationStatus.DEAD_LETTERED


@pytest.mark.parametrize("attempts", [0, 6])
def test_an_attempt_count_outside_the_allowed_attempts_is_a_bug(attempts):
    with pytest.raises(ValueError):
        domain.status_after_failed_attempt(attempts, 5)
