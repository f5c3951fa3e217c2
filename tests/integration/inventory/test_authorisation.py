"""Who may call inventory: the catalogue reads are open to anyone (shoppers browse), every write, every
reservation RPC and GetReservation are for trusted mesh callers only. Each trusted-only RPC, called in
the order a checkout's life calls them, is refused to nobody (UNAUTHENTICATED, AUTH_TOKEN_MISSING), to a
signed-in customer and to an anonymous session (PERMISSION_DENIED, TRUSTED_CALLER_REQUIRED) without
changing anything, and then answers a mesh service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from service_runtime.server import RunningService
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2, money_pb2
from tests.identity import Metadata, as_customer, as_service, as_session
from tests.integration.inventory.conftest import Store
from tests.rpc_errors import expect_failure

SKU = "AUTHZ-1"
ONE = [line_item_pb2.LineItem(sku=SKU, quantity=1)]
SERVICE = as_service("gateway")
REFUSED: dict[str, tuple[Metadata, grpc.StatusCode, str]] = {
    "nobody": ((), grpc.StatusCode.UNAUTHENTICATED, "AUTH_TOKEN_MISSING"),
    "customer": (as_customer("mallory"), grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED"),
    "session": (as_session("sess-mallory"), grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED"),
}

Call = Callable[[Metadata], Awaitable[Any]]


@pytest.fixture
async def stub(inventory_service: RunningService) -> AsyncIterator[pb_grpc.InventoryServiceAsyncStub]:
    """A stub that sends only the metadata each call names (no service token of its own)."""
    async with grpc.aio.insecure_channel(inventory_service.address) as channel:
        yield pb_grpc.InventoryServiceStub(channel)


def trusted_only_calls(stub: pb_grpc.InventoryServiceAsyncStub) -> list[tuple[str, Call]]:
    """Every trusted-only RPC, in an order in which each succeeds for a mesh service."""
    price = money_pb2.Money(currency_code="USD", amount_minor=500)
    return [
        (
            "UpsertProduct",
            lambda m: stub.UpsertProduct(
                pb.UpsertProductRequest(sku=SKU, name="Mug", price=price, weight_grams=100), metadata=m
            ),
        ),
        (
            "AdjustStock",
            lambda m: stub.AdjustStock(
                pb.AdjustStockRequest(
                    sku=SKU, delta=10, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key="authz-in"
                ),
                metadata=m,
            ),
        ),
        (
            "ReserveInventory",
            lambda m: stub.ReserveInventory(pb.ReserveInventoryRequest(checkout_id="c1", items=ONE), metadata=m),
        ),
        (
            "ExtendReservation",
            lambda m: stub.ExtendReservation(
                pb.ExtendReservationRequest(checkout_id="c1", ttl=duration_pb2.Duration(seconds=600)), metadata=m
            ),
        ),
        ("GetReservation", lambda m: stub.GetReservation(pb.GetReservationRequest(checkout_id="c1"), metadata=m)),
        (
            "ConfirmReservation",
            lambda m: stub.ConfirmReservation(
                pb.ConfirmReservationRequest(checkout_id="c1", order_id="o1"), metadata=m
            ),
        ),
        (
            "ReturnStock",
            lambda m: stub.ReturnStock(pb.ReturnStockRequest(order_id="o1", items=ONE, reason="returned"), metadata=m),
        ),
        (
            "ReleaseReservation",
            lambda m: stub.ReleaseReservation(
                pb.ReleaseReservationRequest(checkout_id="c2", reason="gone"), metadata=m
            ),
        ),
        ("DiscontinueProduct", lambda m: stub.DiscontinueProduct(pb.DiscontinueProductRequest(sku=SKU), metadata=m)),
    ]


async def _state(store: Store) -> tuple[object, ...]:
    async def read(tx: Any) -> tuple[object, ...]:
        return (
            await tx.products([SKU]),
            await tx.reservation("c1", lock=False),
            await tx.reservation("c2", lock=False),
            await tx.stock_discrepancies(),
        )

    return await store.read(read)


async def test_every_trusted_only_rpc_refuses_everyone_but_a_mesh_service_and_changes_nothing(
    stub: pb_grpc.InventoryServiceAsyncStub, store: Store
):
    problems: list[str] = []
    for name, call in trusted_only_calls(stub):
        before = await _state(store)
        for caller, (metadata, code, reason) in REFUSED.items():
            failure = await expect_failure(call(metadata))
            if (failure.code, failure.reason) != (code, reason):
                problems.append(
                    f"{name} as {caller}: {failure.code.name} {failure.reason}, expected {code.name} {reason}"
                )
        if await _state(store) != before:
            problems.append(f"{name}: a refused call changed the stock or the reservations")
        await call(SERVICE)  # a mesh service may: raises if refused
    assert not problems, "\n".join(problems)
    product = (await store.read(lambda tx: tx.products([SKU])))[SKU]
    assert (product.stock_on_hand, product.reserved, product.discontinued_at is not None) == (10, 0, True)


async def test_a_customer_refused_a_write_is_refused_before_its_request_is_read(
    stub: pb_grpc.InventoryServiceAsyncStub,
):
    """A customer learns nothing from a bad request either: the caller check comes before validation."""
    failure = await expect_failure(
        stub.AdjustStock(pb.AdjustStockRequest(sku="", delta=0), metadata=as_customer("mallory"))
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")


async def test_the_catalogue_reads_are_open_to_shoppers_and_to_callers_with_no_identity(
    stub: pb_grpc.InventoryServiceAsyncStub,
):
    price = money_pb2.Money(currency_code="USD", amount_minor=500)
    await stub.UpsertProduct(
        pb.UpsertProductRequest(sku=SKU, name="Mug", price=price, weight_grams=100), metadata=SERVICE
    )
    for metadata in ((), as_customer("alice"), as_session("sess-alice")):
        assert (await stub.GetProduct(pb.GetProductRequest(sku=SKU), metadata=metadata)).product.sku == SKU
        batch = await stub.BatchGetProducts(pb.BatchGetProductsRequest(skus=[SKU]), metadata=metadata)
        assert [product.sku for product in batch.products] == [SKU]
        page = await stub.ListProducts(pb.ListProductsRequest(), metadata=metadata)
        assert SKU in [product.sku for product in page.products]
        availability = await stub.CheckAvailability(pb.CheckAvailabilityRequest(items=ONE), metadata=metadata)
        assert not availability.all_available  # no stock yet: answered, not refused
