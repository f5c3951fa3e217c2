"""The cart's price cache against a real inventory service whose BatchGetProducts calls are counted: a
price or catalogue change shows once the TTL has run out, and concurrent misses make one call."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import pytest

from cart_svc.__main__ import SPEC as CART
from cart_svc.catalogue import Catalogue, PriceCache
from inventory_svc.__main__ import SPEC as INVENTORY
from service_runtime.server import RunningService
from service_runtime.spec import Assembly, Infrastructure
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tests.identity import as_customer, trusted_channel
from tests.integration.cart.conftest import add_product, new_cart
from tests.rpc_errors import expect_failure

ALICE = as_customer("alice")
BATCH_GET = "BatchGetProducts"


class _CountingServer:
    """Registers the inventory's real handlers on the real server, wrapping BatchGetProducts to record the
    SKUs of each call: a server interceptor added after the fact."""

    def __init__(self, server: grpc.aio.Server, calls: list[list[str]]) -> None:
        self._server = server
        self._calls = calls

    def _counted(self, handler: Any) -> Any:
        behaviour: Callable[[Any, Any], Awaitable[Any]] = handler.unary_unary
        calls = self._calls

        async def counted(request: inventory_pb.BatchGetProductsRequest, context: Any) -> Any:
            calls.append(list(request.skus))
            return await behaviour(request, context)

        return handler._replace(unary_unary=counted)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        # the generated add_<Service>Servicer_to_server hands over grpc.method_handlers_generic_handler
        # objects, and the runtime's registrar wraps only those: pass on the same kind, BatchGetProducts counted
        self._server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(
                    generic.service_name(),
                    {
                        method.rsplit("/", 1)[1]: self._counted(handler)
                        if method.endswith("/" + BATCH_GET)
                        else handler
                        for method, handler in generic._method_handlers.items()
                    },
                )
                for generic in handlers
            )
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self._counted(h) if name == BATCH_GET else h for name, h in handlers.items()}
        )


@dataclasses.dataclass
class Counted:
    inventory: inventory_grpc.InventoryServiceAsyncStub
    cart: pb_grpc.CartServiceAsyncStub
    #: The SKUs of every BatchGetProducts the inventory served, in order.
    calls: list[list[str]]
    cart_service: RunningService
    inventory_address: str


@pytest.fixture
def cache_ttl() -> str:
    return "30"


@pytest.fixture
async def counted(start_service, cache_ttl: str) -> AsyncIterator[Counted]:
    calls: list[list[str]] = []

    def assemble(settings: Any, infrastructure: Infrastructure) -> Assembly:
        assembly = INVENTORY.assemble(settings, infrastructure)

        def register(server: grpc.aio.Server) -> None:
            assembly.register(cast(grpc.aio.Server, _CountingServer(server, calls)))

        return dataclasses.replace(assembly, register=register)

    inventory_service = await start_service(dataclasses.replace(INVENTORY, assemble=assemble))
    cart_service = await start_service(
        CART, INVENTORY_TARGET=inventory_service.address, CART_PRICE_CACHE_TTL_SECONDS=cache_ttl
    )
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(cart_service.address) as cart_channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
        for index in range(3):
            await add_product(inventory, f"SKU-{index}", price_minor=1000 + index)
        calls.clear()
        yield Counted(inventory, pb_grpc.CartServiceStub(cart_channel), calls, cart_service, inventory_service.address)


async def _add(cart: pb_grpc.CartServiceAsyncStub, cart_id: str, sku: str, key: str, user: str = "alice") -> Any:
    return await cart.AddItem(
        pb.AddItemRequest(cart_id=cart_id, sku=sku, quantity=1, idempotency_key=key), metadata=as_customer(user)
    )


@pytest.mark.parametrize("cache_ttl", ["0.5"])
async def test_a_price_change_shows_once_the_ttl_has_run_out(counted: Counted):
    cart = await new_cart(counted.cart)
    await _add(counted.cart, cart.cart_id, "SKU-0", "k1")
    await add_product(counted.inventory, "SKU-0", price_minor=1500)
    await counted.inventory.DiscontinueProduct(inventory_pb.DiscontinueProductRequest(sku="SKU-1"))
    soon = (await counted.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    assert soon.lines[0].unit_price.amount_minor == 1000  # within the TTL: the cached price
    assert counted.calls == [["SKU-0"]]  # AddItem's one call; GetCart made none
    await asyncio.sleep(0.6)
    later = (await counted.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)).cart
    line = later.lines[0]
    assert (line.unit_price.amount_minor, line.added_unit_price.amount_minor, line.price_changed) == (1500, 1000, True)
    assert later.subtotal.amount_minor == 1500
    # the discontinued product is cached as not sold once asked for, and refused without asking again
    refused = await expect_failure(_add(counted.cart, cart.cart_id, "SKU-1", "k2"))
    assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "PRODUCT_NOT_FOUND")
    calls = len(counted.calls)
    again = await expect_failure(_add(counted.cart, cart.cart_id, "SKU-1", "k3"))
    assert again.reason == "PRODUCT_NOT_FOUND" and len(counted.calls) == calls


@pytest.mark.parametrize("cache_ttl", ["0.5"])
async def test_a_product_new_to_the_catalogue_can_be_added_once_the_ttl_has_run_out(counted: Counted):
    cart = await new_cart(counted.cart)
    unknown = await expect_failure(_add(counted.cart, cart.cart_id, "NEW-1", "k1"))
    assert unknown.reason == "PRODUCT_NOT_FOUND"
    await add_product(counted.inventory, "NEW-1", price_minor=700)
    assert (await expect_failure(_add(counted.cart, cart.cart_id, "NEW-1", "k2"))).reason == "PRODUCT_NOT_FOUND"
    assert counted.calls == [["NEW-1"]]
    await asyncio.sleep(0.6)
    added = await _add(counted.cart, cart.cart_id, "NEW-1", "k3")
    assert added.line.unit_price.amount_minor == 700 and len(counted.calls) == 2


async def test_concurrent_misses_for_the_same_skus_make_one_batch_get_products(counted: Counted):
    users = [f"user-{index}" for index in range(20)]
    carts = [await new_cart(counted.cart, user) for user in users]
    assert counted.calls == []  # empty carts need no prices
    added = await asyncio.gather(
        *(_add(counted.cart, cart.cart_id, "SKU-2", "k", user) for cart, user in zip(carts, users, strict=True))
    )
    assert {response.line.unit_price.amount_minor for response in added} == {1002}
    assert counted.calls == [["SKU-2"]]  # 20 concurrent misses, one call
    got = await asyncio.gather(
        *(
            counted.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=as_customer(user))
            for cart, user in zip(carts, users, strict=True)
        )
    )
    assert all(response.cart.subtotal.amount_minor == 1002 for response in got)
    assert counted.calls == [["SKU-2"]]  # all served from the cache


@pytest.mark.parametrize("cache_ttl", ["0"])
async def test_with_no_cache_every_call_asks_inventory(counted: Counted):
    cart = await new_cart(counted.cart)
    await _add(counted.cart, cart.cart_id, "SKU-0", "k1")
    await counted.cart.GetCart(pb.GetCartRequest(cart_id=cart.cart_id), metadata=ALICE)
    assert counted.calls == [["SKU-0"], ["SKU-0"], ["SKU-0"]]  # AddItem: the new SKU, then its lines; GetCart


async def test_the_cache_holds_at_most_its_bound_and_the_oldest_go_first(counted: Counted):
    cache = PriceCache(
        Catalogue(counted.cart_service.infrastructure.channels, counted.inventory_address),
        ttl_seconds=30,
        max_entries=100,
    )
    skus = ["SKU-0", "SKU-1", "SKU-2", *(f"GONE-{index:03d}" for index in range(147))]
    found = await cache.entries(skus, None)
    assert sorted(found) == ["SKU-0", "SKU-1", "SKU-2"]  # the unknown ones are cached as not sold
    assert [len(call) for call in counted.calls] == [100, 50] and len(cache) == 100
    assert await cache.entries(skus[50:], None) == {}  # the newest 100: all cached, no call
    assert len(counted.calls) == 2
    assert sorted(await cache.entries(skus[:3], None)) == ["SKU-0", "SKU-1", "SKU-2"]  # evicted: asked again
    assert counted.calls[2:] == [["SKU-0", "SKU-1", "SKU-2"]] and len(cache) == 100
