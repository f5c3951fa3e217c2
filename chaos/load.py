"""A steady, bounded checkout load: shoppers that each fill a cart and check it out through the gateway.

Each attempt is one new shopper (a JWT minted with the mesh's development key): CreateCart and AddItem on
the cart service (as the BFF does), then the gateway's StartCheckout and PlaceOrder with the sandbox's
approving test card `tok_visa`, each with its own idempotency key. A call that fails in transport
(UNAVAILABLE, DEADLINE_EXCEEDED, …) is retried with the same key, as a client of the contract must;
a refusal is final. The load is bounded: at most `max_attempts` attempts, and it stops when told.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt

from service_runtime.identity import AUTHORIZATION, SERVICE_TOKEN, ServiceTokens
from service_runtime.settings import CommonSettings, EnvReader
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2

ADDRESS = address_pb2.Address(
    recipient_name="Chaos Shopper",
    line1="1 Main St",
    city="New York",
    region="NY",
    postal_code="10001",
    country_code="US",
)
#: The drill's catalogue: SKU → (price in cents, units received). One SKU runs short on purpose, so
#: refusals for want of stock happen under faults too.
CATALOGUE: dict[str, tuple[int, int]] = {
    "CHAOS-MUG": (1299, 100_000),
    "CHAOS-TEE": (2500, 100_000),
    "CHAOS-CAP": (1800, 100_000),
    "CHAOS-RARE": (9900, 25),
}
RARE_SKU = "CHAOS-RARE"
RARE_UNITS = 25
#: Share of carts that also hold the rare SKU.
RARE_SHARE = 0.1
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
CALL_TRIES = 4
FAILED_PAUSE_SECONDS = 0.5
CART_TIMEOUT_SECONDS = 5.0
START_TIMEOUT_SECONDS = 10.0
PLACE_TIMEOUT_SECONDS = 20.0
#: Ids and keys as letters: the payment service refuses any field holding a digit run that looks like a PAN.
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def letters_id() -> str:
    return uuid.uuid4().hex.translate(_LETTERS)


@dataclass
class Attempt:
    """One shopper's checkout as the client saw it."""

    number: int
    user: str
    #: The fault phase it started in.
    phase: str
    started: float
    ended: float = 0.0
    checkout_id: str = ""
    #: "completed", a checkout status ("quoted", "placing"), or the last error's code ("UNAVAILABLE").
    outcome: str = "running"


