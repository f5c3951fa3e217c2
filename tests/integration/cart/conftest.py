"""Fixtures for cart tests: a real inventory service with a small catalogue, a cart service pricing from
it, and stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as redis

from cart_svc.__main__ import SPEC as CART
from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime.server import RunningService
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.type.v1 import money_pb2
from tests.identity import as_customer, trusted_channel

#: Cart settings for a test that changes the catalogue and must see the change on the next call.
NO_PRICE_CACHE = {"CART_PRICE_CACHE_TTL_SECONDS": "0"}


@dataclass
class Mesh:
    inventory: inventory_grpc.InventoryServiceAsyncStub
    cart: pb_grpc.CartServiceAsyncStub
    cart_service: RunningService
    inventory_address: str


async def add_product(
    inventory: inventory_grpc.InventoryServiceAsyncStub, sku: str, price_minor: int = 1000, currency: str = "USD"
) -> None:
    await inventory.UpsertProduct(
        inventory_pb.UpsertProductRequest(
            sku=sku,
            name=f"Product {sku}",
            price=money_pb2.Money(currency_code=currency, amount_minor=price_minor),
            weight_grams=100,
        )
    )


@pytest.fixture
def cart_env() -> dict[str, str]:
    """Extra settings for the cart service; a test that changes the catalogue and wants to see it at once
    parametrizes this with {"CART_PRICE_CACHE_TTL_SECONDS": "0"}."""
    return {}


@pytest.fixture
async def mesh(start_service, cart_env: dict[str, str]) -> AsyncIterator[Mesh]:
    inventory_service = await start_service(INVENTORY)
    cart_service = await start_service(CART, INVENTORY_TARGET=inventory_service.address, **cart_env)
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(cart_service.address) as cart_channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
        for index in range(3):
            await add_product(inventory, f"SKU-{index}", price_minor=1000 + index)
        yield Mesh(inventory, pb_grpc.CartServiceStub(cart_channel), cart_service, inventory_service.address)


async def new_cart(cart: pb_grpc.CartServiceAsyncStub, user: str = "alice") -> pb.Cart:
    response = await cart.CreateCart(pb.CreateCartRequest(user_id=user), metadata=as_customer(user))
    return response.cart


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def redis_snapshot(client: redis.Redis, prefix: str) -> dict[bytes, object]:
    """Every key of the test's prefix with its value (hashes as dicts), to show nothing changed."""
    snapshot: dict[bytes, object] = {}
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        kind = await client.type(key)
        if kind == b"hash":
            snapshot[key] = await client.hgetall(key)
        elif kind == b"zset":
            snapshot[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            snapshot[key] = await client.get(key)
    return snapshot
