"""The notification service on Redis Streams: e-mail through a real SMTP server (aiosmtpd on a free
port), retries while it is down, dead-lettering after the last attempt, templates, ListNotifications."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import message_from_bytes
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from aiosmtpd.controller import Controller

from notification_svc.__main__ import SPEC
from service_runtime.events import BusConfig, BusMessage, EventBus, open_bus
from service_runtime.keyspace import KeySpace
from service_runtime.server import RunningService
from shop.notification.v1 import notification_service_pb2 as pb
from shop.notification.v1 import notification_service_pb2_grpc as pb_grpc
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as order_pb
from shop.type.v1 import money_pb2
from tests.identity import as_customer, as_session
from tests.integration.events.conftest import free_port, read_all
from tests.integration.order.conftest import TRUSTED, scalar
from tests.rpc_errors import expect_failure

TOPIC = "shop.order.v1.events"
DEAD = "shop.order.v1.events.dead"


class Inbox:
    """An aiosmtpd handler that keeps what the server received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        #: Seconds the server takes to accept a message, by recipient (a slow mail server).
        self.delays: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(max((self.delays.get(r, 0.0) for r in envelope.rcpt_tos), default=0.0))
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    yield server
    server.stop()


@pytest.fixture
async def event_bus(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    client = redis.Redis.from_url(redis_url)
    yield open_bus(BusConfig(kind="redis"), client, KeySpace(redis_prefix))
    await client.aclose()


def order_event(order_id: str, sequence: int, payload: str, *, email: str = "ada@example.com", **fields: Any) -> bytes:
    event = events.OrderEvent(
        event_id=f"ev-{uuid.uuid4().hex}",
        order_id=order_id,
        sequence=sequence,
        order=order_pb.Order(
            order_id=order_id,
            user_id="u1",
            customer_email=email,
            total=money_pb2.Money(currency_code="USD", amount_minor=5468),
            lines=[order_pb.OrderLine(sku="A", product_name="Mug", quantity=2)],
        ),
    )
    getattr(event, payload).SetInParent()
    for name, value in fields.items():
        getattr(getattr(event, payload), name).CopyFrom(value) if hasattr(value, "CopyFrom") else setattr(
            getattr(event, payload), name, value
        )
    return event.SerializeToString()


async def publish(event_bus: EventBus, *values: bytes) -> None:
    publisher = event_bus.publisher()
    await publisher.publish(TOPIC, [BusMessage(key="k", type="OrderEvent", value=value) for value in values])


async def listed(service: RunningService, order_id: str) -> list[pb.Notification]:
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = pb_grpc.NotificationServiceStub(channel)
        return list(
            (
                await stub.ListNotifications(pb.ListNotificationsRequest(order_id=order_id), metadata=TRUSTED)
            ).notifications
        )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_an_email_waits_while_smtp_is_down_and_is_sent_once_when_it_returns(start_service, smtp, event_bus):
    service = await start_service(
        SPEC,
        NOTIFICATION_SENDER="smtp",
        SMTP_PORT=str(smtp.port),
        NOTIFICATION_RETRY_BASE_SECONDS="0.2",
        NOTIFICATION_RETRY_MAX_SECONDS="0.5",
        NOTIFICATION_MAX_ATTEMPTS="20",
    )
    await publish(event_bus, order_event("ord-1", 2, "order_confirmed"))

    async def failed_at_least_twice() -> bool:
        found = await listed(service, "ord-1")
        return bool(found) and found[0].status == pb.NOTIFICATION_STATUS_FAILED and found[0].attempts >= 2

    assert await eventually(failed_at_least_twice)
    failed = (await listed(service, "ord-1"))[0]
    assert failed.last_error.startswith("smtp") and failed.HasField("next_attempt_time")

    smtp.start()

    async def sent() -> bool:
        found = await listed(service, "ord-1")
        return found[0].status == pb.NOTIFICATION_STATUS_SENT

    assert await eventually(sent)
    await asyncio.sleep(1.0)
    assert len(smtp.inbox.messages) == 1
    recipients, content = smtp.inbox.messages[0]
    assert recipients == ["ada@example.com"]
    mail = message_from_bytes(content)
    assert mail["Subject"] == "Your order ord-1 is confirmed"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes) and "2 × Mug" in body.decode()


