"""Fixtures for shipping tests: a real inventory service with weighted products, a shipping service
weighing items through it, and stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from inventory_svc.__main__ import SPEC as INVENTORY
from shipping_svc.__main__ import SPEC as SHIPPING
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.shipping.v1 import shipping_service_pb2_grpc as pb_grpc
from shop.type.v1 import address_pb2, money_pb2
from tests.identity import trusted_channel

#: SKU → unit weight in grams.
PRODUCTS = {"W-100": 100, "W-250": 250, "W-1000": 1000}

US_ADDRESS = address_pb2.Address(
    recipient_name="Ada Lovelace",
    line1="1 Main St",
    city="Springfield",
    region="IL",
    postal_code="62701",
    country_code="US",
)


def usd(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount_minor)


@dataclass
class Shipping:
    stub: pb_grpc.ShippingServiceAsyncStub


@pytest.fixture
async def shipping(start_service) -> AsyncIterator[pb_grpc.ShippingServiceAsyncStub]:
    inventory_service = await start_service(INVENTORY)
    shipping_service = await start_service(SHIPPING, INVENTORY_TARGET=inventory_service.address)
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(shipping_service.address) as channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
        for sku, grams in PRODUCTS.items():
            await inventory.UpsertProduct(
                inventory_pb.UpsertProductRequest(sku=sku, name=sku, price=usd(1000), weight_grams=grams)
            )
        yield pb_grpc.ShippingServiceStub(channel)
