"""`checkoutctl demo`: one whole checkout through a running mesh, as a demo customer, step by step.

Sign in (a JWT minted with the mesh's development key) → pick in-stock products of the demo catalogue
(devstack/seed.py) → create the customer's cart → add the items → StartCheckout (address, shipping
method: the quote, stock reserved) → PlaceOrder with a sandbox test card (the saga) → wait while it is
PLACING → the saga's steps and the order. Every call carries its own idempotency key, derived from one
run id, so the calls of a run are safe to retry and two runs never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from rich.console import Console

from checkoutctl import render
from checkoutctl.failures import CtlError, describe, refused
from checkoutctl.mesh import Mesh
from devstack.seed import DEMO_CATALOGUE
from service_runtime.downstream import DownstreamError
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.cart.v1 import cart_service_pb2_grpc as cart_grpc
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2 as order_pb
from shop.order.v1 import order_service_pb2_grpc as order_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2

R = TypeVar("R")

#: Quantities of the first in-stock demo products, in catalogue order.
DEMO_QUANTITIES = (2, 1, 1)
DEMO_ADDRESS = address_pb2.Address(
    recipient_name="Dana Demo",
    line1="1 Main St",
    city="New York",
    region="NY",
    postal_code="10001",
    country_code="US",
)
#: How often a PLACING checkout is read again while waiting for its saga.
POLL_SECONDS = 0.5
#: How often the checkout is read while PlaceOrder runs, to print the saga's steps as they happen (below
#: the gateway's per-user refill rate of 5 calls a second, so watching never rate-limits the demo).
WATCH_SECONDS = 0.25


@dataclass(frozen=True)
class DemoOptions:
    #: The demo customer (JWT `sub`); a fresh one per run unless given.
    user_id: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:8]}")
    #: A sandbox PSP test token (README, payment service): tok_visa approves.
    payment_token: str = "tok_visa"
    shipping_method: shipping_pb.ShippingMethod.ValueType = shipping_pb.SHIPPING_METHOD_STANDARD
    email: str = "dana.demo@example.com"
    #: How long to wait for a saga still PLACING when PlaceOrder answers.
    wait_seconds: float = 30.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class DemoResult:
    checkout_id: str
    order_id: str


class Steps:
    """Prints numbered steps as they start and how each went."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._number = 0
        self._started = 0.0

    def begin(self, text: str) -> None:
        self._number += 1
        self._started = time.monotonic()
        self._console.print(f"[bold]{self._number}.[/bold] {text} …", end=" ")

    def heading(self, text: str) -> None:
        """A step whose progress follows on lines of its own."""
        self._number += 1
        self._console.print(f"[bold]{self._number}.[/bold] {text}")

    def done(self, text: str = "ok") -> None:
        millis = (time.monotonic() - self._started) * 1000
        self._console.print(f"[green]{text}[/green] [dim]({millis:.0f} ms)[/dim]")

    def failed(self) -> None:
        self._console.print("[red]failed[/red]")


