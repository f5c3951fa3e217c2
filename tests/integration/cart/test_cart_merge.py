"""MergeCarts at sign-in: quantities combined and capped, the line limit, replay, and who may merge."""

from __future__ import annotations

import grpc
import pytest

from cart_svc.__main__ import SPEC as CART
from service_runtime.identity import AUTHORIZATION
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from tests.identity import as_customer, as_service, as_session, customer_token
from tests.integration.cart.conftest import NO_PRICE_CACHE, Mesh
from tests.rpc_errors import expect_failure

ALICE_FROM_S1 = ((AUTHORIZATION, f"Bearer {customer_token(sub='alice', sid='s1')}"),)


async def _cart_with(cart: pb_grpc.CartServiceAsyncStub, metadata, owner: dict[str, str], lines) -> str:
    created = (await cart.CreateCart(pb.CreateCartRequest(**owner), metadata=metadata)).cart
    for sku, quantity in lines:
        await cart.AddItem(
            pb.AddItemRequest(cart_id=created.cart_id, sku=sku, quantity=quantity, idempotency_key=f"k-{sku}"),
            metadata=metadata,
        )
    return created.cart_id


async def test_merge_combines_caps_adds_and_replays(mesh: Mesh):
    source = await _cart_with(mesh.cart, as_session("s1"), {"session_id": "s1"}, [("SKU-0", 60), ("SKU-1", 2)])
    target = await _cart_with(mesh.cart, as_customer("alice"), {"user_id": "alice"}, [("SKU-0", 50), ("SKU-2", 1)])

    merged = await mesh.cart.MergeCarts(
        pb.MergeCartsRequest(source_cart_id=source, user_id="alice"), metadata=ALICE_FROM_S1
    )
    assert not merged.replayed and merged.cart.cart_id == target
    assert [(m.sku, m.source_quantity, m.resulting_quantity, m.outcome) for m in merged.merged_lines] == [
        ("SKU-0", 60, 99, pb.MERGE_OUTCOME_CAPPED),
        ("SKU-1", 2, 2, pb.MERGE_OUTCOME_ADDED),
    ]
    assert [(line.sku, line.quantity) for line in merged.cart.lines] == [("SKU-0", 99), ("SKU-2", 1), ("SKU-1", 2)]
    assert merged.cart.subtotal.amount_minor == 99 * 1000 + 1002 + 2 * 1001

    replay = await mesh.cart.MergeCarts(
        pb.MergeCartsRequest(source_cart_id=source, user_id="alice"), metadata=ALICE_FROM_S1
    )
    assert replay.replayed and replay.cart.etag == merged.cart.etag
    assert [(line.sku, line.quantity) for line in replay.cart.lines] == [("SKU-0", 99), ("SKU-2", 1), ("SKU-1", 2)]

    gone = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=source), metadata=as_session("s1"))).cart
    assert (gone.status, gone.merged_into_cart_id) == (pb.CART_STATUS_MERGED, target)
    closed = await expect_failure(
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=source, sku="SKU-0", quantity=1, idempotency_key="late"),
            metadata=as_session("s1"),
        )
    )
    assert (closed.reason, closed.metadata["status"]) == ("CART_NOT_ACTIVE", "CART_STATUS_MERGED")


async def test_merge_creates_the_users_cart_when_there_is_none(mesh: Mesh):
    source = await _cart_with(mesh.cart, as_session("s1"), {"session_id": "s1"}, [("SKU-1", 3)])
    merged = await mesh.cart.MergeCarts(
        pb.MergeCartsRequest(source_cart_id=source, user_id="alice"), metadata=ALICE_FROM_S1
    )
    assert merged.cart.user_id == "alice" and [(line.sku, line.quantity) for line in merged.cart.lines] == [
        ("SKU-1", 3)
    ]
    assert merged.merged_lines[0].outcome == pb.MERGE_OUTCOME_ADDED


