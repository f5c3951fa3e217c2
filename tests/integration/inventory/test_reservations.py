"""Reservation lifecycle over gRPC: all-or-nothing, replays, confirm, release, extend, expiry, returns."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2

from inventory_svc.domain.model import Product
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.identity import trusted_channel
from tests.integration.inventory.conftest import Store, create_product, invariant_violations, stock_figures
from tests.rpc_errors import expect_failure


def items(**quantities: int) -> list[line_item_pb2.LineItem]:
    return [line_item_pb2.LineItem(sku=sku.replace("_", "-"), quantity=q) for sku, q in quantities.items()]


async def product(store: Store, sku: str) -> Product:
    """Stock figures from PostgreSQL (GetProduct may serve them up to the cache's TTL late)."""
    return await stock_figures(store, sku)


async def test_reserve_takes_every_line_or_none_and_names_each_short_sku(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await create_product(inventory, "B-1", stock=1)
    await create_product(inventory, "C-1", stock=0)

    failure = await expect_failure(
        inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(C_1=2, A_1=2, B_1=3)))
    )

    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "INSUFFICIENT_STOCK"
    shortage = failure.detail(pb.InsufficientStock)
    assert shortage is not None
    assert [(i.sku, i.requested, i.available) for i in shortage.items] == [("B-1", 3, 1), ("C-1", 2, 0)]
    assert (await product(store, "A-1")).reserved == 0  # the line that fitted was rolled back too
    assert (
        await expect_failure(inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1")))
    ).code == grpc.StatusCode.NOT_FOUND
    assert await invariant_violations(store) == []


async def test_reserve_replay_returns_the_same_reservation_and_reserves_once(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    request = pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2))

    first = await inventory.ReserveInventory(request)
    again = await inventory.ReserveInventory(request)

    assert not first.replayed and again.replayed
    assert again.reservation == first.reservation
    assert (await product(store, "A-1")).reserved == 2


async def test_reserve_with_other_lines_for_the_same_checkout_is_refused(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))

    failure = await expect_failure(
        inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=3)))
    )

    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert failure.reason == "CHECKOUT_ALREADY_RESERVED"
    assert (await product(store, "A-1")).reserved == 2


async def test_confirm_sells_the_units_once_and_is_idempotent(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))

    first = await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    again = await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))

    assert first.reservation.status == pb.RESERVATION_STATUS_CONFIRMED
    assert again.reservation == first.reservation
    sold = await product(store, "A-1")
    assert (sold.stock_on_hand, sold.reserved) == (3, 0)
    other = await expect_failure(
        inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o2"))
    )
    assert (other.code, other.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_CONFIRMED_FOR_OTHER_ORDER")
    assert await invariant_violations(store) == []


async def test_confirm_of_an_unknown_checkout_is_not_found(inventory):
    failure = await expect_failure(
        inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="nope", order_id="o1"))
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND")


async def test_release_gives_units_back_once_and_then_succeeds_with_nothing_to_release(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))

    first = await inventory.ReleaseReservation(
        pb.ReleaseReservationRequest(checkout_id="k1", reason="payment_declined")
    )
    again = await inventory.ReleaseReservation(
        pb.ReleaseReservationRequest(checkout_id="k1", reason="payment_declined")
    )

    assert first.released_line_count == 1 and again.released_line_count == 0
    assert again.reservation.status == pb.RESERVATION_STATUS_RELEASED
    assert again.reservation.release_reason == "payment_declined"
    assert (await product(store, "A-1")).reserved == 0
    late_confirm = await expect_failure(
        inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    )
    assert (late_confirm.code, late_confirm.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_RELEASED")
    assert await invariant_violations(store) == []


async def test_release_before_the_reserve_arrives_makes_the_late_reserve_fail(inventory, store):
    await create_product(inventory, "A-1", stock=5)

    released = await inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id="k1", reason="saga_timeout"))
    late = await expect_failure(
        inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))
    )

    assert released.released_line_count == 0
    assert (late.code, late.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_RELEASED")
    assert (await product(store, "A-1")).reserved == 0


async def test_release_of_a_confirmed_reservation_is_refused(inventory):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))
    await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))

    failure = await expect_failure(
        inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id="k1", reason="x"))
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_CONFIRMED")


