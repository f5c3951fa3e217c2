"""Concurrent changes to one cart: every AddItem is one atomic script, so none is lost and limits hold."""

from __future__ import annotations

import asyncio

import grpc

from shop.cart.v1 import cart_service_pb2 as pb
from tests.identity import as_customer
from tests.integration.cart.conftest import Mesh, add_product, new_cart
from tests.rpc_errors import failure_of

ALICE = as_customer("alice")


async def _outcomes(calls) -> tuple[int, list[str]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    accepted = sum(1 for result in results if isinstance(result, pb.AddItemResponse))
    refused = [failure_of(result).reason for result in results if isinstance(result, grpc.aio.AioRpcError)]
    unexpected = [result for result in results if not isinstance(result, (pb.AddItemResponse, grpc.aio.AioRpcError))]
    assert not unexpected, unexpected
    return accepted, refused


async def test_100_concurrent_adds_of_one_unit_stop_at_99_without_a_lost_update(mesh: Mesh):
    cart = await new_cart(mesh.cart)
    calls = [
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku="SKU-0", quantity=1, idempotency_key=f"k{index}"),
            metadata=ALICE,
        )
        for index in range(100)
    ]
    accepted, refused = await _outcomes(calls)
    assert (accepted, refused) == (99, ["LINE_QUANTITY_LIMIT"])
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert [(line.sku, line.quantity) for line in got.lines] == [("SKU-0", 99)]


async def test_150_concurrent_adds_of_distinct_skus_make_exactly_100_lines(mesh: Mesh):
    skus = [f"MANY-{index:03d}" for index in range(150)]
    for sku in skus:
        await add_product(mesh.inventory, sku)
    cart = await new_cart(mesh.cart)
    calls = [
        mesh.cart.AddItem(
            pb.AddItemRequest(cart_id=cart.cart_id, sku=sku, quantity=1, idempotency_key=f"k-{sku}"), metadata=ALICE
        )
        for sku in skus
    ]
    accepted, refused = await _outcomes(calls)
    assert accepted == 100 and refused == ["CART_LINE_LIMIT"] * 50
    got = (await mesh.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert len(got.lines) == 100 and len({line.sku for line in got.lines}) == 100
    assert got.item_count == 100 and got.subtotal.amount_minor == 100 * 1000
