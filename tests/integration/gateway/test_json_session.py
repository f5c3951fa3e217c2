"""A whole shopping session over HTTP/JSON, as a BFF behind a gRPC-JSON transcoder drives it: each call
is an HTTP verb, path and proto3 JSON body, routed by the contracts' google.api.http rules to its RPC
(path variables and body fields into the request, the response back to proto3 JSON), exactly as
Envoy's transcoder does with generated/shop/descriptors.binpb. Cart, shipping options, checkout, order
status and cancel."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from shop.cart.v1 import cart_service_pb2
from shop.gateway.v1 import gateway_service_pb2
from shop.order.v1 import order_service_pb2
from tests.identity import customer_token

from .conftest import ADDRESS, Shop

SERVICES = {
    "shop.cart.v1.CartService": cart_service_pb2,
    "shop.gateway.v1.CheckoutService": gateway_service_pb2,
    "shop.order.v1.OrderService": order_service_pb2,
}


def _routes() -> list[tuple[str, re.Pattern[str], str, Any]]:
    routes = []
    for service_name in SERVICES:
        service = descriptor_pool.Default().FindServiceByName(service_name)
        for method in service.methods:
            options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
            extensions: Any = options.Extensions
            http: Any = annotations_pb2.http
            if not options.HasExtension(http):
                continue
            rule = extensions[http]
            verb = rule.WhichOneof("pattern")
            template = getattr(rule, verb)
            pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
            pattern = re.sub(r"{([a-z_]+)}", r"(?P<\1>[^/:]+)", pattern)
            routes.append((verb.upper(), re.compile(f"^{pattern}$"), rule.body, method))
    return routes


class Transcoder:
    """HTTP/JSON in, gRPC out, per the google.api.http rules (body "*" or none; path variables)."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self._routes = _routes()
        self._channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def call(self, verb: str, path: str, body: Mapping[str, Any] | None, token: str) -> tuple[int, Any]:
        for route_verb, pattern, body_rule, method in self._routes:
            matched = pattern.match(path)
            if route_verb != verb or matched is None:
                continue
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            request = request_class()
            if body is not None:
                assert body_rule == "*", f"{method.full_name}: body {body_rule!r}"
                json_format.Parse(json.dumps(body), request)
            for name, value in matched.groupdict().items():
                setattr(request, name, value)
            call = self._channels[method.containing_service.full_name].unary_unary(
                f"/{method.containing_service.full_name}/{method.name}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            try:
                response = await call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
            except grpc.aio.AioRpcError as error:
                return 400 if error.code() != grpc.StatusCode.NOT_FOUND else 404, {"message": error.details()}
            return 200, json.loads(json_format.MessageToJson(response))
        return 404, {"message": f"no route for {verb} {path}"}


async def test_a_whole_shopping_session_runs_over_proto3_json(gateway: Shop, start_service):
    await gateway.product("JSON-MUG", 5, price_minor=1250)
    addresses = {
        "shop.cart.v1.CartService": gateway.targets["CART_TARGET"],
        "shop.order.v1.OrderService": gateway.targets["ORDER_TARGET"],
        "shop.gateway.v1.CheckoutService": gateway.gateway_address,
    }
    http = Transcoder(addresses)
    token = customer_token(sub="json-user")
    try:
        status, created = await http.call("POST", "/v1/carts", {"userId": "json-user"}, token)
        assert status == 200, created
        cart_id = created["cart"]["cartId"]
        status, added = await http.call(
            "POST", f"/v1/carts/{cart_id}/items", {"sku": "JSON-MUG", "quantity": 2, "idempotencyKey": "j1"}, token
        )
        assert status == 200 and added["cart"]["subtotal"] == {"currencyCode": "USD", "amountMinor": "2500"}

        address = {
            "recipientName": ADDRESS["recipient_name"],
            "line1": ADDRESS["line1"],
            "city": ADDRESS["city"],
            "region": ADDRESS["region"],
            "postalCode": ADDRESS["postal_code"],
            "countryCode": ADDRESS["country_code"],
        }
        status, started = await http.call(
            "POST",
            "/v1/checkouts",
            {
                "cartId": cart_id,
                "shippingAddress": address,
                "shippingMethod": "SHIPPING_METHOD_STANDARD",
                "idempotencyKey": "json-start",
            },
            token,
        )
        assert status == 200, started
        checkout = started["checkout"]
        assert checkout["status"] == "CHECKOUT_STATUS_QUOTED"
        assert checkout["availableShippingOptions"][0]["shippingMethod"].startswith("SHIPPING_METHOD_")
        assert checkout["quote"]["taxRatePpm"] == 88750
        checkout_id = checkout["checkoutId"]

        status, placed = await http.call(
            "POST",
            f"/v1/checkouts/{checkout_id}:placeOrder",
            {"paymentToken": "tok_visa", "idempotencyKey": "json-pay"},
            token,
        )
        assert status == 200, placed
        assert placed["checkout"]["status"] == "CHECKOUT_STATUS_COMPLETED"
        order_id = placed["checkout"]["orderId"]

        status, shown = await http.call("GET", f"/v1/checkouts/{checkout_id}", None, token)
        assert status == 200 and shown["checkout"]["paymentCard"]["last4"] == "4242"
        status, order = await http.call("GET", f"/v1/orders/{order_id}", None, token)
        assert status == 200 and order["order"]["status"] == "ORDER_STATUS_CONFIRMED"

        status, cancelled = await http.call(
            "POST",
            f"/v1/orders/{order_id}:cancel",
            {"reason": "CANCEL_REASON_CUSTOMER_REQUEST", "idempotencyKey": "json-cancel"},
            token,
        )
        assert status == 200, cancelled
        assert cancelled["order"]["status"] == "ORDER_STATUS_CANCELLED"
    finally:
        await http.close()
