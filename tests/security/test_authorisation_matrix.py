"""Who may do what to whose data: every RPC that takes an id or moves money or stock, called on a real
shopper's (alice's) cart, checkout, order, payment, shipment and reservation (and inventory's catalogue
and stock writes) by another customer, an anonymous session, alice with an expired token, a mesh
service and nobody, answers exactly the code its contract names:
NOT_FOUND for someone else's data (indistinguishable from an id that does not exist), PERMISSION_DENIED
for a trusted-only RPC or a session at the gateway, UNAUTHENTICATED for no or a bad identity. No refusal
names alice, her e-mail or her card, and none of them writes anything."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_status import rpc_status

from service_runtime.identity import AUTHORIZATION
from shop.cart.v1 import cart_service_pb2 as cart_pb
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb
from shop.gateway.v1 import gateway_service_pb2_grpc as gateway_grpc
from tests.hostile.conftest import SHOPPER, SKU, Mesh
from tests.hostile.state import StateReader, cache_or_bucket, difference
from tests.identity import Metadata, as_customer, as_service, as_session, customer_token
from tests.rpc_errors import failure_of

_keys = itertools.count(1)
OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

#: The callers that are not alice. `expired` is alice herself with a token that has run out.
CALLERS: dict[str, Metadata] = {
    "bob": as_customer("bob"),
    "session": as_session("sess-matrix"),
    "expired": ((AUTHORIZATION, f"Bearer {customer_token(sub=SHOPPER, lifetime_seconds=-60)}"),),
    "service": as_service("gateway"),
    "nobody": (),
}
ADDRESS = {
    "recipientName": "Alice",
    "line1": "1 Main St",
    "city": "New York",
    "region": "NY",
    "postalCode": "10001",
    "countryCode": "US",
}
USD = {"currencyCode": "USD", "amountMinor": "100"}

# What each kind of RPC answers each caller (None: allowed, not judged here).
CUSTOMER_SCOPED = {
    "bob": NOT_FOUND,
    "session": NOT_FOUND,
    "expired": UNAUTHENTICATED,
    "service": None,
    "nobody": UNAUTHENTICATED,
}
SIGNED_IN_ONLY = {
    "bob": NOT_FOUND,
    "session": DENIED,
    "expired": UNAUTHENTICATED,
    "service": UNAUTHENTICATED,
    "nobody": UNAUTHENTICATED,
}
TRUSTED_ONLY = {
    "bob": DENIED,
    "session": DENIED,
    "expired": UNAUTHENTICATED,
    "service": None,
    "nobody": UNAUTHENTICATED,
}
OWNER_NAMED = {"bob": DENIED, "session": DENIED, "expired": UNAUTHENTICATED, "service": None, "nobody": UNAUTHENTICATED}


@dataclass(frozen=True)
class Row:
    method: str  # "shop.cart.v1.CartService.GetCart"
    request: Mapping[str, Any]  # proto3 JSON, with {cart}, {checkout}, … replaced by alice's ids
    expected: Mapping[str, grpc.StatusCode | None]


def rows(
    service: str, expected: Mapping[str, grpc.StatusCode | None], requests: Mapping[str, Mapping[str, Any]]
) -> list[Row]:
    return [Row(f"{service}.{name}", request, expected) for name, request in requests.items()]


ROWS = [
    *rows(
        "shop.cart.v1.CartService",
        CUSTOMER_SCOPED,
        {
            "GetCart": {"cartId": "{cart}"},
            "AddItem": {"cartId": "{cart}", "sku": SKU, "quantity": 1, "idempotencyKey": "{key}"},
            "UpdateItemQuantity": {"cartId": "{cart}", "sku": SKU, "quantity": 3},
            "RemoveItem": {"cartId": "{cart}", "sku": SKU},
            "ClearCart": {"cartId": "{cart}"},
        },
    ),
    Row("shop.cart.v1.CartService.ConvertCart", {"cartId": "{cart}", "checkoutId": "c", "orderId": "o"}, TRUSTED_ONLY),
    *rows(
        "shop.gateway.v1.CheckoutService",
        SIGNED_IN_ONLY,
        {
            "GetCheckout": {"checkoutId": "{checkout}"},
            "PlaceOrder": {"checkoutId": "{checkout}", "paymentToken": "tok_visa", "idempotencyKey": "{key}"},
            "CancelCheckout": {"checkoutId": "{checkout}"},
            "UpdateCheckout": {
                "checkout": {"checkoutId": "{checkout}", "customerEmail": "evil@example.com"},
                "updateMask": "customerEmail",
            },
            "StartCheckout": {
                "cartId": "{cart}",
                "shippingAddress": ADDRESS,
                "shippingMethod": "SHIPPING_METHOD_STANDARD",
                "customerEmail": "x@example.com",
                "idempotencyKey": "{key}",
            },
        },
    ),
    *rows(
        "shop.gateway.v1.CheckoutAdminService",
        TRUSTED_ONLY,
        {
            "GetCheckoutDetails": {"checkoutId": "{checkout}"},
            "RetryCheckout": {"checkoutId": "{checkout}", "reason": "matrix"},
            "ResolveCheckout": {"checkoutId": "{checkout}", "reason": "matrix"},
            "ListCheckouts": {},
        },
    ),
    Row("shop.order.v1.OrderService.GetOrder", {"orderId": "{order}"}, CUSTOMER_SCOPED),
    Row(
        "shop.order.v1.OrderService.CancelOrder",
        {"orderId": "{order}", "reason": "CANCEL_REASON_CUSTOMER_REQUEST", "idempotencyKey": "{key}"},
        CUSTOMER_SCOPED,
    ),
    Row("shop.order.v1.OrderService.ListOrders", {"userId": SHOPPER}, OWNER_NAMED),
    *rows(
        "shop.order.v1.OrderService",
        TRUSTED_ONLY,
        {
            "ConfirmOrder": {"orderId": "{order}"},
            "MarkShipped": {"orderId": "{order}", "trackingNumber": "T1", "carrier": "sandbox-post"},
            "MarkDelivered": {"orderId": "{order}"},
        },
    ),
    *rows(
        "shop.payment.v1.PaymentService",
        TRUSTED_ONLY,
        {
            "AuthorizePayment": {
                "checkoutId": "{checkout}",
                "amount": USD,
                "paymentToken": "tok_visa",
                "idempotencyKey": "{key}",
            },
            "CapturePayment": {"paymentId": "{payment}", "orderId": "{order}", "idempotencyKey": "{key}"},
            "VoidPayment": {"paymentId": "{payment}", "reason": "matrix"},
            "RefundPayment": {
                "paymentId": "{payment}",
                "amount": USD,
                "reason": "REFUND_REASON_CUSTOMER_REQUEST",
                "idempotencyKey": "{key}",
            },
            "GetPayment": {"paymentId": "{payment}"},
            "ListPayments": {"checkoutId": "{checkout}"},
        },
    ),
    *rows(
        "shop.shipping.v1.ShippingService",
        TRUSTED_ONLY,
        {
            "CreateShipment": {
                "orderId": "{order}",
                "shippingAddress": ADDRESS,
                "shippingMethod": "SHIPPING_METHOD_STANDARD",
                "items": [{"sku": SKU, "quantity": 1}],
            },
            "GetShipment": {"shipmentId": "{shipment}"},
            "CancelShipment": {"shipmentId": "{shipment}"},
            "RecordCarrierScan": {
                "eventId": "m-scan",
                "shipmentId": "{shipment}",
                "kind": "CARRIER_SCAN_KIND_IN_TRANSIT",
            },
        },
    ),
    Row("shop.notification.v1.NotificationService.ListNotifications", {"userId": SHOPPER}, OWNER_NAMED),
    # Inventory: the catalogue reads are open to anyone; its writes, alice's reservation and her order's stock
    # are for the mesh only.
    *rows(
        "shop.inventory.v1.InventoryService",
        TRUSTED_ONLY,
        {
            "UpsertProduct": {"sku": SKU, "name": "Free mug", "price": USD, "weightGrams": 1},
            "DiscontinueProduct": {"sku": SKU},
            "AdjustStock": {
                "sku": SKU,
                "delta": 1000,
                "reason": "STOCK_ADJUSTMENT_REASON_RECEIVED",
                "idempotencyKey": "{key}",
            },
            "ReserveInventory": {"checkoutId": "{key}", "items": [{"sku": SKU, "quantity": 1}]},
            "GetReservation": {"checkoutId": "{checkout}"},
            "ExtendReservation": {"checkoutId": "{checkout}", "ttl": "600s"},
            "ConfirmReservation": {"checkoutId": "{checkout}", "orderId": "{order}"},
            "ReleaseReservation": {"checkoutId": "{checkout}", "reason": "matrix"},
            "ReturnStock": {"orderId": "{order}", "items": [{"sku": SKU, "quantity": 1}], "reason": "matrix"},
        },
    ),
]


@dataclass(frozen=True)
class Alice:
    ids: dict[str, str]
    #: What no refusal to anyone else may contain.
    secrets: tuple[str, ...]


@pytest.fixture
async def alice(mesh: Mesh) -> AsyncIterator[Alice]:
    """Alice's placed order (its checkout, payment and shipment) and a fresh cart."""
    shop = mesh.shop
    checkout_id = mesh.real_ids[2]
    async with grpc.aio.insecure_channel(mesh.addresses["shop.gateway.v1.CheckoutService"]) as channel:
        shop.gateway = gateway_grpc.CheckoutServiceStub(channel)
        await shop.place(SHOPPER, checkout_id)
        checkout = await shop.settled(SHOPPER, checkout_id)
        shop.gateway = None
    assert checkout.status == gateway_pb.CHECKOUT_STATUS_COMPLETED, checkout
    # The order's events reach the notification service after PlaceOrder answers: wait until every one is in
    # its inbox, or a refused call judged meanwhile would seem to have written them.
    for _ in range(300):
        [row] = await shop.rows(
            "SELECT (SELECT count(*) FROM orders.order_events WHERE order_id = %s)"
            " - (SELECT count(*) FROM notification.processed_events WHERE order_id = %s) AS behind",
            checkout.order_id,
            checkout.order_id,
        )
        if row["behind"] == 0:
            break
        await asyncio.sleep(0.1)
    assert row["behind"] == 0, "the order's events never reached the notification service"
    cart = await shop.cart.CreateCart(cart_pb.CreateCartRequest(user_id=SHOPPER), metadata=as_customer(SHOPPER))
    shipments = await shop.rows("SELECT shipment_id FROM shipping.shipments LIMIT 1")
    ids = {
        "cart": cart.cart.cart_id,
        "checkout": checkout_id,
        "order": checkout.order_id,
        "payment": checkout.payment_id,
        "shipment": shipments[0]["shipment_id"] if shipments else "shp_none",
    }
    assert all(ids.values()), ids
    yield Alice(ids=ids, secrets=(f"{SHOPPER}@example.com", "4242", "tok_visa"))


