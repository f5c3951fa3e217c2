"""DiscontinueProduct: the product stays readable and shows it, and can no longer be reserved."""

from __future__ import annotations

import grpc

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.integration.inventory.conftest import create_product
from tests.rpc_errors import expect_failure


async def test_a_discontinued_product_is_shown_and_refused_for_new_reservations(inventory):
    await create_product(inventory, "GONE-1", stock=10)
    await create_product(inventory, "KEPT-1", stock=10)
    held = await inventory.ReserveInventory(
        pb.ReserveInventoryRequest(checkout_id="before", items=[line_item_pb2.LineItem(sku="GONE-1", quantity=2)])
    )
    first = await inventory.DiscontinueProduct(pb.DiscontinueProductRequest(sku="GONE-1"))
    assert first.changed and first.product.discontinued and first.product.HasField("discontinue_time")
    again = await inventory.DiscontinueProduct(pb.DiscontinueProductRequest(sku="GONE-1"))
    assert not again.changed and again.product.discontinue_time == first.product.discontinue_time

    batch = await inventory.BatchGetProducts(pb.BatchGetProductsRequest(skus=["GONE-1", "KEPT-1"]))
    assert [(p.sku, p.discontinued) for p in batch.products] == [("GONE-1", True), ("KEPT-1", False)]

    refused = await expect_failure(
        inventory.ReserveInventory(
            pb.ReserveInventoryRequest(
                checkout_id="after",
                items=[
                    line_item_pb2.LineItem(sku="KEPT-1", quantity=1),
                    line_item_pb2.LineItem(sku="GONE-1", quantity=1),
                ],
            )
        )
    )
    assert (refused.code, refused.reason, refused.metadata) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PRODUCT_DISCONTINUED",
        {"sku": "GONE-1"},
    )
    kept = await inventory.GetProduct(pb.GetProductRequest(sku="KEPT-1"))
    assert kept.product.reserved == 0  # all or nothing
    # a reservation made before is kept and can still be confirmed
    confirmed = await inventory.ConfirmReservation(
        pb.ConfirmReservationRequest(checkout_id=held.reservation.checkout_id, order_id="o-1")
    )
    assert confirmed.reservation.status == pb.RESERVATION_STATUS_CONFIRMED


async def test_discontinuing_an_unknown_or_bad_sku(inventory):
    unknown = await expect_failure(inventory.DiscontinueProduct(pb.DiscontinueProductRequest(sku="NOPE")))
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    bad = await expect_failure(inventory.DiscontinueProduct(pb.DiscontinueProductRequest(sku="bad sku")))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and set(bad.field_violations) == {"sku"}
