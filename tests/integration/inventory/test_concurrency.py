"""Concurrency claims, proven by concurrent calls over gRPC and invariant checks afterwards."""

from __future__ import annotations

import asyncio
import random

import grpc

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.integration.inventory.conftest import create_product, invariant_violations, stock_figures
from tests.rpc_errors import failure_of


async def test_200_concurrent_reservations_of_50_units_reserve_exactly_50(inventory, store):
    await create_product(inventory, "HOT-1", stock=50)

    async def reserve(index: int) -> grpc.StatusCode:
        try:
            await inventory.ReserveInventory(
                pb.ReserveInventoryRequest(
                    checkout_id=f"c-{index}", items=[line_item_pb2.LineItem(sku="HOT-1", quantity=1)]
                )
            )
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            failure = failure_of(error)
            assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure
            assert failure.reason == "INSUFFICIENT_STOCK"
            return failure.code

    outcomes = await asyncio.gather(*(reserve(i) for i in range(200)))

    assert outcomes.count(grpc.StatusCode.OK) == 50
    assert outcomes.count(grpc.StatusCode.FAILED_PRECONDITION) == 150
    product = await stock_figures(store, "HOT-1")
    assert (product.stock_on_hand, product.reserved, product.available) == (50, 50, 0)
    assert await invariant_violations(store) == []


async def test_multi_line_reservations_in_opposing_orders_all_finish_without_deadlock_errors(inventory, store):
    skus = ["MIX-A", "MIX-B", "MIX-C"]
    for sku in skus:
        await create_product(inventory, sku, stock=40)
    rng = random.Random(7)

    async def reserve_then_settle(index: int) -> str:
        order = skus[:] if index % 2 else list(reversed(skus))
        items = [line_item_pb2.LineItem(sku=sku, quantity=rng.randint(1, 3)) for sku in order]
        checkout_id = f"opp-{index}"
        try:
            await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id=checkout_id, items=items))
        except grpc.aio.AioRpcError as error:
            assert failure_of(error).reason == "INSUFFICIENT_STOCK", failure_of(error)
            return "short"
        if index % 3 == 0:
            await inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="test"))
            return "released"
        await inventory.ConfirmReservation(pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=f"o-{index}"))
        return "confirmed"

    async def restock(index: int) -> str:
        sku = skus[index % len(skus)]
        await inventory.AdjustStock(
            pb.AdjustStockRequest(
                sku=sku, delta=2, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key=f"r-{index}"
            )
        )
        return "restocked"

    jobs = [reserve_then_settle(i) for i in range(80)] + [restock(i) for i in range(20)]
    rng.shuffle(jobs)
    outcomes = await asyncio.gather(*jobs)  # any ABORTED/UNKNOWN/INTERNAL would raise here

    assert outcomes.count("confirmed") > 0 and outcomes.count("released") > 0
    assert await invariant_violations(store) == []


async def test_concurrent_duplicates_of_one_adjustment_apply_it_once(inventory, store):
    await create_product(inventory, "DUP-1", stock=0)
    request = pb.AdjustStockRequest(
        sku="DUP-1", delta=7, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="same"
    )

    responses = await asyncio.gather(*(inventory.AdjustStock(request) for _ in range(20)))

    assert sum(not r.replayed for r in responses) == 1
    assert len({r.movement_id for r in responses}) == 1
    product = await stock_figures(store, "DUP-1")
    assert product.stock_on_hand == 7
    assert await invariant_violations(store) == []


async def test_concurrent_duplicate_reservations_of_one_checkout_reserve_once(inventory, store):
    await create_product(inventory, "DUP-2", stock=10)
    request = pb.ReserveInventoryRequest(checkout_id="same", items=[line_item_pb2.LineItem(sku="DUP-2", quantity=3)])

    responses = await asyncio.gather(*(inventory.ReserveInventory(request) for _ in range(20)))

    assert sum(not r.replayed for r in responses) == 1
    product = await stock_figures(store, "DUP-2")
    assert product.reserved == 3
    assert await invariant_violations(store) == []


async def test_release_racing_its_reservation_never_leaves_stock_held(inventory, store):
    await create_product(inventory, "RACE-1", stock=100)

    async def race(index: int) -> None:
        checkout_id = f"race-{index}"
        reserve = inventory.ReserveInventory(
            pb.ReserveInventoryRequest(
                checkout_id=checkout_id, items=[line_item_pb2.LineItem(sku="RACE-1", quantity=1)]
            )
        )
        release = inventory.ReleaseReservation(pb.ReleaseReservationRequest(checkout_id=checkout_id, reason="timeout"))
        results = await asyncio.gather(reserve, release, return_exceptions=True)
        for result in results:
            if isinstance(result, grpc.aio.AioRpcError):
                assert failure_of(result).reason == "RESERVATION_RELEASED", failure_of(result)
        # whichever came first, the checkout ends holding nothing
        final = await inventory.GetReservation(pb.GetReservationRequest(checkout_id=checkout_id))
        assert final.reservation.status == pb.RESERVATION_STATUS_RELEASED

    await asyncio.gather(*(race(i) for i in range(30)))
    product = await stock_figures(store, "RACE-1")
    assert product.reserved == 0
    assert await invariant_violations(store) == []
