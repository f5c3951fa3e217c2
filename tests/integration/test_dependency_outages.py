"""What a service does when PostgreSQL or Redis goes away and comes back, and what readiness says.

PostgreSQL "goes away" here by refusing connections to the test's database and terminating its
sessions (`ALLOW_CONNECTIONS false`), which is what clients see of a server that is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2
from psycopg import sql

from cart_svc.__main__ import SPEC as CART
from inventory_svc.__main__ import SPEC as INVENTORY
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2
from tests.identity import trusted_channel
from tests.integration.inventory.conftest import create_product
from tests.integration.test_service_runtime import health_check
from tests.rpc_errors import expect_failure, failure_of

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ONE_UNIT = line_item_pb2.LineItem(sku="A-1", quantity=1)


@pytest.fixture
def outage(database_url: str) -> Callable[[bool], Awaitable[None]]:
    """`await outage(True)` takes the test's database away; `await outage(False)` brings it back."""
    name = urlsplit(database_url).path.lstrip("/")
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"

    async def set_outage(down: bool) -> None:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), sql.Literal(not down))
            )
            if down:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    return set_outage


@pytest.fixture
async def inventory_and_outage(start_service, outage) -> AsyncIterator[tuple[pb_grpc.InventoryServiceStub, object]]:
    # The default probe interval (5 s): fail-fast and recovery must not depend on a short one. A fixed-size
    # pool (min = max, as deployments often run) cannot grow past connections stuck in reconnect backoff.
    running = await start_service(INVENTORY, DB_POOL_MIN_SIZE="4", DB_POOL_MAX_SIZE="4")
    async with trusted_channel(running.address) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await create_product(stub, "A-1", stock=5)
        try:
            yield stub, health_check(channel)
        finally:
            await outage(False)


