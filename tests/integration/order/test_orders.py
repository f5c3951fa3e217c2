"""Every RPC of the order service over gRPC: the lifecycle with its timestamps, replays, who may call
what, and what customers may see."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from shop.order.v1 import order_service_pb2 as pb
from tests.identity import as_customer, as_session
from tests.integration.order.conftest import TRUSTED, cancel, create_request, outbox, place, usd
from tests.rpc_errors import expect_failure


async def ship(orders, order_id: str, shipment_id: str = "shp-1") -> pb.MarkShippedResponse:
    return await orders.MarkShipped(
        pb.MarkShippedRequest(order_id=order_id, shipment_id=shipment_id, tracking_number="1Z999", carrier="UPS"),
        metadata=TRUSTED,
    )


async def deliver(orders, order_id: str) -> pb.MarkDeliveredResponse:
    return await orders.MarkDelivered(pb.MarkDeliveredRequest(order_id=order_id), metadata=TRUSTED)


async def test_an_order_goes_through_its_lifecycle_with_a_timestamp_and_an_event_per_state(orders, database_url):
    created = (await orders.CreateOrder(create_request(), metadata=TRUSTED)).order
    assert created.status == pb.ORDER_STATUS_PENDING and created.HasField("create_time")
    assert created.total == usd(5468) and created.discount_total == usd(0)
    confirmed = (await orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=created.order_id), metadata=TRUSTED)).order
    assert confirmed.status == pb.ORDER_STATUS_CONFIRMED and confirmed.HasField("confirm_time")
    shipped = (await ship(orders, created.order_id)).order
    assert shipped.status == pb.ORDER_STATUS_SHIPPED and shipped.shipment_id == "shp-1"
    assert shipped.HasField("ship_time")
    delivered = (await deliver(orders, created.order_id)).order
    assert delivered.status == pb.ORDER_STATUS_DELIVERED and delivered.HasField("deliver_time")
    for changed in (confirmed, shipped, delivered):  # every state change answers with the lines, in order
        assert list(changed.lines) == list(create_request().lines) == list(created.lines)
    assert [(seq, kind) for _, seq, kind, _ in await outbox(database_url, created.order_id)] == [
        (1, "OrderCreated"),
        (2, "OrderConfirmed"),
        (3, "OrderShipped"),
        (4, "OrderDelivered"),
    ]


async def test_create_order_is_idempotent_on_the_checkout(orders, database_url):
    request = create_request()
    first = await orders.CreateOrder(request, metadata=TRUSTED)
    again = await orders.CreateOrder(request, metadata=TRUSTED)
    assert again.replayed and not first.replayed and again.order.order_id == first.order.order_id
    different = create_request(checkout_id=request.checkout_id, payment_id="pay-other")
    failure = await expect_failure(orders.CreateOrder(different, metadata=TRUSTED))
    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CHECKOUT_ALREADY_ORDERED")
    assert failure.metadata == {"orderId": first.order.order_id}
    assert len(await outbox(database_url)) == 1


async def test_concurrent_creates_of_one_checkout_make_one_order(orders, database_url):
    import asyncio

    request = create_request()
    responses = await asyncio.gather(*(orders.CreateOrder(request, metadata=TRUSTED) for _ in range(8)))
    assert len({response.order.order_id for response in responses}) == 1
    assert sum(not response.replayed for response in responses) == 1
    assert len(await outbox(database_url)) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda o: o.CreateOrder(create_request(), metadata=as_customer("u1")),
        lambda o: o.ConfirmOrder(pb.ConfirmOrderRequest(order_id="ord-1"), metadata=as_customer("u1")),
        lambda o: o.MarkShipped(
            pb.MarkShippedRequest(order_id="ord-1", shipment_id="s", tracking_number="T"), metadata=as_customer("u1")
        ),
        lambda o: o.MarkDelivered(pb.MarkDeliveredRequest(order_id="ord-1"), metadata=as_customer("u1")),
    ],
    ids=["CreateOrder", "ConfirmOrder", "MarkShipped", "MarkDelivered"],
)
async def test_trusted_only_rpcs_refuse_customers(orders, call):
    failure = await expect_failure(call(orders))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")


async def test_customer_rpcs_need_an_identity(orders):
    failure = await expect_failure(orders.GetOrder(pb.GetOrderRequest(order_id="ord-1")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_MISSING")


async def test_customers_see_only_their_own_orders(orders):
    order = await place(orders, "u1")
    mine = await orders.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=as_customer("u1"))
    assert mine.order.order_id == order.order_id
    for metadata in (as_customer("u2"), as_session("u1")):
        failure = await expect_failure(orders.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=metadata))
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")
        failure = await expect_failure(
            orders.CancelOrder(
                pb.CancelOrderRequest(
                    order_id=order.order_id, reason=pb.CANCEL_REASON_CUSTOMER_REQUEST, idempotency_key="k1"
                ),
                metadata=metadata,
            )
        )
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")
    trusted = await orders.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=TRUSTED)
    assert trusted.order.order_id == order.order_id


async def test_list_orders_is_newest_first_filtered_and_paged(orders):
    placed = [await place(orders, "u1", confirm=index % 2 == 0) for index in range(5)]
    await place(orders, "u2")
    listed = await orders.ListOrders(pb.ListOrdersRequest(user_id="u1"), metadata=as_customer("u1"))
    assert [o.order_id for o in listed.orders] == [o.order_id for o in reversed(placed)]
    assert not listed.next_page_token
    confirmed = await orders.ListOrders(
        pb.ListOrdersRequest(user_id="u1", statuses=[pb.ORDER_STATUS_CONFIRMED]), metadata=as_customer("u1")
    )
    assert [o.order_id for o in confirmed.orders] == [placed[4].order_id, placed[2].order_id, placed[0].order_id]
    seen, token = [], ""
    while True:
        page = await orders.ListOrders(
            pb.ListOrdersRequest(user_id="u1", page_size=2, page_token=token), metadata=as_customer("u1")
        )
        seen += [o.order_id for o in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert seen == [o.order_id for o in reversed(placed)]
    first = await orders.ListOrders(pb.ListOrdersRequest(user_id="u1", page_size=2), metadata=as_customer("u1"))
    failure = await expect_failure(
        orders.ListOrders(
            pb.ListOrdersRequest(user_id="u1", page_token=first.next_page_token, statuses=[pb.ORDER_STATUS_PENDING]),
            metadata=as_customer("u1"),
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in failure.field_violations
    failure = await expect_failure(orders.ListOrders(pb.ListOrdersRequest(user_id="u2"), metadata=as_customer("u1")))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")


# The state machine over the wire: every illegal transition names the current status


async def _order_in(orders, status: int) -> pb.Order:
    order = await place(orders, confirm=status != pb.ORDER_STATUS_PENDING)
    if status == pb.ORDER_STATUS_CANCELLED:
        await cancel(orders, order.order_id)
    if status in (pb.ORDER_STATUS_SHIPPED, pb.ORDER_STATUS_DELIVERED):
        await ship(orders, order.order_id)
    if status == pb.ORDER_STATUS_DELIVERED:
        await deliver(orders, order.order_id)
    return order


ILLEGAL = [
    (pb.ORDER_STATUS_PENDING, "ship", "ORDER_NOT_CONFIRMED"),
    (pb.ORDER_STATUS_PENDING, "deliver", "ORDER_NOT_SHIPPED"),
    (pb.ORDER_STATUS_CONFIRMED, "deliver", "ORDER_NOT_SHIPPED"),
    (pb.ORDER_STATUS_SHIPPED, "cancel", "ORDER_NOT_CANCELLABLE"),
    (pb.ORDER_STATUS_DELIVERED, "cancel", "ORDER_NOT_CANCELLABLE"),
    (pb.ORDER_STATUS_CANCELLED, "confirm", "ORDER_CANCELLED"),
    (pb.ORDER_STATUS_CANCELLED, "ship", "ORDER_CANCELLED"),
    (pb.ORDER_STATUS_CANCELLED, "deliver", "ORDER_CANCELLED"),
]


@pytest.mark.parametrize(("status", "verb", "reason"), ILLEGAL)
async def test_an_illegal_transition_is_failed_precondition_naming_the_current_status(
    orders, database_url, status, verb, reason
):
    order = await _order_in(orders, status)
    events_before = len(await outbox(database_url, order.order_id))
    calls = {
        "confirm": lambda: orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order.order_id), metadata=TRUSTED),
        "ship": lambda: ship(orders, order.order_id),
        "deliver": lambda: deliver(orders, order.order_id),
        "cancel": lambda: orders.CancelOrder(
            pb.CancelOrderRequest(order_id=order.order_id, reason=pb.CANCEL_REASON_OTHER, idempotency_key="late"),
            metadata=TRUSTED,
        ),
    }
    failure = await expect_failure(calls[verb]())
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert failure.metadata["status"] == pb.OrderStatus.Name(status)
    assert len(await outbox(database_url, order.order_id)) == events_before


async def test_replays_of_reached_states_change_nothing(orders, database_url):
    order = await _order_in(orders, pb.ORDER_STATUS_DELIVERED)
    confirm = await orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order.order_id), metadata=TRUSTED)
    assert confirm.replayed and confirm.order.status == pb.ORDER_STATUS_DELIVERED
    assert (await ship(orders, order.order_id)).replayed
    assert (await deliver(orders, order.order_id)).replayed
    failure = await expect_failure(ship(orders, order.order_id, shipment_id="shp-other"))
    assert failure.reason == "ORDER_ALREADY_SHIPPED"
    assert failure.metadata == {"status": "ORDER_STATUS_DELIVERED", "shipmentId": "shp-1"}
    assert len(await outbox(database_url, order.order_id)) == 4


async def test_delivery_cannot_predate_shipment(orders):
    order = await _order_in(orders, pb.ORDER_STATUS_SHIPPED)
    failure = await expect_failure(
        orders.MarkDelivered(
            pb.MarkDeliveredRequest(order_id=order.order_id, deliver_time=timestamp_pb2.Timestamp(seconds=1)),
            metadata=TRUSTED,
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and "deliver_time" in failure.field_violations


# Cancelling


async def test_a_customer_cannot_cancel_a_pending_order_but_a_trusted_caller_can(orders):
    order = await place(orders, confirm=False)
    failure = await expect_failure(cancel(orders, order.order_id))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKOUT_IN_PROGRESS")
    assert failure.metadata == {"status": "ORDER_STATUS_PENDING"}
    cancelled = await orders.CancelOrder(
        pb.CancelOrderRequest(order_id=order.order_id, reason=pb.CANCEL_REASON_PAYMENT_FAILED, idempotency_key="k"),
        metadata=TRUSTED,
    )
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED


@pytest.mark.parametrize("reason", [pb.CANCEL_REASON_OPERATOR, pb.CANCEL_REASON_FRAUD_SUSPECTED])
async def test_a_customer_cannot_pick_an_operator_reason(orders, database_url, reason):
    order = await place(orders)
    failure = await expect_failure(
        orders.CancelOrder(
            pb.CancelOrderRequest(order_id=order.order_id, reason=reason, idempotency_key="k"),
            metadata=as_customer("u1"),
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CANCEL_REASON_NOT_ALLOWED")
    assert failure.metadata == {"reason": pb.CancelReason.Name(reason)}
    assert len(await outbox(database_url, order.order_id)) == 2


async def test_cancel_is_idempotent_on_its_key_and_a_second_cancel_changes_nothing(orders, database_url):
    order = await place(orders)
    first = await cancel(orders, order.order_id, key="k1")
    assert first.order.status == pb.ORDER_STATUS_CANCELLED and not first.replayed
    assert first.order.cancellation.reason == pb.CANCEL_REASON_CUSTOMER_REQUEST
    assert first.order.cancellation.HasField("cancel_time")
    replay = await cancel(orders, order.order_id, key="k1")
    assert replay.replayed and not replay.already_cancelled
    other = await cancel(orders, order.order_id, key="k2")
    assert other.already_cancelled and not other.replayed
    another_order = await place(orders)
    failure = await expect_failure(cancel(orders, another_order.order_id, key="k1"))
    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert failure.metadata == {"idempotencyKey": "k1"}
    kinds = [kind for _, _, kind, _ in await outbox(database_url, order.order_id)]
    assert kinds.count("OrderCancelled") == 1
