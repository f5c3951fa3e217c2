"""Nobody but the owner (or a trusted mesh service) sees or changes a cart; bad input changes nothing."""

from __future__ import annotations

import grpc
import psycopg
import pytest
import redis.asyncio as redis

from shop.cart.v1 import cart_service_pb2 as pb
from tests.identity import as_customer, as_service
from tests.identity import as_session as session_of
from tests.integration.cart.conftest import Mesh, new_cart, redis_snapshot
from tests.rpc_errors import expect_failure

ALICE = as_customer("alice")


async def _history_rows(database_url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT (SELECT count(*) FROM cart.carts), (SELECT count(*) FROM cart.cart_items)"
        )
        row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


def _customer_calls(cart_id: str):
    return {
        "GetCart": lambda stub, md: stub.GetCart(pb.GetCartRequest(cart_id=cart_id), metadata=md),
        "AddItem": lambda stub, md: stub.AddItem(
            pb.AddItemRequest(cart_id=cart_id, sku="SKU-1", quantity=1, idempotency_key="intruder"), metadata=md
        ),
        "UpdateItemQuantity": lambda stub, md: stub.UpdateItemQuantity(
            pb.UpdateItemQuantityRequest(cart_id=cart_id, sku="SKU-0", quantity=5), metadata=md
        ),
        "RemoveItem": lambda stub, md: stub.RemoveItem(pb.RemoveItemRequest(cart_id=cart_id, sku="SKU-0"), metadata=md),
        "ClearCart": lambda stub, md: stub.ClearCart(pb.ClearCartRequest(cart_id=cart_id), metadata=md),
    }


@pytest.mark.parametrize("intruder", ["user bob", "session c"])
async def test_another_user_or_session_gets_not_found_on_every_rpc_and_changes_nothing(
    mesh: Mesh, intruder: str, raw_redis: redis.Redis, redis_prefix: str, database_url: str
):
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=2, idempotency_key="k"), metadata=ALICE
    )
    metadata = as_customer("bob") if intruder == "user bob" else session_of("c")
    before = await redis_snapshot(raw_redis, redis_prefix + "cart:")
    for name, call in _customer_calls(cart.cart_id).items():
        failure = await expect_failure(call(mesh.cart, metadata))
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "CART_NOT_FOUND"), name
    create = await expect_failure(mesh.cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=metadata))
    assert (create.code, create.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")
    convert = await expect_failure(
        mesh.cart.ConvertCart(pb.ConvertCartRequest(cart_id=cart.cart_id, checkout_id="co-x"), metadata=metadata)
    )
    assert (convert.code, convert.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")
    # a merge of her cart: bob's token names no session owning it; a session has no user to merge into
    merge = await expect_failure(
        mesh.cart.MergeCarts(
            pb.MergeCartsRequest(source_cart_id=cart.cart_id, user_id="bob" if intruder == "user bob" else "c"),
            metadata=metadata,
        )
    )
    expected = (
        (grpc.StatusCode.NOT_FOUND, "CART_NOT_FOUND")
        if intruder == "user bob"
        else (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")
    )
    assert (merge.code, merge.reason) == expected
    assert await redis_snapshot(raw_redis, redis_prefix + "cart:") == before  # not even the TTL moved
    assert await _history_rows(database_url) == (0, 0)
    # the owner and a trusted service still see it unchanged
    for md in (ALICE, as_service()):
        got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=md)).cart
        assert [(line.sku, line.quantity) for line in got.lines] == [("SKU-0", 2)]


async def test_a_caller_without_a_token_is_unauthenticated(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    failure = await expect_failure(mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_MISSING")


BAD_REQUESTS = [
    ("CreateCart", pb.CreateCartRequest(), {"owner"}),
    ("CreateCart", pb.CreateCartRequest(user_id="bad id!"), {"user_id"}),
    ("GetCart", pb.GetCartRequest(cart_id=""), {"cart_id"}),
    ("GetCart", pb.GetCartRequest(cart_id="x" * 65), {"cart_id"}),
    ("AddItem", pb.AddItemRequest(), {"cart_id", "sku", "quantity", "idempotency_key"}),
    ("AddItem", pb.AddItemRequest(cart_id="{cart}", sku="SKU-0", quantity=100, idempotency_key="k"), {"quantity"}),
    (
        "AddItem",
        pb.AddItemRequest(cart_id="{cart}", sku="SKU 0", quantity=0, idempotency_key="k k"),
        {"sku", "quantity", "idempotency_key"},
    ),
    ("UpdateItemQuantity", pb.UpdateItemQuantityRequest(cart_id="{cart}", sku="SKU-0"), {"quantity"}),
    ("UpdateItemQuantity", pb.UpdateItemQuantityRequest(cart_id="{cart}", sku="SKU-0", quantity=-1), {"quantity"}),
    ("UpdateItemQuantity", pb.UpdateItemQuantityRequest(cart_id="{cart}", sku="", quantity=100), {"sku", "quantity"}),
    ("RemoveItem", pb.RemoveItemRequest(cart_id="{cart}"), {"sku"}),
    ("ClearCart", pb.ClearCartRequest(), {"cart_id"}),
    ("MergeCarts", pb.MergeCartsRequest(), {"source_cart_id", "user_id"}),
    ("MergeCarts", pb.MergeCartsRequest(source_cart_id="{cart}", user_id="a b"), {"user_id"}),
    ("ConvertCart", pb.ConvertCartRequest(cart_id="{cart}"), {"checkout_id"}),
    ("ConvertCart", pb.ConvertCartRequest(cart_id="{cart}", checkout_id="c", order_id="bad/order"), {"order_id"}),
]


@pytest.mark.parametrize(("rpc", "request_message", "fields"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_naming_each_field_and_writes_nothing(
    mesh: Mesh, rpc, request_message, fields, raw_redis: redis.Redis, redis_prefix: str, database_url: str
):
    cart = await new_cart(mesh.cart)
    await mesh.cart.AddItem(
        pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=2, idempotency_key="k"), metadata=ALICE
    )
    request = type(request_message)()
    request.CopyFrom(request_message)
    if getattr(request, "cart_id", None) == "{cart}":
        request.cart_id = cart.cart_id
    if getattr(request, "source_cart_id", None) == "{cart}":
        request.source_cart_id = cart.cart_id
    before = await redis_snapshot(raw_redis, redis_prefix + "cart:")
    metadata = as_service() if rpc == "ConvertCart" else ALICE
    failure = await expect_failure(getattr(mesh.cart, rpc)(request, metadata=metadata))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(failure.field_violations) == fields
    assert await redis_snapshot(raw_redis, redis_prefix + "cart:") == before
    assert await _history_rows(database_url) == (0, 0)