async def test_extend_moves_expiry_forward_and_never_back(inventory):
    await create_product(inventory, "A-1", stock=5)
    reserved = await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=1), ttl=duration_pb2.Duration(seconds=60))
    )

    longer = await inventory.ExtendReservation(
        pb.ExtendReservationRequest(checkout_id="k1", ttl=duration_pb2.Duration(seconds=600))
    )
    shorter = await inventory.ExtendReservation(
        pb.ExtendReservationRequest(checkout_id="k1", ttl=duration_pb2.Duration(seconds=5))
    )

    assert longer.reservation.expire_time.ToSeconds() >= reserved.reservation.expire_time.ToSeconds() + 500
    assert shorter.reservation.expire_time == longer.reservation.expire_time


async def end_reservation(inventory, how: str) -> None:
    """Brings checkout k1 to an ended state: sold, released after a reserve, or released before any."""
    if how != "released before any reserve":
        await inventory.ReserveInventory(
            pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2), ttl=duration_pb2.Duration(seconds=60))
        )
    if how == "confirmed":
        await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    else:
        await inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id="k1", reason="payment_declined"))


@pytest.mark.parametrize(
    ("how", "reason", "status"),
    [
        ("confirmed", "RESERVATION_CONFIRMED", pb.RESERVATION_STATUS_CONFIRMED),
        ("released", "RESERVATION_RELEASED", pb.RESERVATION_STATUS_RELEASED),
        ("released before any reserve", "RESERVATION_RELEASED", pb.RESERVATION_STATUS_RELEASED),
    ],
    ids=["confirmed", "released", "released before any reserve"],
)
async def test_extend_of_an_ended_reservation_is_refused_and_changes_nothing(inventory, store, how, reason, status):
    await create_product(inventory, "A-1", stock=5)
    await end_reservation(inventory, how)
    before = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation

    failure = await expect_failure(
        inventory.ExtendReservation(
            pb.ExtendReservationRequest(checkout_id="k1", ttl=duration_pb2.Duration(seconds=600))
        )
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    after = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation
    assert after.status == status
    assert after == before
    assert (await product(store, "A-1")).reserved == 0
    assert await invariant_violations(store) == []


async def test_get_reservation_of_a_checkout_released_before_any_reserve_shows_the_release(inventory):
    released = await inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id="k1", reason="saga_timeout"))

    reservation = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation

    assert reservation.checkout_id == "k1"
    assert reservation.status == pb.RESERVATION_STATUS_RELEASED
    assert list(reservation.items) == []
    assert reservation.release_reason == "saga_timeout"
    assert reservation.HasField("release_time") and not reservation.HasField("confirm_time")
    assert reservation.order_id == ""
    assert reservation == released.reservation


async def test_release_after_expiry_before_the_sweeper_runs_ends_the_reservation_as_expired(
    inventory_with_idle_sweeper, store
):
    inventory = inventory_with_idle_sweeper
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=4), ttl=duration_pb2.Duration(seconds=1))
    )
    await asyncio.sleep(1.2)

    released = await inventory.ReleaseReservation(
        pb.ReleaseReservationRequest(checkout_id="k1", reason="payment_declined")
    )

    assert released.released_line_count == 0
    assert released.reservation.status == pb.RESERVATION_STATUS_EXPIRED
    assert released.reservation.release_reason == "expired"
    stored = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation
    assert (stored.status, stored.release_reason) == (pb.RESERVATION_STATUS_EXPIRED, "expired")
    after = await product(store, "A-1")
    assert (after.stock_on_hand, after.reserved, after.available) == (5, 0, 5)
    assert await invariant_violations(store) == []


