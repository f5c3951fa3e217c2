"""Sliding TTL, and abandonment recorded in PostgreSQL by the sweeper of several replicas."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
import pytest
import redis.asyncio as redis

from cart_svc.__main__ import SPEC as CART
from inventory_svc.__main__ import SPEC as INVENTORY
from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tests.identity import as_customer, as_service, trusted_channel
from tests.integration.cart.conftest import add_product

ALICE = as_customer("alice")


async def test_every_call_that_names_the_cart_slides_its_ttl_until_it_is_left_alone(
    start_service, raw_redis: redis.Redis, redis_prefix: str
):
    inventory_service = await start_service(INVENTORY)
    cart_service = await start_service(
        CART,
        INVENTORY_TARGET=inventory_service.address,
        CART_TTL_SECONDS="1.5",
        CART_SWEEP_INTERVAL_SECONDS="3600",  # only reads notice the expiry here
    )
    async with grpc.aio.insecure_channel(cart_service.address) as channel:
        cart = pb_grpc.CartServiceStub(channel)
        created = (await cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=ALICE)).cart
        assert created.ttl.seconds == 1 and created.ttl.nanos == 500_000_000
        previous = created.expire_time.ToDatetime()
        for _ in range(3):  # 3 s in all: twice the TTL, yet never 1.5 s without a call
            await asyncio.sleep(1.0)
            got = (await cart.GetCart(pb.GetCartRequest(cart_id=created.cart_id), metadata=ALICE)).cart
            assert got.status == pb.CART_STATUS_ACTIVE
            assert got.expire_time.ToDatetime() > previous
            previous = got.expire_time.ToDatetime()
        keys = [f"{redis_prefix}cart:cart:{{{created.cart_id}}}", f"{redis_prefix}cart:owner:user:alice"]
        ttls = [await raw_redis.pttl(key) for key in keys]
        assert all(ttl > 10_000 for ttl in ttls), ttls  # Redis keeps them TTL + grace

        await asyncio.sleep(1.7)
        gone = (await cart.GetCart(pb.GetCartRequest(cart_id=created.cart_id), metadata=ALICE)).cart
        assert gone.status == pb.CART_STATUS_ABANDONED
        assert not gone.HasField("expire_time")
        fresh = await cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=ALICE)
        assert fresh.created and fresh.cart.cart_id != created.cart_id


async def test_two_replicas_sweep_expired_carts_into_history_once_each(
    start_service, database_url: str, raw_redis: redis.Redis, redis_prefix: str
):
    inventory_service = await start_service(INVENTORY)
    env = {
        "INVENTORY_TARGET": inventory_service.address,
        "CART_TTL_SECONDS": "1",
        "CART_SWEEP_INTERVAL_SECONDS": "0.05",
        "CART_SWEEP_BATCH_SIZE": "3",
    }
    replicas = [await start_service(CART, **env), await start_service(CART, **env)]
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(replicas[0].address) as channel,
    ):
        await add_product(inventory_grpc.InventoryServiceStub(inventory_channel), "SKU-A", 700)
        cart = pb_grpc.CartServiceStub(channel)
        cart_ids = []
        for index in range(30):
            who = as_customer(f"user{index}")
            created = (await cart.CreateCart(pb.CreateCartRequest(user_id=f"user{index}"), metadata=who)).cart
            await cart.AddItem(
                pb.AddItemRequest(cart_id=created.cart_id, sku="SKU-A", quantity=index % 5 + 1, idempotency_key="k"),
                metadata=who,
            )
            cart_ids.append(created.cart_id)

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
            for _ in range(100):
                await asyncio.sleep(0.1)
                row = await (await connection.execute("SELECT count(*) FROM cart.carts")).fetchone()
                if row is not None and row[0] == 30:
                    break
            rows = await (
                await connection.execute(
                    "SELECT c.cart_id, c.status, c.subtotal_minor, i.quantity, i.unit_price_minor"
                    "  FROM cart.carts c JOIN cart.cart_items i USING (cart_id) ORDER BY c.cart_id"
                )
            ).fetchall()
        assert sorted(row[0] for row in rows) == sorted(cart_ids)
        assert {row[1] for row in rows} == {"abandoned"}
        assert all(row[2] == row[3] * 700 and row[4] == 700 for row in rows)
        leftovers = [key async for key in raw_redis.scan_iter(match=f"{redis_prefix}cart:*")]
        assert leftovers == []
        assert await raw_redis.zcard(f"{redis_prefix}cart:expiry") == 0


@pytest.mark.parametrize("swept", [False, True])
async def test_a_cart_that_expired_while_its_checkout_ran_is_still_converted(start_service, swept: bool):
    inventory_service = await start_service(INVENTORY)
    cart_service = await start_service(
        CART,
        INVENTORY_TARGET=inventory_service.address,
        CART_TTL_SECONDS="1",
        CART_SWEEP_INTERVAL_SECONDS="0.05" if swept else "3600",
    )
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(cart_service.address) as channel,
    ):
        await add_product(inventory_grpc.InventoryServiceStub(inventory_channel), "SKU-A", 700)
        cart = pb_grpc.CartServiceStub(channel)
        created = (await cart.CreateCart(pb.CreateCartRequest(user_id="alice"), metadata=ALICE)).cart
        await cart.AddItem(
            pb.AddItemRequest(cart_id=created.cart_id, sku="SKU-A", quantity=2, idempotency_key="k"), metadata=ALICE
        )
        await asyncio.sleep(1.6)
        converted = await cart.ConvertCart(
            pb.ConvertCartRequest(cart_id=created.cart_id, checkout_id="co-late"), metadata=as_service()
        )
        assert converted.cart.status == pb.CART_STATUS_CONVERTED and converted.cart.checkout_id == "co-late"
        assert [(line.sku, line.quantity) for line in converted.cart.lines] == [("SKU-A", 2)]
