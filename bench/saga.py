"""PlaceOrder through the gateway's durable saga against the same seven downstream calls made directly.

One run starts, as their own processes on free loopback ports against a fresh database, the sandbox PSP
and the inventory, cart, payment, order, shipping and gateway services; then runs `--rounds` rounds
(default 3), each with two phases (which goes first alternates) of `--seconds`, each with `--clients`
concurrent clients on one client event loop:

1. saga: PlaceOrder of a QUOTED checkout (made beforehand by StartCheckout): the gateway's idempotency
   key, and for each of its seven steps (extend reservation, authorize, create order, confirm
   reservation, capture, confirm order, convert cart) an intent and an outcome written to PostgreSQL
   around the call, then the checkout's end state;
2. direct: the same seven calls, made one after another from the bench as a trusted mesh caller on a
   reservation made beforehand (ReserveInventory): the floor, everything the saga calls and nothing of
   its own.

Checkouts (carts of one line, 1 000 000 units of stock) are prepared before each phase, outside its
timing. It prints each phase's checkouts per second and p50 latency, the medians of the rounds, and
the ratio saga/direct of the medians (what the durable saga keeps of the bare calls' rate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import psycopg
from google.protobuf import duration_pb2
from psycopg import sql

from bench import harness
from bench.harness import closed_loop, percentile, stop_process, wait_serving
from devstack.endpoints import free_port
from service_runtime.identity import AUTHORIZATION, SERVICE_TOKEN, ServiceTokens
from service_runtime.migrations import apply_migrations
from service_runtime.settings import CommonSettings, EnvReader
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2 as order_pb
from shop.order.v1 import order_service_pb2_grpc as order_grpc
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, line_item_pb2, money_pb2

PACKAGES = ("inventory_svc", "cart_svc", "payment_svc", "order_svc", "shipping_svc", "gateway")
TARGETS = {
    "inventory_svc": "INVENTORY_TARGET",
    "cart_svc": "CART_TARGET",
    "payment_svc": "PAYMENT_TARGET",
    "order_svc": "ORDER_TARGET",
    "shipping_svc": "SHIPPING_TARGET",
}
SKU = "BENCH-SAGA"
ADDRESS = address_pb2.Address(
    recipient_name="Bench", line1="1 Main St", city="New York", region="NY", postal_code="10001", country_code="US"
)
_LISTENING = "psp_sandbox listening on "
#: Ids and keys as letters: the payment service refuses any field holding a digit run that looks like a PAN.
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _customer(user: str) -> tuple[tuple[str, str], ...]:
    import jwt

    settings = CommonSettings.from_env(EnvReader({}), service_name="bench", default_port=0)
    now = int(time.time())
    claims = {"iss": settings.auth_jwt_issuer, "aud": settings.auth_jwt_audience, "sub": user, "exp": now + 3600}
    token = jwt.encode(claims, settings.auth_jwt_keys[0], algorithm=settings.auth_jwt_algorithm)
    return ((AUTHORIZATION, f"Bearer {token}"),)


class Mesh:
    def __init__(self, addresses: dict[str, str], channels: list[grpc.aio.Channel]) -> None:
        def channel(package: str) -> grpc.aio.Channel:
            opened = grpc.aio.insecure_channel(addresses[package])
            channels.append(opened)
            return opened

        self.inventory = inventory_grpc.InventoryServiceStub(channel("inventory_svc"))
        self.cart = cart_grpc.CartServiceStub(channel("cart_svc"))
        self.payment = payment_grpc.PaymentServiceStub(channel("payment_svc"))
        self.order = order_grpc.OrderServiceStub(channel("order_svc"))
        self.gateway = pb_grpc.CheckoutServiceStub(channel("gateway"))
        self._tokens = ServiceTokens(
            CommonSettings.from_env(EnvReader({}), service_name="bench", default_port=0).identity
        )

    def trusted(self) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN, self._tokens.current()),)

    async def cart_of(self, user: str) -> cart_pb.Cart:
        customer = _customer(user)
        cart = (await self.cart.CreateCart(cart_pb.CreateCartRequest(user_id=user), metadata=customer)).cart
        added = await self.cart.AddItem(
            cart_pb.AddItemRequest(
                cart_id=cart.cart_id, sku=SKU, quantity=1, idempotency_key=uuid.uuid4().hex.translate(_LETTERS)
            ),
            metadata=customer,
        )
        return added.cart

    async def quoted(self, user: str) -> str:
        cart = await self.cart_of(user)
        started = await self.gateway.StartCheckout(
            pb.StartCheckoutRequest(
                cart_id=cart.cart_id,
                shipping_address=ADDRESS,
                shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                idempotency_key=uuid.uuid4().hex.translate(_LETTERS),
            ),
            metadata=_customer(user),
            timeout=30,
        )
        return started.checkout.checkout_id

    async def reserved(self, user: str) -> tuple[str, cart_pb.Cart]:
        cart = await self.cart_of(user)
        checkout_id = f"direct-{uuid.uuid4().hex.translate(_LETTERS)}"
        await self.inventory.ReserveInventory(
            inventory_pb.ReserveInventoryRequest(
                checkout_id=checkout_id, items=[line_item_pb2.LineItem(sku=SKU, quantity=1)]
            ),
            metadata=self.trusted(),
            timeout=30,
        )
        return checkout_id, cart

    async def place(self, user: str, checkout_id: str) -> None:
        placed = await self.gateway.PlaceOrder(
            pb.PlaceOrderRequest(
                checkout_id=checkout_id, payment_token="tok_visa", idempotency_key=uuid.uuid4().hex.translate(_LETTERS)
            ),
            metadata=_customer(user),
            timeout=30,
        )
        assert placed.checkout.status == pb.CHECKOUT_STATUS_COMPLETED, placed.checkout.last_failure

    async def seven_calls(self, user: str, checkout_id: str, cart: cart_pb.Cart) -> None:
        """What the saga calls, in its order, straight from here."""
        trusted, price = self.trusted(), cart.lines[0].unit_price
        usd = money_pb2.Money
        total = price.amount_minor + 500
        await self.inventory.ExtendReservation(
            inventory_pb.ExtendReservationRequest(checkout_id=checkout_id, ttl=duration_pb2.Duration(seconds=900)),
            metadata=trusted,
            timeout=10,
        )
        authorized = await self.payment.AuthorizePayment(
            payment_pb.AuthorizePaymentRequest(
                checkout_id=checkout_id,
                amount=usd(currency_code="USD", amount_minor=total),
                payment_token="tok_visa",
                idempotency_key=f"{checkout_id}:1:authorize_payment",
            ),
            metadata=trusted,
            timeout=10,
        )
        payment_id = authorized.payment.payment_id
        line = order_pb.OrderLine(
            sku=SKU, product_name=cart.lines[0].product_name, quantity=1, unit_price=price, line_total=price
        )
        order = await self.order.CreateOrder(
            order_pb.CreateOrderRequest(
                checkout_id=checkout_id,
                user_id=user,
                payment_id=payment_id,
                lines=[line],
                subtotal=price,
                shipping_cost=usd(currency_code="USD", amount_minor=500),
                tax=usd(currency_code="USD", amount_minor=0),
                total=usd(currency_code="USD", amount_minor=total),
                shipping_address=ADDRESS,
                shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
            ),
            metadata=trusted,
            timeout=10,
        )
        order_id = order.order.order_id
        await self.inventory.ConfirmReservation(
            inventory_pb.ConfirmReservationRequest(checkout_id=checkout_id, order_id=order_id),
            metadata=trusted,
            timeout=10,
        )
        await self.payment.CapturePayment(
            payment_pb.CapturePaymentRequest(
                payment_id=payment_id, order_id=order_id, idempotency_key=f"{checkout_id}:1:capture_payment"
            ),
            metadata=trusted,
            timeout=10,
        )
        await self.order.ConfirmOrder(order_pb.ConfirmOrderRequest(order_id=order_id), metadata=trusted, timeout=10)
        await self.cart.ConvertCart(
            cart_pb.ConvertCartRequest(cart_id=cart.cart_id, checkout_id=checkout_id, order_id=order_id),
            metadata=trusted,
            timeout=10,
        )


async def _prepared(make: Callable[[str], Awaitable[Any]], users: list[str]) -> list[Any]:
    items: list[Any] = []
    for start in range(0, len(users), 8):
        items += await asyncio.gather(*(make(user) for user in users[start : start + 8]))
    return items


async def run(clients: int, seconds: float, rounds: int, per_phase: int) -> dict[str, list[tuple[float, float]]]:
    server_url = harness.server_url()
    name = f"shop_bench_{uuid.uuid4().hex[:8]}"
    database_url = harness.database_url(server_url, name)
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    processes: list[subprocess.Popen[bytes]] = []
    channels: list[grpc.aio.Channel] = []
    results: dict[str, list[tuple[float, float]]] = {"saga": [], "direct": []}
    try:
        import importlib

        for package in (*PACKAGES, "psp_sandbox"):
            spec = getattr(importlib.import_module(f"{package}.__main__"), "SPEC", None)
            if spec is not None:
                await apply_migrations(database_url, schema=spec.schema, directory=spec.migrations)
        common = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        psp = subprocess.Popen(
            [sys.executable, "-m", "psp_sandbox"], env={**common, "PSP_LISTEN_PORT": "0"}, stdout=subprocess.PIPE
        )
        processes.append(psp)
        assert psp.stdout is not None
        line = (await asyncio.to_thread(psp.stdout.readline)).decode()
        if not line.startswith(_LISTENING):
            raise RuntimeError(f"psp_sandbox did not start: {line!r}")
        addresses = {package: f"127.0.0.1:{free_port()}" for package in PACKAGES}
        environment = {
            **common,
            "REDIS_KEY_PREFIX": f"bench:{name}:",
            "PSP_BASE_URL": line[len(_LISTENING) :].strip(),
            "RATE_LIMIT_CAPACITY": "1000000",
            "RATE_LIMIT_PER_SECOND": "1000000",
            # Small pools: the machine's PostgreSQL (max_connections 100) is shared with other runs.
            "DB_POOL_MAX_SIZE": "6",
            **{variable: addresses[package] for package, variable in TARGETS.items()},
        }
        for package in PACKAGES:
            process = subprocess.Popen(
                [sys.executable, "-m", package],
                env={
                    **environment,
                    "GRPC_LISTEN_ADDRESS": addresses[package],
                    # The gateway writes the step log: its pool is the one that matters.
                    **({"DB_POOL_MAX_SIZE": "20"} if package == "gateway" else {}),
                },
            )
            processes.append(process)
            await wait_serving(addresses[package], process)
            await asyncio.sleep(0.3)
            if process.poll() is not None:  # another process answered on the port it could not bind
                raise RuntimeError(f"{package} exited ({process.returncode}); its port was taken: run again")
        print(f"mesh up (db {name}); {clients} clients, {rounds} rounds of 2 x {seconds:g} s", flush=True)
        mesh = Mesh(addresses, channels)
        await mesh.inventory.UpsertProduct(
            inventory_pb.UpsertProductRequest(
                sku=SKU,
                name="Bench mug",
                price=money_pb2.Money(currency_code="USD", amount_minor=1999),
                weight_grams=300,
            ),
            metadata=mesh.trusted(),
        )
        await mesh.inventory.AdjustStock(
            inventory_pb.AdjustStockRequest(
                sku=SKU,
                delta=1_000_000,
                reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED,
                idempotency_key="bench-stock",
            ),
            metadata=mesh.trusted(),
        )
        for number in range(1, rounds + 1):
            phases = ["saga", "direct"] if number % 2 else ["direct", "saga"]
            for phase in phases:
                users = [f"bench-{number}-{phase}-{index}" for index in range(per_phase)]
                make: Callable[[str], Awaitable[Any]] = mesh.quoted if phase == "saga" else mesh.reserved
                prepared = await _prepared(make, users)
                queue = list(zip(users, prepared, strict=True))

                failures: list[str] = []

                async def operation(
                    _client: int, queue: list[Any] = queue, phase: str = phase, failures: list[str] = failures
                ) -> None:
                    if not queue:
                        raise RuntimeError("ran out of prepared checkouts: raise --prepared")
                    user, item = queue.pop()
                    try:
                        if phase == "saga":
                            await mesh.place(user, item)
                        else:
                            await mesh.seven_calls(user, item[0], item[1])
                    except (grpc.aio.AioRpcError, AssertionError) as error:
                        # Counted, not fatal: e.g. an order id whose digits the payment service takes for a PAN.
                        failures.append(str(error.details() if isinstance(error, grpc.aio.AioRpcError) else error))

                loop = await closed_loop(phase, clients, seconds, operation, quiet=True)
                if loop.failed and not queue:
                    raise RuntimeError("ran out of prepared checkouts: raise --prepared")
                done, elapsed, p50 = loop.done, loop.seconds, percentile(loop.latencies, 0.5)
                results[phase].append((done / elapsed, p50))
                print(
                    f"round {number} {phase:<6} {done:>5} checkouts {done / elapsed:7.1f}/s  p50 {p50 * 1000:6.1f} ms"
                    + (f"  ({len(failures)} failed: {sorted(set(failures))})" if failures else ""),
                    flush=True,
                )
        return results
    finally:
        for channel in channels:
            await channel.close()
        for process in reversed(processes):
            stop_process(process)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench saga", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in each phase (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both phases (default 3)")
    parser.add_argument("--prepared", type=int, default=400, help="checkouts prepared per phase (default 400)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1 or args.prepared < args.clients:
        parser.error("--clients and --rounds must be >= 1, --seconds > 0, --prepared >= --clients")
    results = asyncio.run(run(args.clients, args.seconds, args.rounds, args.prepared))
    saga = statistics.median(rate for rate, _ in results["saga"])
    direct = statistics.median(rate for rate, _ in results["direct"])
    saga_p50 = statistics.median(p50 for _, p50 in results["saga"])
    direct_p50 = statistics.median(p50 for _, p50 in results["direct"])
    print()
    print(f"median of {args.rounds}: saga {saga:.1f}/s (p50 {saga_p50 * 1000:.1f} ms), ", end="")
    print(f"direct {direct:.1f}/s (p50 {direct_p50 * 1000:.1f} ms)")
    print(f"ratio saga/direct {saga / direct:.2f}")
    return 0
