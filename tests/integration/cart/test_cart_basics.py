"""The cart's RPCs end to end against real Redis, PostgreSQL and inventory."""

from __future__ import annotations

import grpc
import pytest

from shop.cart.v1 import cart_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.type.v1 import money_pb2
from tests.identity import as_customer, as_service, as_session
from tests.integration.cart.conftest import NO_PRICE_CACHE, Mesh, add_product, new_cart
from tests.rpc_errors import expect_failure

ALICE = as_customer("alice")


async def test_create_cart_returns_the_same_active_cart_on_retry(mesh: Mesh):
    first = await mesh.cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=ALICE)
    again = await mesh.cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=ALICE)
    assert first.created and not again.created
    assert first.cart.cart_id == again.cart.cart_id
    assert first.cart.status == pb.CART_STATUS_ACTIVE
    assert not first.cart.HasField("subtotal")  # an empty cart has no subtotal
    assert first.cart.ttl.seconds == 1800 and first.cart.HasField("expire_time")


async def test_create_cart_for_someone_else_is_owner_mismatch(mesh: Mesh):
    failure = await expect_failure(mesh.cart.CreateCart(pb.CreateCartRequest(user_id="bob"), metadata=ALICE))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")
    session = await mesh.cart.CreateCart(pb.CreateCartRequest(session_id="s1"), metadata=as_session("s1"))
    assert session.cart.session_id == "s1" and not session.cart.user_id


async def test_add_item_prices_from_inventory_and_merges_lines(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    added = await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=2, idempotency_key="k1"), metadata=ALICE
    )
    assert added.line.unit_price == money_pb2.Money(currency_code="USD", amount_minor=1001)
    assert added.line.line_total.amount_minor == 2002
    assert added.line.product_name == "Product SKU-1"
    again = await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=3, idempotency_key="k2"), metadata=ALICE
    )
    assert len(again.cart.lines) == 1 and again.line.quantity == 5
    assert again.cart.subtotal == money_pb2.Money(currency_code="USD", amount_minor=5005)
    assert again.cart.item_count == 5
    assert again.cart.etag != added.cart.etag != cart.etag


async def test_add_item_replay_adds_nothing_and_a_reused_key_is_refused(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    request = pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=2, idempotency_key="same")
    first = await mesh.cart.AddItem(request, metadata=ALICE)
    replay = await mesh.cart.AddItem(request, metadata=ALICE)
    assert replay.replayed and not first.replayed
    assert replay.line.quantity == 2 and replay.cart.etag == first.cart.etag
    failure = await expect_failure(
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=3, idempotency_key="same"), metadata=ALICE
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert failure.metadata == {"idempotencyKey": "same"}


async def test_add_item_of_an_unknown_sku_is_product_not_found(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    failure = await expect_failure(
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku="NOPE", quantity=1, idempotency_key="k"), metadata=ALICE
        )
    )
    assert (failure.code, failure.reason, failure.metadata) == (
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
        {"sku": "NOPE"},
    )


@pytest.mark.parametrize("cart_env", [NO_PRICE_CACHE])
async def test_price_change_is_flagged_and_the_subtotal_uses_the_current_price(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-2", quantity=2, idempotency_key="k"), metadata=ALICE
    )
    await add_product(mesh.inventory, "SKU-2", price_minor=1500)
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    line = got.lines[0]
    assert line.price_changed and got.has_price_changes
    assert (line.added_unit_price.amount_minor, line.unit_price.amount_minor) == (1002, 1500)
    assert got.subtotal.amount_minor == 3000


async def test_update_remove_and_clear(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    for index, sku in enumerate(["SKU-0", "SKU-1", "SKU-2"]):
        await mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku=sku, quantity=1, idempotency_key=f"k{index}"), metadata=ALICE
        )
    updated = await mesh.cart.UpdateItemQuantity(
        pb.UpdateItemQuantityRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=7), metadata=ALICE
    )
    assert [(line.sku, line.quantity) for line in updated.cart.lines] == [("SKU-0", 1), ("SKU-1", 7), ("SKU-2", 1)]
    zero = await mesh.cart.UpdateItemQuantity(
        pb.UpdateItemQuantityRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=0), metadata=ALICE
    )
    assert zero.removed and [line.sku for line in zero.cart.lines] == ["SKU-0", "SKU-2"]
    missing = await expect_failure(
        mesh.cart.UpdateItemQuantity(
            pb.UpdateItemQuantityRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=1), metadata=ALICE
        )
    )
    assert (missing.reason, missing.metadata) == ("LINE_NOT_FOUND", {"sku": "SKU-1"})
    removed = await mesh.cart.RemoveItem(pb.RemoveItemRequest(cart_id=cart.cart_id, sku="SKU-0"), metadata=ALICE)
    assert removed.removed
    again = await mesh.cart.RemoveItem(pb.RemoveItemRequest(cart_id=cart.cart_id, sku="SKU-0"), metadata=ALICE)
    assert not again.removed and again.cart.etag == removed.cart.etag
    cleared = await mesh.cart.ClearCart(pb.ClearCartRequest(cart_id=cart.cart_id), metadata=ALICE)
    assert cleared.removed_line_count == 1 and not cleared.cart.lines
    assert not cleared.cart.HasField("subtotal")
    assert cleared.cart.status == pb.CART_STATUS_ACTIVE