async def timed_check(stub: pb_grpc.InventoryServiceAsyncStub) -> tuple[float, grpc.aio.AioRpcError | None]:
    started = time.monotonic()
    try:
        await stub.CheckAvailability(
            pb.CheckAvailabilityRequest(items=[line_item_pb2.LineItem(sku="A-1", quantity=1)]), timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


async def test_calls_fail_fast_with_database_unavailable_while_postgresql_is_down(inventory_and_outage, outage):
    stub, _ = inventory_and_outage
    await outage(True)
    timings = []
    for _ in range(6):
        seconds, error = await timed_check(stub)
        assert error is not None, "a call succeeded with the database down"
        failure = failure_of(error)
        assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE"), failure
        assert failure.retry_delay_seconds is not None and failure.retry_delay_seconds > 0
        timings.append(seconds)
        await asyncio.sleep(0.3)
    # The first call may meet a broken pooled connection; once the probe knows, refusals are immediate:
    # a few ms on a quiet machine, far from the pool's 5 s acquire timeout a call would otherwise wait out.
    # (The bound is 1 s, not tighter: CI once saw one refusal take 0.24 s on the loaded 2-core machine.)
    assert max(timings) < 2.5, timings
    assert max(timings[2:]) < 1.0, timings


@pytest.mark.parametrize("outage_seconds", [2, 12])
async def test_service_serves_within_two_seconds_of_postgresql_returning_whatever_the_outage_length(
    inventory_and_outage, outage, outage_seconds
):
    stub, health = inventory_and_outage
    await outage(True)
    deadline = time.monotonic() + outage_seconds
    while time.monotonic() < deadline:  # calls keep arriving during the outage, as they would in production
        await timed_check(stub)
        await asyncio.sleep(0.5)
    await outage(False)
    returned = time.monotonic()
    while True:
        _, error = await timed_check(stub)
        if error is None:
            break
        assert time.monotonic() - returned < 5, "still failing 5 s after PostgreSQL returned"
        await asyncio.sleep(0.05)
    recovery = time.monotonic() - returned
    assert recovery < 2.0, f"served {recovery:.2f} s after a {outage_seconds} s outage ended"
    assert (await health(health_pb2.HealthCheckRequest(), timeout=2)).status == SERVING


async def test_a_busy_pool_is_not_a_failure_readiness_stays_serving(start_service):
    running = await start_service(
        INVENTORY, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1", HEALTH_PROBE_INTERVAL_SECONDS="0.1"
    )
    async with trusted_channel(running.address) as channel:
        health = health_check(channel)
        stub = pb_grpc.InventoryServiceStub(channel)
        async with running.infrastructure.database.connection():  # every pooled connection is now busy
            seen = set()
            for _ in range(20):  # two seconds: twenty probe intervals
                seen.add((await health(health_pb2.HealthCheckRequest(), timeout=2)).status)
                await asyncio.sleep(0.1)
            assert seen == {SERVING}
            with pytest.raises(grpc.aio.AioRpcError) as waited:
                await stub.GetReservation(pb.GetReservationRequest(checkout_id="c1"), timeout=0.5)
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # queued for the connection
        failure = await expect_failure(stub.GetReservation(pb.GetReservationRequest(checkout_id="c1"), timeout=5))
        assert failure.reason == "RESERVATION_NOT_FOUND"  # the connection is free again: served normally


async def test_without_redis_inventory_serves_from_postgresql_and_stays_ready(start_service):
    """Inventory declares Redis OPTIONAL (it only holds the product cache)."""
    running = await start_service(INVENTORY, REDIS_URL="redis://127.0.0.1:1/0", HEALTH_PROBE_INTERVAL_SECONDS="0.1")
    async with trusted_channel(running.address) as channel:
        health = health_check(channel)
        stub = pb_grpc.InventoryServiceStub(channel)
        await create_product(stub, "A-1", stock=5)
        product = (await stub.GetProduct(pb.GetProductRequest(sku="A-1"), timeout=5)).product
        assert (product.sku, product.stock_on_hand) == ("A-1", 5)
        reserved = await stub.ReserveInventory(
            pb.ReserveInventoryRequest(checkout_id="c1", items=[line_item_pb2.LineItem(sku="A-1", quantity=2)]),
            timeout=5,
        )
        assert reserved.reservation.status == pb.RESERVATION_STATUS_ACTIVE
        for _ in range(10):
            assert (await health(health_pb2.HealthCheckRequest(), timeout=2)).status == SERVING
            await asyncio.sleep(0.1)


async def test_without_redis_a_service_that_requires_it_stays_not_serving(database_url, redis_prefix):
    """The cart declares Redis REQUIRED (active carts live there): it cannot serve without it."""
    from service_runtime.server import start_service

    settings = CART.load_settings(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "REDIS_KEY_PREFIX": redis_prefix,
            "GRPC_LISTEN_ADDRESS": "127.0.0.1:0",
            "GRPC_SHUTDOWN_GRACE_SECONDS": "0.2",
            "HEALTH_PROBE_INTERVAL_SECONDS": "0.1",
        }
    )
    running = await start_service(CART, settings)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            health = health_check(channel)
            for _ in range(15):
                assert (await health(health_pb2.HealthCheckRequest(), timeout=2)).status == NOT_SERVING
                await asyncio.sleep(0.1)
            alive = await health(health_pb2.HealthCheckRequest(service="liveness"), timeout=2)
            assert alive.status == SERVING
    finally:
        await running.stop()


async def test_a_call_that_needs_redis_while_it_is_down_is_unavailable_not_internal(database_url, redis_prefix):
    """Found by the fault drill: a Redis restart made every cart call INTERNAL (a client must not retry
    INTERNAL); an outage of Redis is UNAVAILABLE with a retry hint, as one of PostgreSQL is."""
    from service_runtime.server import start_service
    from shop.cart.v1 import cart_service_pb2 as cart_pb
    from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
    from tests.identity import as_customer

    settings = CART.load_settings(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "REDIS_KEY_PREFIX": redis_prefix,
            "GRPC_LISTEN_ADDRESS": "127.0.0.1:0",
            "GRPC_SHUTDOWN_GRACE_SECONDS": "0.2",
        }
    )
    running = await start_service(CART, settings)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            cart = cart_grpc.CartServiceStub(channel)
            failure = await expect_failure(
                cart.CreateCart(cart_pb.CreateCartRequest(user_id="alice"), metadata=as_customer("alice"), timeout=10)
            )
        assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, "REDIS_UNAVAILABLE")
    finally:
        await running.stop()
