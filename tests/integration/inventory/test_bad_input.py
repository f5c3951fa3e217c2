"""Bad input gets INVALID_ARGUMENT with a field violation per bad field, and nothing is written."""

from __future__ import annotations

import base64

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2
from psycopg import sql

from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.type.v1 import line_item_pb2, money_pb2
from tests.integration.inventory.conftest import create_product, invariant_violations, stock_figures
from tests.rpc_errors import expect_failure


def line(sku: str = "A-1", quantity: int = 1) -> line_item_pb2.LineItem:
    return line_item_pb2.LineItem(sku=sku, quantity=quantity)


async def row_counts(database_url: str) -> dict[str, int]:
    """Rows in every table of the `inventory` schema: equal before and after a call means it inserted and
    deleted nothing, whichever table it might have touched."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'inventory' ORDER BY tablename"
        )
        tables = [name for (name,) in await cursor.fetchall()]
        counts = {}
        for table in tables:
            cursor = await connection.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("inventory", table))
            )
            (counts[table],) = await cursor.fetchone()  # type: ignore[misc]
    assert {"products", "reservations", "reservation_lines", "stock_movements"} <= counts.keys(), counts
    return counts


RESERVE_CASES = {
    "zero quantity": (pb.ReserveInventoryRequest(checkout_id="k", items=[line(quantity=0)]), "items[0].quantity"),
    "negative quantity": (pb.ReserveInventoryRequest(checkout_id="k", items=[line(quantity=-3)]), "items[0].quantity"),
    "huge quantity": (
        pb.ReserveInventoryRequest(checkout_id="k", items=[line(quantity=2**31 - 1)]),
        "items[0].quantity",
    ),
    "no lines": (pb.ReserveInventoryRequest(checkout_id="k", items=[]), "items"),
    "too many lines": (
        pb.ReserveInventoryRequest(checkout_id="k", items=[line(f"S-{i}") for i in range(101)]),
        "items",
    ),
    "duplicate lines": (pb.ReserveInventoryRequest(checkout_id="k", items=[line(), line()]), "items[1].sku"),
    "unknown sku": (pb.ReserveInventoryRequest(checkout_id="k", items=[line(), line("GHOST")]), "items[1].sku"),
    "missing checkout id": (pb.ReserveInventoryRequest(items=[line()]), "checkout_id"),
    "over-long checkout id": (pb.ReserveInventoryRequest(checkout_id="k" * 65, items=[line()]), "checkout_id"),
    "checkout id with spaces": (pb.ReserveInventoryRequest(checkout_id="a b", items=[line()]), "checkout_id"),
    "empty sku": (pb.ReserveInventoryRequest(checkout_id="k", items=[line("")]), "items[0].sku"),
    "zero ttl": (pb.ReserveInventoryRequest(checkout_id="k", items=[line()], ttl=duration_pb2.Duration()), "ttl"),
    "ttl of a year": (
        pb.ReserveInventoryRequest(checkout_id="k", items=[line()], ttl=duration_pb2.Duration(seconds=365 * 86400)),
        "ttl",
    ),
}


@pytest.mark.parametrize("case", RESERVE_CASES, ids=list(RESERVE_CASES))
async def test_bad_reservation_is_invalid_argument_and_reserves_nothing(inventory, store, database_url, case):
    await create_product(inventory, "A-1", stock=10)
    request, field = RESERVE_CASES[case]
    before = await row_counts(database_url)

    failure = await expect_failure(inventory.ReserveInventory(request))

    after = await row_counts(database_url)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in failure.field_violations, failure.field_violations
    assert after == before
    assert (await stock_figures(store, "A-1")).reserved == 0
    missing = await expect_failure(inventory.GetReservation(pb.GetReservationRequest(checkout_id="k")))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert await invariant_violations(store) == []


def usd(amount: int, currency: str = "USD") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=amount)


OTHER_CASES = {
    "upsert without price": ("UpsertProduct", pb.UpsertProductRequest(sku="N-1", name="x", weight_grams=1), "price"),
    "upsert negative price": (
        "UpsertProduct",
        pb.UpsertProductRequest(sku="N-1", name="x", price=usd(-1)),
        "price.amount_minor",
    ),
    "upsert other currency": (
        "UpsertProduct",
        pb.UpsertProductRequest(sku="N-1", name="x", price=usd(1, "EUR")),
        "price.currency_code",
    ),
    "upsert blank name": ("UpsertProduct", pb.UpsertProductRequest(sku="N-1", name=" ", price=usd(1)), "name"),
    "upsert long name": ("UpsertProduct", pb.UpsertProductRequest(sku="N-1", name="n" * 201, price=usd(1)), "name"),
    "upsert heavy": (
        "UpsertProduct",
        pb.UpsertProductRequest(sku="N-1", name="x", price=usd(1), weight_grams=10**7),
        "weight_grams",
    ),
    "upsert bad sku": ("UpsertProduct", pb.UpsertProductRequest(sku="N 1", name="x", price=usd(1)), "sku"),
    "adjust zero": (
        "AdjustStock",
        pb.AdjustStockRequest(sku="A-1", delta=0, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="i"),
        "delta",
    ),
    "adjust huge": (
        "AdjustStock",
        pb.AdjustStockRequest(
            sku="A-1", delta=2**31 - 1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="i"
        ),
        "delta",
    ),
    "adjust no reason": ("AdjustStock", pb.AdjustStockRequest(sku="A-1", delta=1, idempotency_key="i"), "reason"),
    "adjust no key": (
        "AdjustStock",
        pb.AdjustStockRequest(sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED),
        "idempotency_key",
    ),
    "adjust long note": (
        "AdjustStock",
        pb.AdjustStockRequest(
            sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, note="n" * 501, idempotency_key="i"
        ),
        "note",
    ),
    "adjust over-long idempotency key": (
        "AdjustStock",
        pb.AdjustStockRequest(
            sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="i" * 129
        ),
        "idempotency_key",
    ),
    "adjust idempotency key with NUL": (
        "AdjustStock",
        pb.AdjustStockRequest(
            sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="key\x00"
        ),
        "idempotency_key",
    ),
    "adjust note with NUL": (
        "AdjustStock",
        pb.AdjustStockRequest(
            sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, note="pallet\x00 3", idempotency_key="i"
        ),
        "note",
    ),
    "adjust received but negative": (
        "AdjustStock",
        pb.AdjustStockRequest(sku="A-1", delta=-1, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="i"),
        "reason",
    ),
    "adjust damaged but positive": (
        "AdjustStock",
        pb.AdjustStockRequest(sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_DAMAGED, idempotency_key="i"),
        "reason",
    ),
    "adjust lost but positive": (
        "AdjustStock",
        pb.AdjustStockRequest(sku="A-1", delta=1, reason=pb.STOCK_ADJUSTMENT_REASON_LOST, idempotency_key="i"),
        "reason",
    ),
    "upsert name with NUL": (
        "UpsertProduct",
        pb.UpsertProductRequest(sku="N-1", name="Mug\x00", price=usd(1)),
        "name",
    ),
    "confirm without order": ("ConfirmReservation", pb.ConfirmReservationRequest(checkout_id="k"), "order_id"),
    "release without reason": ("ReleaseReservation", pb.ReleaseReservationRequest(checkout_id="k"), "reason"),
    "release over-long reason": (
        "ReleaseReservation",
        pb.ReleaseReservationRequest(checkout_id="k", reason="r" * 201),
        "reason",
    ),
    "release reason with NUL": (
        "ReleaseReservation",
        pb.ReleaseReservationRequest(checkout_id="k", reason="timeout\x00"),
        "reason",
    ),
    "extend without ttl": ("ExtendReservation", pb.ExtendReservationRequest(checkout_id="k"), "ttl"),
    "extend zero ttl": (
        "ExtendReservation",
        pb.ExtendReservationRequest(checkout_id="k", ttl=duration_pb2.Duration(seconds=0)),
        "ttl",
    ),
    "extend ttl of two days": (
        "ExtendReservation",
        pb.ExtendReservationRequest(checkout_id="k", ttl=duration_pb2.Duration(seconds=2 * 86400)),
        "ttl",
    ),
    "return without lines": ("ReturnStock", pb.ReturnStockRequest(order_id="o", reason="r"), "items"),
    "return duplicate lines": (
        "ReturnStock",
        pb.ReturnStockRequest(order_id="o", items=[line(), line()], reason="r"),
        "items[1].sku",
    ),
    "return zero quantity": (
        "ReturnStock",
        pb.ReturnStockRequest(order_id="o", items=[line(quantity=0)], reason="r"),
        "items[0].quantity",
    ),
    "return over-long reason": (
        "ReturnStock",
        pb.ReturnStockRequest(order_id="o", items=[line()], reason="r" * 201),
        "reason",
    ),
    "check availability unknown sku": (
        "CheckAvailability",
        pb.CheckAvailabilityRequest(items=[line("GHOST")]),
        "items[0].sku",
    ),
    "check availability duplicate lines": (
        "CheckAvailability",
        pb.CheckAvailabilityRequest(items=[line(), line()]),
        "items[1].sku",
    ),
    "check availability too many lines": (
        "CheckAvailability",
        pb.CheckAvailabilityRequest(items=[line(f"S-{i}") for i in range(101)]),
        "items",
    ),
    "check availability huge quantity": (
        "CheckAvailability",
        pb.CheckAvailabilityRequest(items=[line(quantity=10_001)]),
        "items[0].quantity",
    ),
    "batch get with duplicates": ("BatchGetProducts", pb.BatchGetProductsRequest(skus=["A-1", "A-1"]), "skus[1]"),
    "batch get of nothing": ("BatchGetProducts", pb.BatchGetProductsRequest(skus=[]), "skus"),
    "batch get of too many": (
        "BatchGetProducts",
        pb.BatchGetProductsRequest(skus=[f"S-{i}" for i in range(101)]),
        "skus",
    ),
    "list with a negative page size": ("ListProducts", pb.ListProductsRequest(page_size=-1), "page_size"),
    "list with forged token": ("ListProducts", pb.ListProductsRequest(page_token="not-a-token"), "page_token"),
    "list with a token naming a NUL sku": (
        "ListProducts",
        pb.ListProductsRequest(page_token=base64.urlsafe_b64encode(b"v1|0|\x00").decode().rstrip("=")),
        "page_token",
    ),
}


@pytest.mark.parametrize("case", OTHER_CASES, ids=list(OTHER_CASES))
async def test_bad_input_to_any_rpc_is_invalid_argument_and_writes_nothing(inventory, store, database_url, case):
    await create_product(inventory, "A-1", stock=10)
    method, request, field = OTHER_CASES[case]
    before = await row_counts(database_url)

    failure = await expect_failure(getattr(inventory, method)(request))

    after = await row_counts(database_url)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in failure.field_violations, failure.field_violations
    assert after == before
    product = (await inventory.GetProduct(pb.GetProductRequest(sku="A-1"))).product
    assert (product.stock_on_hand, product.reserved) == (10, 0)
    assert (
        await expect_failure(inventory.GetProduct(pb.GetProductRequest(sku="N-1")))
    ).code == grpc.StatusCode.NOT_FOUND
    assert await invariant_violations(store) == []


async def test_each_adjustment_reason_accepts_the_signs_it_allows(inventory, store):
    """RECEIVED adds, DAMAGED and LOST take away, RECOUNT and OTHER go either way."""
    await create_product(inventory, "A-1", stock=10)
    allowed = [
        (pb.STOCK_ADJUSTMENT_REASON_RECEIVED, 1),
        (pb.STOCK_ADJUSTMENT_REASON_RECOUNT, 1),
        (pb.STOCK_ADJUSTMENT_REASON_RECOUNT, -1),
        (pb.STOCK_ADJUSTMENT_REASON_DAMAGED, -1),
        (pb.STOCK_ADJUSTMENT_REASON_LOST, -1),
        (pb.STOCK_ADJUSTMENT_REASON_OTHER, 1),
        (pb.STOCK_ADJUSTMENT_REASON_OTHER, -1),
    ]

    stock = []
    for index, (reason, delta) in enumerate(allowed):
        response = await inventory.AdjustStock(
            pb.AdjustStockRequest(sku="A-1", delta=delta, reason=reason, idempotency_key=f"signed-{index}")
        )
        stock.append(response.product.stock_on_hand)

    assert stock == [11, 12, 11, 10, 9, 10, 9]
    assert await invariant_violations(store) == []


async def test_adjustment_below_reserved_is_refused_with_the_figures(inventory, store):
    await create_product(inventory, "A-1", stock=10)
    await inventory.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="k", items=[line(quantity=8)]))

    failure = await expect_failure(
        inventory.AdjustStock(
            pb.AdjustStockRequest(sku="A-1", delta=-3, reason=pb.STOCK_ADJUSTMENT_REASON_DAMAGED, idempotency_key="d")
        )
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STOCK_BELOW_RESERVED")
    assert failure.metadata == {"sku": "A-1", "stockOnHand": "10", "reserved": "8"}
    assert await invariant_violations(store) == []


async def test_adjustment_of_an_unknown_sku_is_not_found(inventory):
    failure = await expect_failure(
        inventory.AdjustStock(
            pb.AdjustStockRequest(sku="GHOST", delta=3, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="g")
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")


async def test_adjustment_key_reused_for_another_change_is_refused(inventory, store):
    await create_product(inventory, "A-1", stock=0)
    await inventory.AdjustStock(
        pb.AdjustStockRequest(sku="A-1", delta=3, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="k")
    )

    failure = await expect_failure(
        inventory.AdjustStock(
            pb.AdjustStockRequest(sku="A-1", delta=4, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="k")
        )
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert (await stock_figures(store, "A-1")).stock_on_hand == 3