async def test_merge_drops_lines_beyond_the_line_limit(start_service, mesh: Mesh):
    limited = await start_service(CART, INVENTORY_TARGET=mesh.inventory_address, CART_MAX_LINES="2")
    async with grpc.aio.insecure_channel(limited.address) as channel:
        cart = pb_grpc.CartServiceStub(channel)
        source = await _cart_with(cart, as_session("s1"), {"session_id": "s1"}, [("SKU-1", 1), ("SKU-2", 1)])
        await _cart_with(cart, as_customer("alice"), {"user_id": "alice"}, [("SKU-0", 1)])
        merged = await cart.MergeCarts(
            pb.MergeCartsRequest(source_cart_id=source, user_id="alice"), metadata=ALICE_FROM_S1
        )
        assert [(m.sku, m.resulting_quantity, m.outcome) for m in merged.merged_lines] == [
            ("SKU-1", 1, pb.MERGE_OUTCOME_ADDED),
            ("SKU-2", 0, pb.MERGE_OUTCOME_DROPPED_LINE_LIMIT),
        ]
        assert [line.sku for line in merged.cart.lines] == ["SKU-0", "SKU-1"]


async def test_only_the_signed_in_owner_of_the_session_may_merge(mesh: Mesh):
    source = await _cart_with(mesh.cart, as_session("s1"), {"session_id": "s1"}, [("SKU-1", 1)])
    request = pb.MergeCartsRequest(source_cart_id=source, user_id="alice")
    mismatch = await expect_failure(
        mesh.cart.MergeCarts(pb.MergeCartsRequest(source_cart_id=source, user_id="bob"), metadata=ALICE_FROM_S1)
    )
    assert (mismatch.code, mismatch.reason) == (grpc.StatusCode.PERMISSION_DENIED, "OWNER_MISMATCH")
    for metadata in (
        as_customer("alice"),  # no sid: the token does not name the session
        ((AUTHORIZATION, f"Bearer {customer_token(sub='alice', sid='s2')}"),),  # another session
    ):
        failure = await expect_failure(mesh.cart.MergeCarts(request, metadata=metadata))
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "CART_NOT_FOUND")
    user_cart = await _cart_with(mesh.cart, as_customer("carol"), {"user_id": "carol"}, [])
    not_anonymous = await expect_failure(
        mesh.cart.MergeCarts(pb.MergeCartsRequest(source_cart_id=user_cart, user_id="alice"), metadata=as_service())
    )
    assert (not_anonymous.code, not_anonymous.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SOURCE_NOT_ANONYMOUS")
    # nothing moved
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=source), metadata=as_session("s1"))).cart
    assert got.status == pb.CART_STATUS_ACTIVE and [(line.sku, line.quantity) for line in got.lines] == [("SKU-1", 1)]


@pytest.mark.parametrize("cart_env", [NO_PRICE_CACHE])
async def test_merge_drops_lines_whose_product_was_discontinued(mesh: Mesh):
    from shop.inventory.v1 import inventory_service_pb2 as inventory_pb

    source = await _cart_with(mesh.cart, as_session("s1"), {"session_id": "s1"}, [("SKU-1", 2), ("SKU-2", 1)])
    await mesh.inventory.DiscontinueProduct(inventory_pb.DiscontinueProductRequest(sku="SKU-1"))
    merged = await mesh.cart.MergeCarts(
        pb.MergeCartsRequest(source_cart_id=source, user_id="alice"), metadata=ALICE_FROM_S1
    )
    assert [(m.sku, m.resulting_quantity, m.outcome) for m in merged.merged_lines] == [
        ("SKU-1", 0, pb.MERGE_OUTCOME_DROPPED_UNAVAILABLE),
        ("SKU-2", 1, pb.MERGE_OUTCOME_ADDED),
    ]
    assert [line.sku for line in merged.cart.lines] == ["SKU-2"]