async def test_update_item_quantity_without_quantity_is_invalid_not_a_removal(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=4, idempotency_key="k"), metadata=ALICE
    )
    failure = await expect_failure(
        mesh.cart.UpdateItemQuantity(pb.UpdateItemQuantityRequest(cart_id=cart.cart_id, sku="SKU-0"), metadata=ALICE)
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and "quantity" in failure.field_violations
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert got.lines[0].quantity == 4


async def test_convert_is_trusted_only_idempotent_and_recorded(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=3, idempotency_key="k"), metadata=ALICE
    )
    request = pb.ConvertCartRequest(cart_id=cart.cart_id, checkout_id="co-1", order_id="ord-1")
    refused = await expect_failure(mesh.cart.ConvertCart(request, metadata=ALICE))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")

    converted = await mesh.cart.ConvertCart(request, metadata=as_service())
    assert not converted.replayed
    assert converted.cart.status == pb.CART_STATUS_CONVERTED
    assert (converted.cart.checkout_id, converted.cart.order_id) == ("co-1", "ord-1")
    assert converted.cart.subtotal.amount_minor == 3000 and converted.cart.HasField("convert_time")
    replay = await mesh.cart.ConvertCart(request, metadata=as_service())
    assert replay.replayed and replay.cart == converted.cart

    other = await expect_failure(
        mesh.cart.ConvertCart(pb.ConvertCartRequest(cart_id=cart.cart_id, checkout_id="co-2"), metadata=as_service())
    )
    assert (other.code, other.reason, other.metadata) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_ALREADY_CONVERTED",
        {"checkoutId": "co-1"},
    )
    # the owner still reads it, from history; it can no longer change
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert got.status == pb.CART_STATUS_CONVERTED and got.lines[0].quantity == 3 and got.etag == converted.cart.etag
    assert not got.HasField("expire_time")
    closed = await expect_failure(
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=1, idempotency_key="k9"), metadata=ALICE
        )
    )
    assert (closed.reason, closed.metadata["status"]) == ("CART_NOT_ACTIVE", "CART_STATUS_CONVERTED")
    # a new CreateCart gives the owner a fresh cart
    assert (await new_cart(mesh.cart)).cart_id != cart.cart_id


async def test_inventory_stock_is_not_needed_to_add(mesh: Mesh):
    product = await mesh.inventory.GetProduct(inventory_pb.GetProductRequest(sku="SKU-0"))
    assert product.product.available == 0
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=1, idempotency_key="k"), metadata=ALICE
    )


@pytest.mark.parametrize("cart_env", [NO_PRICE_CACHE])
async def test_a_discontinued_products_line_is_unavailable_and_left_out_of_the_subtotal(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    for index, sku in enumerate(["SKU-0", "SKU-1"]):
        await mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku=sku, quantity=2, idempotency_key=f"k{index}"), metadata=ALICE
        )
    await mesh.inventory.DiscontinueProduct(inventory_pb.DiscontinueProductRequest(sku="SKU-1"))
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert [(line.sku, line.unavailable) for line in got.lines] == [("SKU-0", False), ("SKU-1", True)]
    assert got.has_unavailable_lines and got.subtotal.amount_minor == 2000 and got.item_count == 2
    assert got.lines[1].unit_price.amount_minor == 1001  # its last known price
    refused = await expect_failure(
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-1", quantity=1, idempotency_key="k9"), metadata=ALICE
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    removed = await mesh.cart.RemoveItem(pb.RemoveItemRequest(cart_id=cart.cart_id, sku="SKU-1"), metadata=ALICE)
    assert not removed.cart.has_unavailable_lines
