"""Fixtures for gateway tests: the whole mesh the saga calls (inventory, cart, payment with the sandbox
PSP as a real process, order) as real servers, the gateway in-process or as its own process (crash
tests), checkouts quoted the way StartCheckout stores them, and the invariants checked after each test."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2_grpc
from psycopg.rows import dict_row

from cart_svc.__main__ import SPEC as CART
from devstack.mesh import health_of
from gateway import domain
from gateway.__main__ import SPEC as GATEWAY
from gateway.domain import Checkout, CheckoutLine, CheckoutStatus, Quote, SagaStep
from gateway.repository import GatewayStatements
from gateway.tax import TaxTable, tax_minor
from inventory_svc.__main__ import SPEC as INVENTORY
from notification_svc.__main__ import SPEC as NOTIFICATION
from order_svc.__main__ import SPEC as ORDER
from payment_svc.__main__ import SPEC as PAYMENT
from shipping_svc.__main__ import SPEC as SHIPPING
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2_grpc as order_grpc
from shop.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shop.type.v1 import line_item_pb2, money_pb2
from tests.identity import as_customer, as_service, trusted_channel
from tests.psp import Psp, start_psp

TRUSTED = as_service("gateway")
ADDRESS = {
    "recipient_name": "Ada Lovelace",
    "line1": "1 Main St",
    "line2": "",
    "city": "New York",
    "region": "NY",
    "postal_code": "10001",
    "country_code": "US",
    "phone": "",
}
#: Settings that make retries, leases and recovery fit a test's patience.
FAST_GATEWAY = {
    "SAGA_BACKOFF_INITIAL_SECONDS": "0.05",
    "SAGA_BACKOFF_MAX_SECONDS": "0.3",
    "SAGA_STEP_MAX_ATTEMPTS": "4",
    "SAGA_COMPENSATION_MAX_ATTEMPTS": "6",
    "SAGA_LEASE_SECONDS": "1.5",
    "SAGA_RECOVERY_INTERVAL_SECONDS": "0.2",
    "RATE_LIMIT_CAPACITY": "200",
    "RATE_LIMIT_PER_SECOND": "100",
    "PAYMENT_DEADLINE_SECONDS": "3",
    "DB_POOL_MAX_SIZE": "8",
}
SMALL_POOL = {"DB_POOL_MAX_SIZE": "4"}
FAST_PAYMENT = {"PSP_TIMEOUT_SECONDS": "0.5", "RECONCILE_INTERVAL_SECONDS": "0.1", "RECONCILE_AFTER_SECONDS": "1"}
_ids = itertools.count(1)


@dataclass
class Shop:
    database_url: str
    psp: Psp
    targets: dict[str, str]
    inventory: inventory_grpc.InventoryServiceAsyncStub
    cart: cart_grpc.CartServiceAsyncStub
    payment: payment_grpc.PaymentServiceAsyncStub
    order: order_grpc.OrderServiceAsyncStub
    gateway: pb_grpc.CheckoutServiceAsyncStub | None = None
    gateway_address: str = ""
    initial_stock: dict[str, int] = field(default_factory=dict)

    async def product(self, sku: str, stock: int, price_minor: int = 1000) -> None:
        await self.inventory.UpsertProduct(
            inventory_pb.UpsertProductRequest(
                sku=sku,
                name=f"Product {sku}",
                price=money_pb2.Money(currency_code="USD", amount_minor=price_minor),
                weight_grams=100,
            ),
            metadata=TRUSTED,
        )
        if stock:
            await self.inventory.AdjustStock(
                inventory_pb.AdjustStockRequest(
                    sku=sku,
                    delta=stock,
                    reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED,
                    idempotency_key=f"in-{sku}",
                ),
                metadata=TRUSTED,
            )
        self.initial_stock[sku] = stock

    async def cart_of(self, user: str, items: Mapping[str, int]) -> cart_pb.Cart:
        cart = (await self.cart.CreateCart(cart_pb.CreateCartRequest(user_id=user), metadata=as_customer(user))).cart
        for sku, quantity in items.items():
            cart = (
                await self.cart.AddItem(
                    cart_pb.AddItemRequest(
                        cart_id=cart.cart_id, sku=sku, quantity=quantity, idempotency_key=f"add-{next(_ids)}"
                    ),
                    metadata=as_customer(user),
                )
            ).cart
        return cart

    async def quoted_checkout(
        self, user: str, items: Mapping[str, int], *, shipping_minor: int = 500, ttl_seconds: int = 900
    ) -> str:
        """A QUOTED checkout as StartCheckout leaves it: cart priced from inventory, stock reserved, the quote
        and the reservation's step written through the gateway's own statements."""
        cart = await self.cart_of(user, items)
        checkout_id = f"chk_test_{next(_ids)}_{os.getpid()}"
        reservation = await self.inventory.ReserveInventory(
            inventory_pb.ReserveInventoryRequest(
                checkout_id=checkout_id,
                items=[line_item_pb2.LineItem(sku=sku, quantity=quantity) for sku, quantity in items.items()],
                ttl=duration_pb2.Duration(seconds=ttl_seconds),
            ),
            metadata=TRUSTED,
        )
        lines = tuple(
            CheckoutLine(line.sku, line.product_name, line.quantity, line.unit_price.amount_minor)
            for line in cart.lines
        )
        subtotal = sum(line.line_total_minor for line in lines)
        rate = TaxTable.load().rate_for(ADDRESS["country_code"], ADDRESS["region"])
        quote = Quote(
            currency_code="USD",
            subtotal_minor=subtotal,
            discount_minor=0,
            shipping_minor=shipping_minor,
            tax_minor=tax_minor(rate, subtotal_minor=subtotal, discount_minor=0, shipping_minor=shipping_minor),
            tax_rate_ppm=rate.rate_ppm,
            shipping_taxed=rate.shipping_taxed,
            free_shipping_applied=False,
            min_business_days=3,
            max_business_days=5,
            earliest_delivery_date=date.today() + timedelta(days=3),
            latest_delivery_date=date.today() + timedelta(days=5),
        )
        now = datetime.now(UTC)
        checkout = Checkout(
            checkout_id=checkout_id,
            user_id=user,
            cart_id=cart.cart_id,
            status=CheckoutStatus.QUOTED,
            shipping_address=ADDRESS,
            shipping_method="standard",
            contact_email=f"{user}@example.com",
            quote=quote,
            lines=lines,
            reservation_expires_at=reservation.reservation.expire_time.ToDatetime(tzinfo=UTC),
            attempt=0,
            current_step=SagaStep.RESERVE_INVENTORY,
            order_id="",
            payment_id="",
            payment_token="",
            cart_etag=cart.etag,
            card_brand="",
            card_last4="",
            shipping_options=b"",
            last_failure=None,
            lease_owner="",
            created_at=now,
            updated_at=now,
            ended_at=None,
        )
        async with await psycopg.AsyncConnection.connect(self.database_url) as connection:
            statements = GatewayStatements(connection)
            await statements.insert_checkout(checkout, rate.basis_points)
            await statements.insert_reserved_step(
                checkout_id,
                domain.step_key(checkout_id, 0, SagaStep.RESERVE_INVENTORY),
                domain.definition(SagaStep.RESERVE_INVENTORY).compensation or "",
            )
            await connection.commit()
        return checkout_id

    async def place(
        self, user: str, checkout_id: str, token: str = "tok_visa", key: str | None = None, timeout: float = 30
    ) -> pb.PlaceOrderResponse:
        assert self.gateway is not None
        return await self.gateway.PlaceOrder(
            pb.PlaceOrderRequest(checkout_id=checkout_id, payment_token=token, idempotency_key=key or f"k{next(_ids)}"),
            metadata=as_customer(user),
            timeout=timeout,
        )

    async def get(self, user: str, checkout_id: str) -> pb.Checkout:
        assert self.gateway is not None
        return (
            await self.gateway.GetCheckout(pb.GetCheckoutRequest(checkout_id=checkout_id), metadata=as_customer(user))
        ).checkout

    async def settled(self, user: str, checkout_id: str, timeout: float = 30) -> pb.Checkout:
        """The checkout once its saga stopped running (not PLACING)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            checkout = await self.get(user, checkout_id)
            if checkout.status != pb.CHECKOUT_STATUS_PLACING or loop.time() > end:
                return checkout
            await asyncio.sleep(0.1)

    async def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        async with (
            await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query, params)
            return list(await cursor.fetchall())

    async def invariant_violations(self) -> list[str]:
        """Stock conserved, no live reservation for an ended checkout, captured payments = confirmed orders,
        no duplicate charge at the PSP."""
        problems: list[str] = []
        sold = {
            row["sku"]: int(row["sold"])
            for row in await self.rows(
                "SELECT l.sku, sum(l.quantity) AS sold FROM inventory.reservation_lines l"
                " JOIN inventory.reservations r USING (checkout_id) WHERE r.status = 'confirmed' GROUP BY l.sku"
            )
        }
        returned = {
            row["sku"]: int(row["back"])
            for row in await self.rows(
                "SELECT sku, sum(delta) AS back FROM inventory.stock_movements WHERE kind = 'return' GROUP BY sku"
            )
        }
        for row in await self.rows("SELECT sku, stock_on_hand, reserved FROM inventory.products"):
            sku = row["sku"]
            expected = self.initial_stock.get(sku, 0) - sold.get(sku, 0) + returned.get(sku, 0)
            if row["stock_on_hand"] != expected:
                problems.append(f"{sku}: stock {row['stock_on_hand']} != {expected}")
            if row["reserved"] < 0 or row["reserved"] > row["stock_on_hand"]:
                problems.append(f"{row['sku']}: reserved {row['reserved']} out of range")
        live = await self.rows(
            "SELECT r.checkout_id FROM inventory.reservations r JOIN checkout.checkouts c USING (checkout_id)"
            " WHERE r.status = 'active' AND c.status IN ('completed', 'failed', 'cancelled', 'expired')"
        )
        problems += [f"live reservation for ended checkout {row['checkout_id']}" for row in live]
        captured = await self.rows("SELECT checkout_id FROM payment.payments WHERE status = 'captured'")
        confirmed = await self.rows("SELECT checkout_id FROM orders.orders WHERE status = 'confirmed'")
        if sorted(r["checkout_id"] for r in captured) != sorted(r["checkout_id"] for r in confirmed):
            problems.append(f"captured {captured} != confirmed orders {confirmed}")
        doubles = await self.rows(
            "SELECT checkout_id, count(*) AS n FROM payment.payments p JOIN psp_sandbox.authorizations a"
            " ON a.authorization_id = p.psp_reference WHERE a.status = 'captured'"
            " GROUP BY checkout_id HAVING count(*) > 1"
        )
        problems += [f"{row['checkout_id']} charged {row['n']} times" for row in doubles]
        held = await self.rows(
            "SELECT p.checkout_id FROM payment.payments p JOIN checkout.checkouts c USING (checkout_id)"
            " WHERE p.status = 'authorized' AND c.status IN ('completed', 'failed', 'cancelled', 'expired')"
        )
        problems += [f"authorization still held for ended checkout {row['checkout_id']}" for row in held]
        return problems