async def test_after_the_last_attempt_a_notification_is_dead_lettered_with_the_reason(
    start_service, event_bus, database_url
):
    service = await start_service(
        SPEC,
        NOTIFICATION_SENDER="smtp",
        SMTP_PORT=str(free_port()),
        NOTIFICATION_RETRY_BASE_SECONDS="0.05",
        NOTIFICATION_MAX_ATTEMPTS="3",
    )
    value = order_event("ord-2", 3, "order_cancelled", reason=order_pb.CANCEL_REASON_CUSTOMER_REQUEST)
    await publish(event_bus, value)

    async def dead() -> bool:
        found = await listed(service, "ord-2")
        return bool(found) and found[0].status == pb.NOTIFICATION_STATUS_DEAD_LETTERED

    assert await eventually(dead)
    notification = (await listed(service, "ord-2"))[0]
    assert notification.attempts == 3 and notification.template == "order_cancelled"
    letters = await read_all(event_bus, DEAD, expect=1)
    assert len(letters) == 1 and letters[0].message.value == value
    headers = dict(letters[0].message.headers)
    assert headers["reason"].startswith("send failed 3 times: smtp")
    assert headers["notificationId"] == notification.notification_id
    assert await scalar(database_url, "SELECT count(*) FROM notification.processed_events") == 1


async def test_an_address_that_would_inject_a_mail_header_is_dead_lettered_and_the_batchs_other_mail_is_sent(
    start_service, smtp, event_bus
):
    # Orders now refuse such an address (check_email); one recorded before that must not stop the consumer.
    smtp.start()
    service = await start_service(
        SPEC,
        NOTIFICATION_SENDER="smtp",
        SMTP_PORT=str(smtp.port),
        NOTIFICATION_RETRY_BASE_SECONDS="0.05",
        NOTIFICATION_MAX_ATTEMPTS="2",
    )
    hostile = order_event("ord-evil", 2, "order_confirmed", email="eve@example.com\r\nBcc: everyone@example.com")
    await publish(event_bus, hostile, order_event("ord-good", 2, "order_confirmed"))

    async def settled() -> bool:
        evil, good = await listed(service, "ord-evil"), await listed(service, "ord-good")
        return (
            bool(evil and good)
            and evil[0].status == pb.NOTIFICATION_STATUS_DEAD_LETTERED
            and good[0].status == pb.NOTIFICATION_STATUS_SENT
        )

    assert await eventually(settled)
    [evil] = await listed(service, "ord-evil")
    assert evil.attempts == 2 and "cannot be sent as e-mail" in evil.last_error
    assert [recipients for recipients, _ in smtp.inbox.messages] == [["ada@example.com"]]
    [letter] = await read_all(event_bus, DEAD, expect=1)
    assert letter.message.value == hostile


async def test_a_slow_mail_server_gets_each_notification_once_however_long_the_sends_ahead_take(
    start_service, smtp, event_bus
):
    # The retry worker sends a recorded notification again once its lease lapses (1.5 s here), taking it for
    # abandoned by a dead consumer. A live consumer renews the lease of what it has not sent yet: of the slow
    # send itself (4 s), and of the next batch waiting behind it.
    smtp.inbox.delays["slow@example.com"] = 4.0
    smtp.start()
    service = await start_service(
        SPEC, NOTIFICATION_SENDER="smtp", SMTP_PORT=str(smtp.port), NOTIFICATION_SEND_LEASE_SECONDS="1.5"
    )
    await publish(event_bus, order_event("ord-slow", 2, "order_confirmed", email="slow@example.com"))
    assert await eventually(lambda: _recorded(service, "ord-slow"))
    await publish(event_bus, order_event("ord-next", 2, "order_confirmed"))  # a batch of its own, behind it

    async def both_sent() -> bool:
        slow, following = await listed(service, "ord-slow"), await listed(service, "ord-next")
        return bool(slow and following) and {slow[0].status, following[0].status} == {pb.NOTIFICATION_STATUS_SENT}

    assert await eventually(both_sent)
    await asyncio.sleep(2.5)  # past the lease: a second send, if any, would have been made by now
    assert sorted(recipients for recipients, _ in smtp.inbox.messages) == [["ada@example.com"], ["slow@example.com"]]


async def _recorded(service: RunningService, order_id: str) -> bool:
    return bool(await listed(service, order_id))


async def test_each_event_gets_its_template_and_events_without_one_are_only_recorded(
    start_service, event_bus, database_url
):
    service = await start_service(SPEC)
    refund = order_event(
        "ord-3", 5, "order_refunded", refund_id="rf-1", amount=money_pb2.Money(currency_code="USD", amount_minor=5468)
    )
    await publish(
        event_bus,
        order_event("ord-3", 1, "order_created"),
        order_event("ord-3", 4, "order_restocked"),
        refund,
        order_event("ord-3", 2, "order_confirmed", email=""),
        refund,  # a duplicate: the inbox already has it
    )

    async def two() -> bool:
        return len(await listed(service, "ord-3")) == 2 and all(
            n.status == pb.NOTIFICATION_STATUS_SENT for n in await listed(service, "ord-3")
        )

    assert await eventually(two)
    by_template = {n.template: n for n in await listed(service, "ord-3")}
    assert by_template["order_refunded"].subject == "Your refund for order ord-3 was issued"
    assert by_template["order_refunded"].channel == pb.NOTIFICATION_CHANNEL_EMAIL
    assert by_template["order_confirmed"].channel == pb.NOTIFICATION_CHANNEL_LOG
    assert by_template["order_confirmed"].recipient == ""
    assert await scalar(database_url, "SELECT count(*) FROM notification.processed_events") == 4


