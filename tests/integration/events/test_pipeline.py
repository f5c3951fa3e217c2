"""Outbox → relay → bus → notification, on Redis Streams and on Kafka (Tansu): the same tests on both.

- committed order changes are published in each order's sequence and become one message each;
- a relay that dies between publishing and marking publishes again: the bus carries the event twice,
  the customer gets one message;
- a consumer that dies holding messages: another member of the group takes them over and sends them;
- a poison message goes to the dead-letter topic with its reason.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import pytest

from notification_svc.__main__ import SPEC as NOTIFICATION
from order_svc.__main__ import SPEC as ORDER
from order_svc.relay import OutboxRelay
from order_svc.repository import OrderStatements
from service_runtime.database import Database
from service_runtime.events import BusMessage, Delivery, EventBus, Publisher
from service_runtime.server import RunningService
from service_runtime.sql import UnitOfWork
from shop.notification.v1 import notification_service_pb2 as npb
from shop.notification.v1 import notification_service_pb2_grpc as npb_grpc
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc
from tests.integration.events.conftest import Bus, read_all
from tests.integration.order.conftest import TRUSTED, create_request, outbox

NOWHERE = {"PAYMENT_TARGET": "127.0.0.1:1", "INVENTORY_TARGET": "127.0.0.1:1"}


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def notifications_of(service: RunningService, order_id: str) -> list[npb.Notification]:
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = npb_grpc.NotificationServiceStub(channel)
        response = await stub.ListNotifications(npb.ListNotificationsRequest(order_id=order_id), metadata=TRUSTED)
        return list(response.notifications)


async def all_sent(service: RunningService, expected: dict[str, list[str]]) -> bool:
    for order_id, templates in expected.items():
        found = await notifications_of(service, order_id)
        if sorted(n.template for n in found) != sorted(templates):
            return False
        if any(n.status != npb.NOTIFICATION_STATUS_SENT for n in found):
            return False
    return True


def decoded(deliveries: Sequence[Delivery]) -> list[events.OrderEvent]:
    return [events.OrderEvent.FromString(d.message.value) for d in deliveries]


@pytest.fixture
async def order_store(database_url: str) -> AsyncIterator[UnitOfWork[OrderStatements]]:
    database = Database(database_url, min_size=1, max_size=3, statement_timeout_ms=10_000, application_name="test")
    await database.open()
    try:
        yield UnitOfWork(database, OrderStatements)
    finally:
        await database.close()


async def place_orders(service: RunningService, count: int, *, ship: bool = True) -> list[str]:
    placed = []
    async with grpc.aio.insecure_channel(service.address) as channel:
        orders = pb_grpc.OrderServiceStub(channel)
        for index in range(count):
            order = (await orders.CreateOrder(create_request(f"u{index}"), metadata=TRUSTED)).order
            await orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order.order_id), metadata=TRUSTED)
            if ship:
                await orders.MarkShipped(
                    pb.MarkShippedRequest(
                        order_id=order.order_id, shipment_id="s1", tracking_number="1Z", carrier="UPS"
                    ),
                    metadata=TRUSTED,
                )
            placed.append(order.order_id)
    return placed


async def test_committed_changes_are_published_in_sequence_and_each_becomes_one_message(
    bus: Bus, start_service, event_bus: EventBus, database_url: str
):
    order_service = await start_service(ORDER, **bus.env, **NOWHERE)
    notification_service = await start_service(NOTIFICATION, **bus.env)
    placed = await place_orders(order_service, 3)
    expected = {order_id: ["order_confirmed", "order_shipped"] for order_id in placed}
    assert await wait_for(lambda: all_sent(notification_service, expected))
    assert all(published for *_, published in await outbox(database_url))

    published = decoded(await read_all(event_bus, bus.topic, expect=9))
    assert max(Counter(event.event_id for event in published).values()) == 1
    for order_id in placed:
        assert [e.sequence for e in published if e.order_id == order_id] == [1, 2, 3], "per-order sequence"
    shipped = next(event for event in published if event.WhichOneof("payload") == "order_shipped")
    assert shipped.order_shipped.tracking_number == "1Z" and shipped.order_shipped.HasField("ship_time")


class PublishThenDie:
    """A publisher that publishes and then dies before the relay can mark the rows published."""

    def __init__(self, inner: Publisher) -> None:
        self._inner = inner

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        await self._inner.publish(topic, messages)
        raise ConnectionResetError("relay killed after publishing")

    async def close(self) -> None:
        await self._inner.close()


async def test_a_relay_dying_between_publish_and_mark_delivers_twice_and_notifies_once(
    bus: Bus, start_service, event_bus: EventBus, database_url: str, order_store
):
    order_service = await start_service(ORDER, **bus.env, **NOWHERE, ORDER_RELAY_ENABLED="false")
    placed = await place_orders(order_service, 2, ship=False)

    dying = OutboxRelay(order_store, event_bus, bus.topic)
    await event_bus.ensure_topic(bus.topic)
    dying._publisher = PublishThenDie(event_bus.publisher())
    with pytest.raises(ConnectionResetError):
        await dying.publish_batch()
    assert not any(published for *_, published in await outbox(database_url)), "the marks were rolled back"
    assert await OutboxRelay(order_store, event_bus, bus.topic).publish_batch() == 4
    assert all(published for *_, published in await outbox(database_url))

    on_bus = Counter(event.event_id for event in decoded(await read_all(event_bus, bus.topic, expect=8)))
    assert sorted(on_bus.values()) == [2, 2, 2, 2], "every event was delivered twice"

    notification_service = await start_service(NOTIFICATION, **bus.env)
    assert await wait_for(lambda: all_sent(notification_service, {o: ["order_confirmed"] for o in placed}))
    await asyncio.sleep(1.0)  # duplicates, if any were to make messages, would have by now
    for order_id in placed:
        assert len(await notifications_of(notification_service, order_id)) == 1


async def test_messages_held_by_a_dead_consumer_are_taken_over_and_sent(
    bus: Bus, start_service, event_bus: EventBus, order_store
):
    order_service = await start_service(ORDER, **bus.env, **NOWHERE, ORDER_RELAY_ENABLED="false")
    placed = await place_orders(order_service, 3, ship=False)
    assert await OutboxRelay(order_store, event_bus, bus.topic).publish_batch() == 6

    # A member of the notification group reads every message and dies without acknowledging any.
    group = bus.env["NOTIFICATION_CONSUMER_GROUP"]
    doomed = event_bus.consumer(bus.topic, group=group, name="doomed")
    held: list[Delivery] = []
    for _ in range(40):
        held += await doomed.fetch(100, timeout_seconds=0.5)
        if len(held) >= 6:
            break
    assert len(held) == 6
    await doomed.close()  # Redis: the entries stay pending with "doomed"; Kafka: its partitions rebalance

    notification_service = await start_service(NOTIFICATION, **bus.env, EVENT_BUS_RECLAIM_IDLE_SECONDS="0.5")
    assert await wait_for(lambda: all_sent(notification_service, {o: ["order_confirmed"] for o in placed}))


async def test_a_poison_message_goes_to_the_dead_letter_topic_with_its_reason(
    bus: Bus, start_service, event_bus: EventBus
):
    await start_service(NOTIFICATION, **bus.env)
    await event_bus.ensure_topic(bus.topic)
    publisher = event_bus.publisher()
    try:
        await publisher.publish(
            bus.topic, [BusMessage(key="ord-x", type="OrderConfirmed", value=b"\xff\xfe not proto")]
        )
    finally:
        await publisher.close()
    dead = await read_all(event_bus, bus.dead_letter_topic, expect=1)
    assert len(dead) == 1
    assert dead[0].message.value == b"\xff\xfe not proto"
    assert dict(dead[0].message.headers)["reason"].startswith("undecodable OrderEvent")


async def test_a_message_keeps_its_trace_and_sampling_decision_across_the_bus(bus: Bus, event_bus: EventBus):
    sampled_out = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00"
    await event_bus.ensure_topic(bus.topic)
    publisher = event_bus.publisher()
    try:
        await publisher.publish(
            bus.topic,
            [
                BusMessage(key="o1", type="OrderConfirmed", value=b"1", headers=(("traceparent", sampled_out),)),
                BusMessage(key="o2", type="OrderConfirmed", value=b"2", headers=(("traceparent", ""),)),
            ],
        )
    finally:
        await publisher.close()
    first, second = sorted(await read_all(event_bus, bus.topic, expect=2), key=lambda d: d.message.value)
    carried = dict(first.message.headers)
    assert carried["traceparent"].startswith("00-" + "ab" * 16 + "-") and carried["traceparent"].endswith("-00")
    assert carried["publishedAt"].isdigit()
    assert "traceparent" not in dict(second.message.headers) or dict(second.message.headers)["traceparent"]