async def run_demo(mesh: Mesh, options: DemoOptions, console: Console) -> DemoResult:
    """Runs the checkout; returns its ids when it COMPLETED, raises CtlError otherwise."""
    targets = mesh.targets
    await mesh.require_serving(
        {"gateway": targets.gateway, "cart": targets.cart, "inventory": targets.inventory, "order": targets.order}
    )
    customer = mesh.as_customer(options.user_id)
    steps = Steps(console)
    inventory = inventory_grpc.InventoryServiceStub(mesh.public(targets.inventory))
    cart = cart_grpc.CartServiceStub(mesh.public(targets.cart))
    gateway = gateway_grpc.CheckoutServiceStub(mesh.public(targets.gateway))
    orders = order_grpc.OrderServiceStub(mesh.public(targets.order))

    async def call(action: str, rpc: grpc.aio.UnaryUnaryMultiCallable[Any, R], request: Any) -> R:
        try:
            return await rpc(request, metadata=customer)
        except grpc.aio.AioRpcError as error:
            steps.failed()
            raise refused(action, error) from None

    steps.begin(f"Signing in as demo customer [cyan]{options.user_id}[/cyan] and reading the demo catalogue")
    products = await call(
        "BatchGetProducts",
        inventory.BatchGetProducts,
        inventory_pb.BatchGetProductsRequest(skus=[product.sku for product in DEMO_CATALOGUE]),
    )
    items = pick_items(products)
    steps.done(f"{len(products.products)} products, {len(items)} picked")

    steps.begin("Creating the customer's cart")
    created = await call("CreateCart", cart.CreateCart, cart_pb.CreateCartRequest(user_id=options.user_id))
    cart_id = created.cart.cart_id
    steps.done(f"cart {cart_id}")

    for sku, quantity in items:
        steps.begin(f"Adding {quantity} × {sku}")
        await call(
            "AddItem",
            cart.AddItem,
            cart_pb.AddItemRequest(
                cart_id=cart_id, sku=sku, quantity=quantity, idempotency_key=f"{options.run_id}:add:{sku}"
            ),
        )
        steps.done()
    filled = await call("GetCart", cart.GetCart, cart_pb.GetCartRequest(cart_id=cart_id))
    console.print(render.cart_table(filled.cart))

    steps.begin(f"Starting the checkout: {render.shipping_method(options.shipping_method)} shipping, stock reserved")
    started = await call(
        "StartCheckout",
        gateway.StartCheckout,
        gateway_pb.StartCheckoutRequest(
            cart_id=cart_id,
            shipping_address=DEMO_ADDRESS,
            shipping_method=options.shipping_method,
            customer_email=options.email,
            idempotency_key=f"{options.run_id}:start",
        ),
    )
    checkout = started.checkout
    steps.done(f"checkout {checkout.checkout_id} {render.checkout_status(checkout.status)}")
    console.print(render.shipping_options_table(checkout.available_shipping_options, checkout.shipping_method))
    console.print(render.quote_table(checkout))

    steps.heading(f"Placing the order with test card [cyan]{options.payment_token}[/cyan]; the saga's steps:")
    progress = SagaProgress(console)
    request = gateway_pb.PlaceOrderRequest(
        checkout_id=checkout.checkout_id, payment_token=options.payment_token, idempotency_key=f"{options.run_id}:place"
    )
    placing = asyncio.ensure_future(gateway.PlaceOrder(request, metadata=customer))
    watcher = asyncio.ensure_future(_watch(gateway, customer, checkout.checkout_id, progress))
    try:
        placed = await placing
    except grpc.aio.AioRpcError as error:
        raise CtlError(_place_refused(checkout.checkout_id, error)) from None
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    checkout = placed.checkout
    progress.show(checkout)
    if checkout.status == gateway_pb.CHECKOUT_STATUS_PLACING:
        console.print(f"   PlaceOrder answered {render.checkout_status(checkout.status)}; waiting for the saga …")
        checkout = await _wait(gateway, customer, checkout, options.wait_seconds, progress)
    console.print(f"   checkout {render.checkout_status(checkout.status)}")
    console.print(render.steps_table(checkout))
    if checkout.status != gateway_pb.CHECKOUT_STATUS_COMPLETED:
        console.print(render.checkout_summary(checkout))
        raise CtlError(_unfinished(checkout, options.wait_seconds))

    order = await call("GetOrder", orders.GetOrder, order_pb.GetOrderRequest(order_id=checkout.order_id))
    console.print(render.order_table(order.order))
    card = checkout.payment_card
    paid = f" with {card.brand} •••• {card.last4}" if checkout.HasField("payment_card") else ""
    console.print(
        f"[bold green]Checkout {checkout.checkout_id} COMPLETED[/bold green]: order {checkout.order_id} "
        f"{render.order_status(order.order.status)}, {render.money(order.order.total)} paid{paid}.",
        soft_wrap=True,
    )
    console.print(f"See its saga with: checkoutctl show {checkout.checkout_id}", soft_wrap=True)
    return DemoResult(checkout_id=checkout.checkout_id, order_id=checkout.order_id)


