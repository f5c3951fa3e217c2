"""Catalogue RPCs: upsert, batch reads through the Redis cache, paging, availability."""

from __future__ import annotations

import grpc
import redis.asyncio as redis

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2, money_pb2
from tests.integration.inventory.conftest import create_product, stock_figures
from tests.rpc_errors import expect_failure


async def test_upsert_creates_then_updates_and_is_idempotent(inventory):
    request = pb.UpsertProductRequest(
        sku="MUG-1", name="Mug", price=money_pb2.Money(currency_code="USD", amount_minor=1299), weight_grams=350
    )

    created = await inventory.UpsertProduct(request)
    replayed = await inventory.UpsertProduct(request)
    renamed = await inventory.UpsertProduct(
        pb.UpsertProductRequest(
            sku="MUG-1", name="Big mug", price=money_pb2.Money(currency_code="USD", amount_minor=1499), weight_grams=400
        )
    )

    assert created.created and not replayed.created and not renamed.created
    assert replayed.product == created.product  # same values: not even update_time moves
    assert (renamed.product.name, renamed.product.price.amount_minor, renamed.product.weight_grams) == (
        "Big mug",
        1499,
        400,
    )


async def test_get_product_is_served_from_the_cache_and_refreshed_after_a_change(inventory, redis_url, redis_prefix):
    await create_product(inventory, "A-1", stock=5)
    client = redis.Redis.from_url(redis_url)
    try:
        first = (await inventory.GetProduct(pb.GetProductRequest(sku="A-1"))).product
        cached_keys = [key async for key in client.scan_iter(match=f"{redis_prefix}inventory:product:*")]
        await inventory.AdjustStock(
            pb.AdjustStockRequest(
                sku="A-1", delta=3, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="more"
            )
        )
        keys_after_change = [key async for key in client.scan_iter(match=f"{redis_prefix}inventory:product:*")]
        second = (await inventory.GetProduct(pb.GetProductRequest(sku="A-1"))).product
    finally:
        await client.aclose()

    assert cached_keys == [f"{redis_prefix}inventory:product:A-1".encode()]
    assert keys_after_change == []  # invalidated by the stock change
    assert (first.stock_on_hand, second.stock_on_hand) == (5, 8)


async def test_batch_get_keeps_request_order_and_lists_missing_skus(inventory):
    for sku in ("B-1", "A-1", "C-1"):
        await create_product(inventory, sku, stock=1)
    await inventory.GetProduct(pb.GetProductRequest(sku="A-1"))  # one of them cached, the others not

    response = await inventory.BatchGetProducts(pb.BatchGetProductsRequest(skus=["C-1", "GHOST", "A-1", "B-1"]))

    assert [p.sku for p in response.products] == ["C-1", "A-1", "B-1"]
    assert list(response.missing_skus) == ["GHOST"]


async def test_get_of_an_unknown_product_is_not_found(inventory):
    failure = await expect_failure(inventory.GetProduct(pb.GetProductRequest(sku="GHOST")))
    assert (failure.code, failure.reason, failure.metadata) == (
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
        {"sku": "GHOST"},
    )


async def test_list_products_pages_through_everything_in_sku_order_and_filters_in_stock(inventory):
    for index in range(7):
        await create_product(inventory, f"P-{index}", stock=index % 2)

    pages, token = [], ""
    while True:
        page = await inventory.ListProducts(pb.ListProductsRequest(page_size=3, page_token=token))
        pages.append([p.sku for p in page.products])
        token = page.next_page_token
        if not token:
            break
    in_stock = await inventory.ListProducts(pb.ListProductsRequest(in_stock_only=True))
    wrong_filter = await expect_failure(
        inventory.ListProducts(
            pb.ListProductsRequest(
                page_size=3,
                page_token=(await inventory.ListProducts(pb.ListProductsRequest(page_size=3))).next_page_token,
                in_stock_only=True,
            )
        )
    )

    assert pages == [["P-0", "P-1", "P-2"], ["P-3", "P-4", "P-5"], ["P-6"]]
    assert [p.sku for p in in_stock.products] == ["P-1", "P-3", "P-5"]
    assert wrong_filter.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_check_availability_reports_each_line_without_reserving(inventory, store):
    await create_product(inventory, "A-1", stock=5)
    await create_product(inventory, "B-1", stock=1)

    response = await inventory.CheckAvailability(
        pb.CheckAvailabilityRequest(
            items=[
                line_item_pb2.LineItem(sku="A-1", quantity=5),
                line_item_pb2.LineItem(sku="B-1", quantity=2),
            ]
        )
    )

    assert [(i.sku, i.requested, i.available, i.sufficient) for i in response.items] == [
        ("A-1", 5, 5, True),
        ("B-1", 2, 1, False),
    ]
    assert not response.all_available
    assert (await stock_figures(store, "A-1")).reserved == 0
