"""The transactional outbox: an event exists if and only if its change committed, a committed event is
published even if the bus was down at commit time, and published rows are pruned after the retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as redis

from order_svc.handlers import record_event
from order_svc.relay import OutboxRelay
from order_svc.repository import OrderStatements
from service_runtime.database import Database
from service_runtime.events import BusConfig, open_bus
from service_runtime.keyspace import KeySpace
from service_runtime.sql import UnitOfWork
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as pb
from tests.integration.order.conftest import TRUSTED, create_request, outbox, place, scalar

Store = UnitOfWork[OrderStatements]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    database = Database(database_url, min_size=1, max_size=2, statement_timeout_ms=10_000, application_name="test")
    await database.open()
    try:
        yield UnitOfWork(database, OrderStatements)
    finally:
        await database.close()


@pytest.fixture
async def quiet_orders(start_service: Any) -> AsyncIterator[Any]:
    """An order service whose relay is off, so the test decides when rows are published."""
    import grpc

    from order_svc.__main__ import SPEC
    from shop.order.v1 import order_service_pb2_grpc as pb_grpc

    service = await start_service(
        SPEC, ORDER_RELAY_ENABLED="false", PAYMENT_TARGET="127.0.0.1:1", INVENTORY_TARGET="127.0.0.1:1"
    )
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield pb_grpc.OrderServiceStub(channel)


async def test_a_rolled_back_change_leaves_no_event(quiet_orders, store: Store, database_url: str):
    order = await place(quiet_orders, confirm=False)

    async def confirm_then_fail(tx: OrderStatements) -> None:
        locked = await tx.order(order.order_id, lock=True)
        assert locked is not None
        confirmed = await tx.confirm(locked)
        await record_event(tx, confirmed, events.OrderConfirmed(payment_id=confirmed.payment_id))
        raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError):
        await store.run(confirm_then_fail)
    assert [kind for _, _, kind, _ in await outbox(database_url)] == ["OrderCreated"]
    assert await scalar(database_url, "SELECT status FROM orders.orders") == "pending"


async def test_a_committed_event_is_published_after_the_bus_comes_back(
    quiet_orders, store: Store, redis_url: str, redis_prefix: str, database_url: str
):
    order = await place(quiet_orders)
    dead_redis = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    live_redis = redis.Redis.from_url(redis_url)
    try:
        down = OutboxRelay(store, open_bus(BusConfig(), dead_redis, KeySpace(redis_prefix)), "orders")
        with pytest.raises(redis.ConnectionError):
            await down.publish_batch()
        assert not any(published for *_, published in await outbox(database_url))
        up = OutboxRelay(store, open_bus(BusConfig(), live_redis, KeySpace(redis_prefix)), "orders")
        assert await up.publish_batch() == 2
        assert all(published for *_, published in await outbox(database_url))
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await live_redis.xrange(f"{redis_prefix}orders"))
        published = [events.OrderEvent.FromString(fields[b"event"]) for _, fields in entries]
        assert [(e.order_id, e.sequence, e.WhichOneof("payload")) for e in published] == [
            (order.order_id, 1, "order_created"),
            (order.order_id, 2, "order_confirmed"),
        ]
        assert published[1].order.status == pb.ORDER_STATUS_CONFIRMED
        assert entries[0][1][b"key"] == order.order_id.encode() and entries[1][1][b"type"] == b"OrderConfirmed"
    finally:
        await dead_redis.aclose()
        await live_redis.aclose()


async def test_published_rows_are_pruned_after_the_retention_and_unpublished_ones_kept(
    quiet_orders, store: Store, redis_url: str, redis_prefix: str, database_url: str
):
    await place(quiet_orders)
    client = redis.Redis.from_url(redis_url)
    try:
        relay = OutboxRelay(store, open_bus(BusConfig(), client, KeySpace(redis_prefix)), "orders", retention_seconds=0)
        assert await relay.publish_batch() == 2
        await place(quiet_orders, confirm=False)  # written after the publication: not published yet
        assert await relay.prune() == 2
        assert [(kind, published) for _, _, kind, published in await outbox(database_url)] == [("OrderCreated", False)]
        kept = OutboxRelay(store, open_bus(BusConfig(), client, KeySpace(redis_prefix)), "orders")
        assert await kept.publish_batch() == 1
        assert await kept.prune() == 0, "the default retention keeps rows published just now"
    finally:
        await client.aclose()


async def test_an_event_carries_the_trace_context_of_the_request_that_caused_it(quiet_orders, database_url: str):
    from opentelemetry import propagate, trace

    with trace.get_tracer("tests").start_as_current_span("checkout") as span:
        # The caller propagates its context the way the runtime's channels do (W3C traceparent metadata).
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        metadata = (*TRUSTED, *carrier.items())
        order = (await quiet_orders.CreateOrder(create_request(), metadata=metadata)).order
    trace_id = format(span.get_span_context().trace_id, "032x")
    payload = await scalar(database_url, "SELECT payload FROM orders.order_events WHERE order_id = %s", order.order_id)
    event = events.OrderEvent.FromString(bytes(payload))
    assert event.traceparent.startswith(f"00-{trace_id}-"), (event.traceparent, trace_id)
    assert event.event_id and event.sequence == 1 and event.order.order_id == order.order_id


async def test_relay_replicas_running_at_once_publish_every_event_once_in_per_order_sequence(
    quiet_orders, store: Store, redis_url: str, redis_prefix: str, database_url: str
):
    import asyncio

    placed = [await place(quiet_orders, f"u{index}") for index in range(30)]
    client = redis.Redis.from_url(redis_url)
    try:
        relays = [
            OutboxRelay(store, open_bus(BusConfig(), client, KeySpace(redis_prefix)), "orders", batch_size=7)
            for _ in range(4)
        ]

        async def drain(relay: OutboxRelay) -> None:
            for _ in range(200):
                if not any(not published for *_, published in await outbox(database_url)):
                    return
                await relay.publish_batch()

        await asyncio.gather(*(drain(relay) for relay in relays))
        assert all(published for *_, published in await outbox(database_url))
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(f"{redis_prefix}orders"))
        published = [events.OrderEvent.FromString(fields[b"event"]) for _, fields in entries]
        assert len(published) == len({event.event_id for event in published}) == 60, "no event published twice"
        for order in placed:
            assert [e.sequence for e in published if e.order_id == order.order_id] == [1, 2]
    finally:
        await client.aclose()


async def test_a_batch_publishes_each_orders_run_from_its_first_unpublished_event_and_nothing_past_a_held_one(
    quiet_orders, store: Store, redis_url: str, redis_prefix: str, database_url: str
):
    import psycopg

    a = await place(quiet_orders, "ua")
    await quiet_orders.MarkShipped(
        pb.MarkShippedRequest(order_id=a.order_id, shipment_id="s1", tracking_number="1Z"), metadata=TRUSTED
    )
    await quiet_orders.MarkDelivered(pb.MarkDeliveredRequest(order_id=a.order_id), metadata=TRUSTED)
    b = await place(quiet_orders, "ub")
    c = await place(quiet_orders, "uc", confirm=False)
    client = redis.Redis.from_url(redis_url)
    # Another relay holds a's third event and b's first (their rows are locked until it ends).
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        await other.execute(
            "SELECT 1 FROM orders.order_events WHERE (order_id, sequence) IN ((%s, 3), (%s, 1)) FOR UPDATE",
            (a.order_id, b.order_id),
        )
        try:
            relay = OutboxRelay(store, open_bus(BusConfig(), client, KeySpace(redis_prefix)), "orders")
            assert await relay.publish_batch() == 3
            published = {(o, seq) for o, seq, _, done in await outbox(database_url) if done}
            assert published == {(a.order_id, 1), (a.order_id, 2), (c.order_id, 1)}, "nothing past a held event"
        finally:
            await other.rollback()
        try:
            assert await relay.publish_batch() == 4
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(f"{redis_prefix}orders"))
            on_bus = [events.OrderEvent.FromString(fields[b"event"]) for _, fields in entries]
            assert [e.sequence for e in on_bus if e.order_id == a.order_id] == [1, 2, 3, 4]
            assert [e.sequence for e in on_bus if e.order_id == b.order_id] == [1, 2]
            assert all(done for *_, done in await outbox(database_url))
        finally:
            await client.aclose()


async def test_a_relay_drains_a_backlog_with_its_helper_loops_publishing_every_event_once_in_sequence(
    quiet_orders, store: Store, redis_url: str, redis_prefix: str, database_url: str
):
    import asyncio

    placed = [await place(quiet_orders, f"u{index}") for index in range(25)]
    client = redis.Redis.from_url(redis_url)
    relay = OutboxRelay(store, open_bus(BusConfig(), client, KeySpace(redis_prefix)), "orders", batch_size=3, helpers=3)
    running = asyncio.create_task(relay.run())
    try:
        for _ in range(300):
            if all(published for *_, published in await outbox(database_url)):
                break
            await asyncio.sleep(0.05)
        assert all(published for *_, published in await outbox(database_url))
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(f"{redis_prefix}orders"))
        published = [events.OrderEvent.FromString(fields[b"event"]) for _, fields in entries]
        assert len(published) == len({event.event_id for event in published}) == 50, "no event published twice"
        for order in placed:
            assert [e.sequence for e in published if e.order_id == order.order_id] == [1, 2]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await client.aclose()