@pytest.fixture
async def shop(start_service, database_url: str) -> AsyncIterator[Shop]:
    psp = await start_psp(database_url, PSP_HANG_SECONDS="2")
    channels: list[grpc.aio.Channel] = []

    def channel(address: str, trusted: bool = False) -> grpc.aio.Channel:
        opened = trusted_channel(address) if trusted else grpc.aio.insecure_channel(address)
        channels.append(opened)
        return opened

    try:
        # Small pools: several engineers' tests share one PostgreSQL (max_connections 100).
        inventory = await start_service(INVENTORY, **SMALL_POOL)
        payment = await start_service(PAYMENT, PSP_BASE_URL=psp.base_url, **FAST_PAYMENT, **SMALL_POOL)
        order = await start_service(
            ORDER,
            PAYMENT_TARGET=payment.address,
            INVENTORY_TARGET=inventory.address,
            ORDER_COMPENSATION_BACKOFF_MAX_SECONDS="0.2",
            **SMALL_POOL,
        )
        cart = await start_service(CART, INVENTORY_TARGET=inventory.address, **SMALL_POOL)
        shipping = await start_service(SHIPPING, INVENTORY_TARGET=inventory.address, **SMALL_POOL)
        # Order events reach it over the event bus (Redis Streams under this test's prefix); it logs messages.
        await start_service(NOTIFICATION, NOTIFICATION_SENDER="LOG", **SMALL_POOL)
        targets = {
            "INVENTORY_TARGET": inventory.address,
            "PAYMENT_TARGET": payment.address,
            "ORDER_TARGET": order.address,
            "CART_TARGET": cart.address,
            "SHIPPING_TARGET": shipping.address,
        }
        yield Shop(
            database_url=database_url,
            psp=psp,
            targets=targets,
            inventory=inventory_grpc.InventoryServiceStub(channel(inventory.address, trusted=True)),
            cart=cart_grpc.CartServiceStub(channel(cart.address)),
            payment=payment_grpc.PaymentServiceStub(channel(payment.address)),
            order=order_grpc.OrderServiceStub(channel(order.address)),
        )
    finally:
        for opened in channels:
            await opened.close()
        await psp.stop()


