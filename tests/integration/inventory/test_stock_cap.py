"""Stock on hand never exceeds 1000000000 units, whichever call would take it there, and a refused
change leaves no trace in the ledger."""

from __future__ import annotations

import asyncio

import grpc

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.integration.inventory.conftest import create_product, invariant_violations, stock_figures
from tests.rpc_errors import expect_failure

STOCK_CAP = 1_000_000_000
LARGEST_ADJUSTMENT = 1_000_000


async def stock_on_hand(store, sku: str) -> int:
    return (await stock_figures(store, sku)).stock_on_hand


async def adjust(
    inventory,
    sku: str,
    delta: int,
    key: str,
    reason: pb.StockAdjustmentReason.ValueType = pb.STOCK_ADJUSTMENT_REASON_RECOUNT,
):
    return await inventory.AdjustStock(pb.AdjustStockRequest(sku=sku, delta=delta, reason=reason, idempotency_key=key))


async def fill_to_the_cap(inventory, store, sku: str) -> None:
    """Creates the product and receives stock up to exactly the cap, through AdjustStock (so the ledger agrees)."""
    await create_product(inventory, sku, stock=0)
    deliveries = STOCK_CAP // LARGEST_ADJUSTMENT
    for start in range(0, deliveries, 100):
        await asyncio.gather(
            *(
                adjust(inventory, sku, LARGEST_ADJUSTMENT, f"fill-{index}", pb.STOCK_ADJUSTMENT_REASON_RECEIVED)
                for index in range(start, min(start + 100, deliveries))
            )
        )
    assert await stock_on_hand(store, sku) == STOCK_CAP


async def test_adjustment_past_the_stock_cap_is_refused_and_recorded_nowhere(inventory, store):
    await fill_to_the_cap(inventory, store, "A-1")

    at_cap = await expect_failure(adjust(inventory, "A-1", 1, "one-more", pb.STOCK_ADJUSTMENT_REASON_RECEIVED))
    await adjust(inventory, "A-1", -10, "counted")
    just_past = await expect_failure(adjust(inventory, "A-1", 11, "eleven", pb.STOCK_ADJUSTMENT_REASON_RECEIVED))

    for failure in (at_cap, just_past):
        assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STOCK_LIMIT_EXCEEDED")
    assert await stock_on_hand(store, "A-1") == STOCK_CAP - 10
    assert await invariant_violations(store) == []
    # reaching the cap exactly is allowed, and the refused key was not spent
    assert (await adjust(inventory, "A-1", 10, "eleven", pb.STOCK_ADJUSTMENT_REASON_RECEIVED)).replayed is False
    assert await stock_on_hand(store, "A-1") == STOCK_CAP
    assert await invariant_violations(store) == []


async def test_return_past_the_stock_cap_is_refused_and_the_ledger_does_not_get_it(inventory, store):
    await fill_to_the_cap(inventory, store, "A-1")
    await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="k1", items=[line_item_pb2.LineItem(sku="A-1", quantity=5)])
    )
    await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id="k1", order_id="o1"))
    await adjust(inventory, "A-1", 5, "restock", pb.STOCK_ADJUSTMENT_REASON_RECEIVED)
    assert await stock_on_hand(store, "A-1") == STOCK_CAP
    request = pb.ReturnStockRequest(
        order_id="o1", items=[line_item_pb2.LineItem(sku="A-1", quantity=5)], reason="order_cancelled"
    )

    failure = await expect_failure(inventory.ReturnStock(request))

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STOCK_LIMIT_EXCEEDED")
    assert await stock_on_hand(store, "A-1") == STOCK_CAP
    assert await invariant_violations(store) == []
    # nothing was recorded for the order: once there is room, the same return is a first return, not a replay
    await adjust(inventory, "A-1", -5, "counted")
    returned = await inventory.ReturnStock(request)
    assert returned.replayed is False
    assert await stock_on_hand(store, "A-1") == STOCK_CAP
    assert await invariant_violations(store) == []