async def test_confirm_with_an_order_id_another_checkout_was_sold_to_is_refused(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=1)))
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k2", items=items(A_1=2)))
    await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))

    failure = await expect_failure(
        inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k2", order_id="o1"))
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ORDER_ID_IN_USE")
    second = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k2"))).reservation
    assert (second.status, second.order_id) == (pb.RESERVATION_STATUS_ACTIVE, "")
    figures = await product(store, "A-1")
    assert (figures.stock_on_hand, figures.reserved) == (4, 2)
    assert await invariant_violations(store) == []
    # the refused attempt left nothing behind: the checkout can still be sold to its own order
    sold = await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k2", order_id="o2"))
    assert (sold.reservation.status, sold.reservation.order_id) == (pb.RESERVATION_STATUS_CONFIRMED, "o2")
    assert await invariant_violations(store) == []


async def test_sweeper_expires_a_reservation_after_its_ttl_and_a_late_confirm_is_refused(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=4), ttl=duration_pb2.Duration(seconds=1))
    )
    assert (await product(store, "A-1")).available == 1

    for _ in range(50):
        reservation = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation
        if reservation.status == pb.RESERVATION_STATUS_EXPIRED:
            break
        await asyncio.sleep(0.1)

    assert reservation.status == pb.RESERVATION_STATUS_EXPIRED
    assert reservation.release_reason == "expired"
    assert (await product(store, "A-1")).available == 5
    late = await expect_failure(
        inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    )
    assert (late.code, late.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED")
    assert await invariant_violations(store) == []


async def test_confirm_after_expiry_is_refused_even_before_the_sweeper_runs(start_service, store):
    from inventory_svc.__main__ import SPEC
    from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc

    service = await start_service(SPEC, RESERVATION_SWEEP_INTERVAL_SECONDS="3600")
    async with trusted_channel(service.address) as channel:
        inventory = pb_grpc.InventoryServiceStub(channel)
        await create_product(inventory, "A-1", stock=5)
        await asyncio.sleep(0.2)  # let the sweeper's first pass finish; the next is an hour away
        await inventory.ReserveInventory(
            pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=4), ttl=duration_pb2.Duration(seconds=1))
        )
        await asyncio.sleep(1.2)

        late = await expect_failure(
            inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
        )

        assert (late.code, late.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED")
        reservation = (await inventory.GetReservation(pb.GetReservationRequest(checkout_id="k1"))).reservation
        assert reservation.status == pb.RESERVATION_STATUS_EXPIRED
        assert (await product(store, "A-1")).available == 5
        extend = await expect_failure(
            inventory.ExtendReservation(
                pb.ExtendReservationRequest(checkout_id="k1", ttl=duration_pb2.Duration(seconds=60))
            )
        )
        assert extend.reason == "RESERVATION_EXPIRED"
    assert await invariant_violations(store) == []


async def test_return_stock_puts_sold_units_back_once(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await create_product(inventory, "B-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2, B_1=1)))
    await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    request = pb.ReturnStockRequest(order_id="o1", items=items(A_1=2), reason="order_cancelled")

    first = await inventory.ReturnStock(request)
    again = await inventory.ReturnStock(request)

    assert not first.replayed and again.replayed
    assert list(again.items) == list(first.items)
    assert (await product(store, "A-1")).stock_on_hand == 5
    different = await expect_failure(
        inventory.ReturnStock(pb.ReturnStockRequest(order_id="o1", items=items(B_1=1), reason="x"))
    )
    assert (different.code, different.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ORDER_ALREADY_RETURNED")
    assert await invariant_violations(store) == []


@pytest.mark.parametrize(
    ("order_id", "lines", "reason"),
    [
        ("never-sold", {"A_1": 1}, "ORDER_NOT_CONFIRMED"),
        ("o1", {"A_1": 3}, "RETURN_EXCEEDS_SOLD"),
        ("o1", {"B_1": 1}, "RETURN_EXCEEDS_SOLD"),
    ],
)
async def test_return_stock_is_refused_beyond_what_the_order_bought(inventory, store, order_id, lines, reason):
    await create_product(inventory, "A-1", stock=5)
    await create_product(inventory, "B-1", stock=5)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k1", items=items(A_1=2)))
    await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))

    failure = await expect_failure(
        inventory.ReturnStock(pb.ReturnStockRequest(order_id=order_id, items=items(**lines), reason="x"))
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert (await product(store, "A-1")).stock_on_hand == 3
    assert await invariant_violations(store) == []