StartGateway = Callable[..., Awaitable[Shop]]


@pytest.fixture
async def start_gateway(start_service, shop: Shop) -> AsyncIterator[StartGateway]:
    """Starts an in-process gateway with extra settings; checks the invariants when the test ends."""
    channels: list[grpc.aio.Channel] = []

    async def start(**env: str) -> Shop:
        service = await start_service(GATEWAY, **{**shop.targets, **FAST_GATEWAY, **env})
        channel = grpc.aio.insecure_channel(service.address)
        channels.append(channel)
        shop.gateway = pb_grpc.CheckoutServiceStub(channel)
        shop.gateway_address = service.address
        return shop

    yield start
    for channel in channels:
        await channel.close()
    assert await shop.invariant_violations() == []


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Shop:
    """The shop with an in-process gateway."""
    return await start_gateway()


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    address: str


async def start_gateway_process(
    shop: Shop, database_url: str, redis_url: str, prefix: str, **env: str
) -> GatewayProcess:
    """`python -m gateway` as its own process on a free port (crash tests kill it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "GRPC_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
        "GRPC_SHUTDOWN_GRACE_SECONDS": "0.5",
        **shop.targets,
        **FAST_GATEWAY,
        **env,
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", env=environ)
    address = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            if await health_of(stub) == "SERVING":
                return GatewayProcess(process, address)
            if process.returncode is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}")
            await asyncio.sleep(0.1)
    raise RuntimeError("gateway did not become SERVING")
