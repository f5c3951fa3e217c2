"""Fixtures for inventory tests: a running inventory service, a stub, and invariant checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inventory_svc.__main__ import SPEC
from inventory_svc.domain.model import Product, StockDiscrepancy
from inventory_svc.repository import InventoryStatements
from service_runtime.database import Database
from service_runtime.server import RunningService
from service_runtime.sql import UnitOfWork
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import money_pb2
from tests.identity import trusted_channel


@pytest.fixture
async def inventory_service(start_service) -> RunningService:
    return await start_service(SPEC, RESERVATION_SWEEP_INTERVAL_SECONDS="0.1")


@pytest.fixture
async def inventory(inventory_service: RunningService) -> AsyncIterator[pb_grpc.InventoryServiceAsyncStub]:
    async with trusted_channel(inventory_service.address) as channel:
        yield pb_grpc.InventoryServiceStub(channel)


@pytest.fixture
async def inventory_with_idle_sweeper(start_service) -> AsyncIterator[pb_grpc.InventoryServiceAsyncStub]:
    """An inventory service whose sweeper makes its first pass at start and then sleeps for an hour, so a
    reservation whose expiry passes during the test stays ACTIVE in the database until a call notices it."""
    service = await start_service(SPEC, RESERVATION_SWEEP_INTERVAL_SECONDS="3600")
    await asyncio.sleep(0.2)  # let the first pass finish; the next one is an hour away
    async with trusted_channel(service.address) as channel:
        yield pb_grpc.InventoryServiceStub(channel)


Store = UnitOfWork[InventoryStatements]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """Direct access to the test's inventory database through the service's own statements."""
    database = Database(
        database_url, min_size=1, max_size=2, statement_timeout_ms=10_000, application_name="inventory-tests"
    )
    await database.open()
    try:
        yield UnitOfWork(database, InventoryStatements)
    finally:
        await database.close()


async def invariant_violations(store: Store) -> list[StockDiscrepancy]:
    return await store.read(lambda tx: tx.stock_discrepancies())


async def stock_figures(store: Store, sku: str) -> Product:
    """A product with its stock figures read from PostgreSQL (GetProduct may serve them from the cache,
    up to its TTL late, as the contract allows)."""
    return (await store.read(lambda tx: tx.products([sku])))[sku]


async def create_product(
    inventory: pb_grpc.InventoryServiceAsyncStub, sku: str, stock: int, price_minor: int = 1000, weight_grams: int = 100
) -> pb.Product:
    await inventory.UpsertProduct(
        pb.UpsertProductRequest(
            sku=sku,
            name=f"Product {sku}",
            price=money_pb2.Money(currency_code="USD", amount_minor=price_minor),
            weight_grams=weight_grams,
        )
    )
    if stock:
        response = await inventory.AdjustStock(
            pb.AdjustStockRequest(
                sku=sku, delta=stock, reason=pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key=f"initial-{sku}"
            )
        )
        return response.product
    return (await inventory.GetProduct(pb.GetProductRequest(sku=sku))).product