async def test_list_notifications_is_scoped_to_the_customer_and_refuses_bad_input(start_service, event_bus):
    service = await start_service(SPEC)
    await publish(event_bus, *(order_event(f"ord-{i}", 2, "order_confirmed") for i in range(3)))

    async def three() -> bool:
        return all([await listed(service, f"ord-{i}") for i in range(3)])

    assert await eventually(three)
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = pb_grpc.NotificationServiceStub(channel)
        mine = await stub.ListNotifications(
            pb.ListNotificationsRequest(user_id="u1", page_size=2), metadata=as_customer("u1")
        )
        rest = await stub.ListNotifications(
            pb.ListNotificationsRequest(user_id="u1", page_size=2, page_token=mine.next_page_token),
            metadata=as_customer("u1"),
        )
        assert len(mine.notifications) == 2 and len(rest.notifications) == 1 and not rest.next_page_token
        times = [n.create_time.ToNanoseconds() for n in [*mine.notifications, *rest.notifications]]
        assert times == sorted(times, reverse=True)
        others = await stub.ListNotifications(pb.ListNotificationsRequest(order_id="ord-0"), metadata=as_customer("u2"))
        assert list(others.notifications) == []
        failure = await expect_failure(
            stub.ListNotifications(pb.ListNotificationsRequest(user_id="u1"), metadata=as_customer("u2"))
        )
        assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")
        failure = await expect_failure(stub.ListNotifications(pb.ListNotificationsRequest(user_id="u1")))
        assert failure.code == grpc.StatusCode.UNAUTHENTICATED
        for request, fields in [
            (pb.ListNotificationsRequest(), {"filter"}),
            (pb.ListNotificationsRequest(user_id="bad id"), {"user_id"}),
            (pb.ListNotificationsRequest(order_id="ord-0", page_size=-1), {"page_size"}),
            (pb.ListNotificationsRequest(user_id="u1", page_token=mine.next_page_token + "x"), {"page_token"}),
            (pb.ListNotificationsRequest(order_id="ord-0", page_token=mine.next_page_token), {"page_token"}),
        ]:
            failure = await expect_failure(stub.ListNotifications(request, metadata=as_customer("u1")))
            assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and set(failure.field_violations) == fields
        session = await stub.ListNotifications(pb.ListNotificationsRequest(order_id="ord-0"), metadata=as_session("s"))
        assert list(session.notifications) == []


async def test_the_gateways_checkout_expired_event_tells_the_customer_once(start_service, event_bus, smtp):
    smtp.start()
    service = await start_service(SPEC, NOTIFICATION_SENDER="smtp", SMTP_PORT=str(smtp.port))
    # As the gateway's relay writes it (gateway/relay.py): JSON, keyed by the checkout.
    value = json.dumps(
        {
            "eventId": "chk-9:expired",
            "eventType": "CheckoutExpired",
            "checkoutId": "chk-9",
            "userId": "u1",
            "customerEmail": "hana@example.com",
            "cartId": "cart-1",
        }
    ).encode()
    publisher = event_bus.publisher()
    message = BusMessage(key="chk-9", type="CheckoutExpired", value=value)
    await publisher.publish("shop.gateway.v1.events", [message, message])

    async def sent() -> bool:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = pb_grpc.NotificationServiceStub(channel)
            found = (
                await stub.ListNotifications(pb.ListNotificationsRequest(user_id="u1"), metadata=as_customer("u1"))
            ).notifications
            return len(found) == 1 and found[0].status == pb.NOTIFICATION_STATUS_SENT

    assert await eventually(sent)
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = pb_grpc.NotificationServiceStub(channel)
        [notification] = (
            await stub.ListNotifications(pb.ListNotificationsRequest(user_id="u1"), metadata=as_customer("u1"))
        ).notifications
    assert (notification.template, notification.checkout_id, notification.order_id) == (
        "reservation_expired",
        "chk-9",
        "",
    )
    await asyncio.sleep(0.5)
    assert [recipients for recipients, _ in smtp.inbox.messages] == [["hana@example.com"]]
    assert message_from_bytes(smtp.inbox.messages[0][1])["Subject"] == "Your checkout chk-9 expired"