@dataclass
class Load:
    gateway_address: str
    cart_address: str
    clients: int
    max_attempts: int
    seed: int = 14
    attempts: list[Attempt] = field(default_factory=list)
    #: The phase new attempts are counted in.
    phase: str = "warm-up"
    _running: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _in_flight: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        common = CommonSettings.from_env(EnvReader({}), service_name="chaos", default_port=0)
        self._identity = common
        self._gateway_channel = grpc.aio.insecure_channel(self.gateway_address)
        self._cart_channel = grpc.aio.insecure_channel(self.cart_address)
        self._gateway = pb_grpc.CheckoutServiceStub(self._gateway_channel)
        self._cart = cart_grpc.CartServiceStub(self._cart_channel)

    # ------------------------------------------------------------------------------ control

    def resume(self) -> None:
        self._running.set()

    async def pause(self, timeout: float = 60.0) -> None:
        """No new attempts; returns once the attempts in flight ended (or after `timeout`)."""
        self._running.clear()
        give_up = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < give_up:
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def close(self) -> None:
        self._stopping = True
        self._running.set()
        await self._gateway_channel.close()
        await self._cart_channel.close()

    @property
    def exhausted(self) -> bool:
        return len(self.attempts) >= self.max_attempts

    def completed_after(self, moment: float) -> Attempt | None:
        """The first attempt that started at or after `moment` and COMPLETED (by end time)."""
        done = [a for a in self.attempts if a.started >= moment and a.outcome == "completed"]
        return min(done, key=lambda a: a.ended) if done else None

    # ------------------------------------------------------------------------------ shoppers

    async def _client(self) -> None:
        while True:
            await self._running.wait()
            if self._stopping or self.exhausted:
                return
            attempt = Attempt(len(self.attempts) + 1, f"chaos-{letters_id()[:16]}", self.phase, time.monotonic())
            self.attempts.append(attempt)
            self._in_flight += 1
            try:
                attempt.outcome = await self._checkout(attempt)
            except grpc.aio.AioRpcError as error:
                attempt.outcome = error.code().name
            finally:
                attempt.ended = time.monotonic()
                self._in_flight -= 1
            if attempt.outcome != "completed":
                await asyncio.sleep(FAILED_PAUSE_SECONDS)  # a shopper who failed does not retry at once

    def _customer(self, user: str) -> tuple[tuple[str, str], ...]:
        now = int(time.time())
        common = self._identity
        claims = {"iss": common.auth_jwt_issuer, "aud": common.auth_jwt_audience, "sub": user, "exp": now + 3600}
        token = jwt.encode(claims, common.auth_jwt_keys[0], algorithm=common.auth_jwt_algorithm)
        return ((AUTHORIZATION, f"Bearer {token}"),)

    async def _checkout(self, attempt: Attempt) -> str:
        customer = self._customer(attempt.user)
        cart = await _retrying(
            lambda: self._cart.CreateCart(
                cart_pb.CreateCartRequest(user_id=attempt.user), metadata=customer, timeout=CART_TIMEOUT_SECONDS
            )
        )
        cart_id = cart.cart.cart_id
        plenty = sorted(sku for sku, (_, units) in CATALOGUE.items() if units > RARE_UNITS)
        skus = self._random.sample(plenty, k=self._random.choice((1, 1, 2)))
        if self._random.random() < RARE_SHARE:
            skus.append(RARE_SKU)
        for sku in skus:
            add = cart_pb.AddItemRequest(
                cart_id=cart_id, sku=sku, quantity=self._random.choice((1, 1, 2)), idempotency_key=letters_id()
            )

            def add_item(add: cart_pb.AddItemRequest = add) -> Any:
                return self._cart.AddItem(add, metadata=customer, timeout=CART_TIMEOUT_SECONDS)

            await _retrying(add_item)
        start_key = letters_id()
        started = await _retrying(
            lambda: self._gateway.StartCheckout(
                pb.StartCheckoutRequest(
                    cart_id=cart_id,
                    shipping_address=ADDRESS,
                    shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                    idempotency_key=start_key,
                ),
                metadata=customer,
                timeout=START_TIMEOUT_SECONDS,
            )
        )
        attempt.checkout_id = started.checkout.checkout_id
        place_key = letters_id()
        placed = await _retrying(
            lambda: self._gateway.PlaceOrder(
                pb.PlaceOrderRequest(
                    checkout_id=attempt.checkout_id, payment_token="tok_visa", idempotency_key=place_key
                ),
                metadata=customer,
                timeout=PLACE_TIMEOUT_SECONDS,
            )
        )
        return str(pb.CheckoutStatus.Name(placed.checkout.status)).removeprefix("CHECKOUT_STATUS_").lower()


async def _retrying(call: Callable[[], Any]) -> Any:
    """The call, retried with the same request (and so the same idempotency key) on transport failures."""
    for attempt in range(1, CALL_TRIES + 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE or attempt == CALL_TRIES:
                raise
            await asyncio.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


async def seed_catalogue(inventory_address: str) -> dict[str, int]:
    """The drill's products and their stock, through the inventory API; returns units received per SKU."""
    tokens = ServiceTokens(CommonSettings.from_env(EnvReader({}), service_name="chaos", default_port=0).identity)
    async with grpc.aio.insecure_channel(inventory_address) as channel:
        inventory = inventory_grpc.InventoryServiceStub(channel)
        trusted = ((SERVICE_TOKEN, tokens.current()),)
        for sku, (price, units) in CATALOGUE.items():
            await inventory.UpsertProduct(
                inventory_pb.UpsertProductRequest(
                    sku=sku,
                    name=f"Chaos {sku.split('-')[1].lower()}",
                    price=money_pb2.Money(currency_code="USD", amount_minor=price),
                    weight_grams=200,
                ),
                metadata=trusted,
                timeout=10,
            )
            await inventory.AdjustStock(
                inventory_pb.AdjustStockRequest(
                    sku=sku,
                    delta=units,
                    reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED,
                    idempotency_key=f"chaos-receipt-{sku}",
                ),
                metadata=trusted,
                timeout=10,
            )
    return {sku: units for sku, (_, units) in CATALOGUE.items()}


def outcome_counts(attempts: Sequence[Attempt]) -> dict[str, int]:
    """How the clients saw their attempts end: "completed", a status, or an error code."""
    counts: dict[str, int] = {}
    for attempt in attempts:
        counts[attempt.outcome] = counts.get(attempt.outcome, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