def pick_items(products: inventory_pb.BatchGetProductsResponse) -> list[tuple[str, int]]:
    """The first demo products with enough available stock, with DEMO_QUANTITIES; CtlError when the
    catalogue is missing or sold out."""
    if products.missing_skus and not products.products:
        raise CtlError(
            "the demo catalogue is not in inventory (missing " + ", ".join(products.missing_skus) + "): "
            "`make up` seeds it when the mesh starts"
        )
    items: list[tuple[str, int]] = []
    for product in products.products:
        if len(items) == len(DEMO_QUANTITIES):
            break
        quantity = DEMO_QUANTITIES[len(items)]
        if not product.discontinued and product.available >= quantity:
            items.append((product.sku, quantity))
    if not items:
        raise CtlError("the demo catalogue is sold out: `make reset` then `make up` restocks it")
    return items


class SagaProgress:
    """Prints each saga step once per status it reaches (RUNNING, SUCCEEDED, FAILED, COMPENSATED…), as
    GetCheckout reveals them."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._seen: set[tuple[int, int, int]] = set()

    def show(self, checkout: gateway_pb.Checkout) -> None:
        for state in checkout.steps:
            seen = (state.step, state.status, state.attempts)
            if seen in self._seen or state.status == gateway_pb.SAGA_STEP_STATUS_PENDING:
                continue
            self._seen.add(seen)
            took = render.elapsed(state, "start_time", "end_time")
            error = " ".join(part for part in (state.last_error_code, state.last_error_reason) if part)
            details = ", ".join(
                part for part in (f"attempt {state.attempts}" if state.attempts > 1 else "", took, error) if part
            )
            self._console.print(
                f"   ↳ {render.step_name(state.step):<20} {render.step_status(state.status)}"
                + (f" [dim]({details})[/dim]" if details else "")
            )


async def _watch(
    gateway: gateway_grpc.CheckoutServiceAsyncStub,
    customer: tuple[tuple[str, str], ...],
    checkout_id: str,
    progress: SagaProgress,
) -> None:
    """While PlaceOrder runs: reads the checkout every WATCH_SECONDS and prints the steps it reached.
    For display only, so a failed read is skipped (PlaceOrder's own answer decides the outcome)."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            response = await gateway.GetCheckout(
                gateway_pb.GetCheckoutRequest(checkout_id=checkout_id), metadata=customer
            )
        except grpc.aio.AioRpcError:
            continue
        progress.show(response.checkout)


def _place_refused(checkout_id: str, error: grpc.aio.AioRpcError) -> str:
    line = describe("PlaceOrder", error)
    if DownstreamError.of(error).metadata.get("paymentId"):
        line += (
            f"; the checkout stays QUOTED with its stock held, so another card can pay for it "
            f"(`checkoutctl show {checkout_id}`)"
        )
    return line


async def _wait(
    gateway: gateway_grpc.CheckoutServiceAsyncStub,
    customer: tuple[tuple[str, str], ...],
    checkout: gateway_pb.Checkout,
    wait_seconds: float,
    progress: SagaProgress,
) -> gateway_pb.Checkout:
    give_up = time.monotonic() + wait_seconds
    while checkout.status == gateway_pb.CHECKOUT_STATUS_PLACING and time.monotonic() < give_up:
        await asyncio.sleep(POLL_SECONDS)
        try:
            response = await gateway.GetCheckout(
                gateway_pb.GetCheckoutRequest(checkout_id=checkout.checkout_id), metadata=customer
            )
        except grpc.aio.AioRpcError as error:
            raise refused("GetCheckout", error) from None
        checkout = response.checkout
        progress.show(checkout)
    return checkout


def _unfinished(checkout: gateway_pb.Checkout, wait_seconds: float) -> str:
    status = render.checkout_status(checkout.status)
    follow = f"`checkoutctl show {checkout.checkout_id}`"
    if checkout.status == gateway_pb.CHECKOUT_STATUS_PLACING:
        return f"checkout {checkout.checkout_id} is still PLACING after {wait_seconds:g} s; follow it with {follow}"
    why = ""
    if checkout.HasField("last_failure"):
        why = f": {checkout.last_failure.reason}: {checkout.last_failure.message}"
    if checkout.status == gateway_pb.CHECKOUT_STATUS_QUOTED:
        return (
            f"the payment did not go through{why}; checkout {checkout.checkout_id} stays QUOTED with its stock "
            f"held, so another card can pay for it ({follow})"
        )
    return f"checkout {checkout.checkout_id} ended {status}{why}; see {follow}"
