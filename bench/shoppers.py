"""Simulated shoppers: a catalogue seeded through the inventory API, and a whole checkout as a shopper
does it (CreateCart, AddItem per line, StartCheckout, PlaceOrder), each RPC timed into `Samples`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from bench.harness import Mesh, Samples, letters_id
from service_runtime.identity import AUTHORIZATION, SERVICE_TOKEN, ServiceTokens, mint_customer_token
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
    recipient_name="Bench", line1="1 Main St", city="New York", region="NY", postal_code="10001", country_code="US"
)
#: The RPCs of one checkout, in order (AddItem once per line).
CHECKOUT_RPCS = ("CreateCart", "AddItem", "StartCheckout", "PlaceOrder", "StartCheckout+PlaceOrder")
_RPC_TIMEOUT_SECONDS = 30.0
#: The checkout proper, without filling the cart: StartCheckout then PlaceOrder, one latency.
CHECKOUT_PROPER = "StartCheckout+PlaceOrder"


class CheckoutRefused(Exception):
    """PlaceOrder answered, but the checkout did not complete (its status and last failure)."""


@dataclass
class Cart:
    user: str
    metadata: tuple[tuple[str, str], ...]
    cart_id: str
    #: Which of the gateway connections this shopper uses (see Shoppers).
    lane: int = 0


class Shoppers:
    """Stubs on one channel per service, the bench's trusted-caller token, and customer tokens.

    `connections` > 1 opens that many connections to the cart and to the gateway, shoppers spread over them
    by their `lane`: hundreds of shoppers at once do not come through one HTTP/2 connection (a server refuses
    streams past its concurrent-stream limit with REFUSED_STREAM, which grpc's client does not queue: the
    caller sees UNAVAILABLE).
    """

    PER_CONNECTION = 100

    def __init__(self, mesh: Mesh, *, connections: int = 1) -> None:
        lanes = range(max(1, connections))
        # A channel option that differs per channel keeps grpc from sharing one connection between them.
        self._lane_channels = [
            grpc.aio.insecure_channel(mesh.addresses[name], options=[("bench.lane", lane)])
            for name in ("cart_svc", "gateway")
            for lane in lanes
        ]
        self._channels = {"inventory_svc": grpc.aio.insecure_channel(mesh.addresses["inventory_svc"])}
        self.inventory = inventory_grpc.InventoryServiceStub(self._channels["inventory_svc"])
        self._carts = [cart_grpc.CartServiceStub(channel) for channel in self._lane_channels[: len(lanes)]]
        self._gateways = [pb_grpc.CheckoutServiceStub(channel) for channel in self._lane_channels[len(lanes) :]]
        self.cart = self._carts[0]
        self.gateway = self._gateways[0]
        self._identity = CommonSettings.from_env(EnvReader({}), service_name="bench", default_port=0).identity
        self._tokens = ServiceTokens(self._identity)
        self._serial = itertools.count()

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._lane_channels]:
            await channel.close()

    def trusted(self) -> tuple[tuple[str, str], ...]:
        return ((SERVICE_TOKEN, self._tokens.current()),)

    def customer(self, user: str) -> tuple[tuple[str, str], ...]:
        token = mint_customer_token(self._identity, sub=user, lifetime_seconds=3600)
        return ((AUTHORIZATION, f"Bearer {token}"),)

    def new_user(self, prefix: str = "shopper") -> str:
        # 32 letters: the database floor gives every run of 20+ letters a fresh value per replay, users too.
        return f"{prefix}-{next(self._serial)}-{letters_id()}"

    async def seed(self, skus: Sequence[str], stock: int, *, price_minor: int = 1999) -> None:
        """Products `skus` with `stock` units each, through the API (so the stock ledger agrees)."""
        for sku in skus:
            await self.inventory.UpsertProduct(
                inventory_pb.UpsertProductRequest(
                    sku=sku,
                    name=f"Bench {sku}",
                    price=money_pb2.Money(currency_code="USD", amount_minor=price_minor),
                    weight_grams=300,
                ),
                metadata=self.trusted(),
            )
            await self.inventory.AdjustStock(
                inventory_pb.AdjustStockRequest(
                    sku=sku,
                    delta=stock,
                    reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED,
                    idempotency_key=f"bench-stock-{sku}",
                ),
                metadata=self.trusted(),
            )

    async def fill_cart(self, samples: Samples, user: str, skus: Sequence[str], *, lane: int = 0) -> Cart:
        """A new cart of `user` holding one unit of each of `skus` (`lane`: its gateway connection)."""
        metadata = self.customer(user)
        cart_stub = self._carts[lane % len(self._carts)]
        created = await samples.timed(
            "CreateCart",
            cart_stub.CreateCart(
                cart_pb.CreateCartRequest(user_id=user), metadata=metadata, timeout=_RPC_TIMEOUT_SECONDS
            ),
        )
        cart = Cart(user, metadata, created.cart.cart_id, lane)
        for sku in skus:
            await samples.timed(
                "AddItem",
                cart_stub.AddItem(
                    cart_pb.AddItemRequest(cart_id=cart.cart_id, sku=sku, quantity=1, idempotency_key=letters_id()),
                    metadata=metadata,
                    timeout=_RPC_TIMEOUT_SECONDS,
                ),
            )
        return cart

    async def start(self, samples: Samples, cart: Cart, *, key: str | None = None) -> str:
        started = await samples.timed(
            "StartCheckout",
            self._gateways[cart.lane % len(self._gateways)].StartCheckout(
                pb.StartCheckoutRequest(
                    cart_id=cart.cart_id,
                    shipping_address=ADDRESS,
                    shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                    idempotency_key=key or letters_id(),
                ),
                metadata=cart.metadata,
                timeout=_RPC_TIMEOUT_SECONDS,
            ),
        )
        checkout_id: str = started.checkout.checkout_id
        return checkout_id

    async def place(self, samples: Samples, cart: Cart, checkout_id: str, *, key: str | None = None) -> str:
        """PlaceOrder with the approving test card: the order id; CheckoutRefused unless COMPLETED."""
        placed = await samples.timed(
            "PlaceOrder",
            self._gateways[cart.lane % len(self._gateways)].PlaceOrder(
                pb.PlaceOrderRequest(
                    checkout_id=checkout_id, payment_token="tok_visa", idempotency_key=key or letters_id()
                ),
                metadata=cart.metadata,
                timeout=_RPC_TIMEOUT_SECONDS,
            ),
        )
        if placed.checkout.status != pb.CHECKOUT_STATUS_COMPLETED:
            status = pb.CheckoutStatus.Name(placed.checkout.status)
            samples.errors[f"PlaceOrder: {status}"] += 1
            raise CheckoutRefused(f"{status}: {placed.checkout.last_failure}")
        order_id: str = placed.checkout.order_id
        return order_id

    async def checkout(self, samples: Samples, skus: Sequence[str], *, lane: int = 0) -> str:
        """One whole checkout of one unit of each of `skus` by a new shopper (on connection `lane`): the order id."""
        cart = await self.fill_cart(samples, self.new_user(), skus, lane=lane)
        began = time.perf_counter()
        checkout_id = await self.start(samples, cart)
        order_id = await self.place(samples, cart, checkout_id)
        samples.add(CHECKOUT_PROPER, time.perf_counter() - began)
        return order_id