def _request(method_name: str, template: Mapping[str, Any], ids: dict[str, str]) -> Any:
    method = descriptor_pool.Default().FindMethodByName(method_name)
    filled = _fill(template, ids)
    return json_format.ParseDict(filled, message_factory.GetMessageClass(method.input_type)())


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if value == "{key}":
        return f"matrix-{next(_keys)}"  # a fresh idempotency key for every call
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


async def _call(mesh: Mesh, method_name: str, request: Any, metadata: Metadata) -> grpc.aio.AioRpcError | None:
    method = descriptor_pool.Default().FindMethodByName(method_name)
    service = method.containing_service.full_name
    async with grpc.aio.insecure_channel(mesh.addresses[service]) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[Any, bytes] = channel.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=lambda data: data,
        )
        try:
            await call(request, metadata=metadata, timeout=15)
        except grpc.aio.AioRpcError as error:
            return error
    return None


def _everything_said(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return f"{error.details()} {status}"


async def test_every_rpc_refuses_everyone_but_the_owner_with_its_documented_code_and_leaks_nothing(
    mesh: Mesh, alice: Alice, redis_url: str, redis_prefix: str
):
    problems: list[str] = []
    judged = 0
    async with StateReader(mesh.shop.database_url, redis_url, redis_prefix, cache_or_bucket) as reader:
        for row in ROWS:
            for caller, expected in row.expected.items():
                if expected is not None:
                    judged += 1
                    problems += await _judge(mesh, reader, alice, row, caller, expected)
    assert judged >= 120
    assert not problems, "\n".join(problems)


async def _judge(
    mesh: Mesh, reader: StateReader, alice: Alice, row: Row, caller: str, expected: grpc.StatusCode
) -> list[str]:
    """What is wrong with `caller`'s call of `row` on alice's data: the code, a leak, a write, or a
    NOT_FOUND that reads unlike the one for an id that does not exist."""
    where = f"{row.method} as {caller}"
    before = await reader.read()
    error = await _call(mesh, row.method, _request(row.method, row.request, alice.ids), CALLERS[caller])
    written = difference(before, await reader.read())
    problems = [f"{where}: refused, yet wrote {written}"] if written else []
    if error is None:
        return [*problems, f"{where}: answered OK, expected {expected.name}"]
    failure = failure_of(error)
    if failure.code != expected:
        problems.append(f"{where}: {failure.code.name} ({failure.reason}), expected {expected.name}")
    said = _everything_said(error)
    named_alice = SHOPPER in str(row.request)
    leaks = [secret for secret in (*alice.secrets, *(() if named_alice else (SHOPPER,))) if secret in said]
    if leaks:
        problems.append(f"{where}: the refusal discloses {leaks}: {said[:300]}")
    if expected == NOT_FOUND:
        unknown = {name: f"{value}x9" for name, value in alice.ids.items()}
        stranger = await _call(mesh, row.method, _request(row.method, row.request, unknown), CALLERS[caller])
        assert stranger is not None, where
        theirs = failure_of(stranger)
        mine = (failure.code, failure.reason, _unnamed(failure.message, alice.ids))
        if mine != (theirs.code, theirs.reason, _unnamed(theirs.message, unknown)):
            problems.append(f"{where}: someone else's id answers unlike an unknown one: {failure} vs {theirs}")
    return problems


def _unnamed(message: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        message = message.replace(value, f"<{name}>")
    return message
