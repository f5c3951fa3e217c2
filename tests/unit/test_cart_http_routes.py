"""The cart's google.api.http routes (for a BFF behind a gRPC-JSON transcoder) match their requests:
every path variable is a field of the request message, the body is "*" or a field, GET and DELETE
carry no body, and every customer-facing RPC has a route while the mesh-only ConvertCart has none."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from shop.cart.v1 import cart_service_pb2

CART = cart_service_pb2.DESCRIPTOR.services_by_name["CartService"]
EXPECTED = {
    "CreateCart": ("post", "/v1/carts"),
    "GetCart": ("get", "/v1/carts/{cart_id}"),
    "AddItem": ("post", "/v1/carts/{cart_id}/items"),
    "UpdateItemQuantity": ("patch", "/v1/carts/{cart_id}/items/{sku}"),
    "RemoveItem": ("delete", "/v1/carts/{cart_id}/items/{sku}"),
    "ClearCart": ("post", "/v1/carts/{cart_id}:clear"),
    "MergeCarts": ("post", "/v1/carts/{source_cart_id}:merge"),
}


def route(method: MethodDescriptor) -> tuple[str, str, str] | None:
    options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
    extensions: Any = options.Extensions
    http: Any = annotations_pb2.http
    if not options.HasExtension(http):
        return None
    rule = extensions[http]
    verb = rule.WhichOneof("pattern")
    return verb, getattr(rule, verb), rule.body


def route_problems(service: ServiceDescriptor) -> list[str]:
    problems = []
    for method in service.methods:
        found = route(method)
        if found is None:
            continue
        verb, path, body = found
        fields = {field.name for field in method.input_type.fields}
        variables = re.findall(r"{([a-z_.]+)(?:=[^}]*)?}", path)
        problems += [f"{method.name}: {{{name}}} is not a request field" for name in variables if name not in fields]
        if verb in ("get", "delete") and body:
            problems.append(f"{method.name}: {verb} must not have a body")
        if body not in ("", "*") and body not in fields:
            problems.append(f"{method.name}: body {body!r} is not a request field")
        if verb in ("post", "patch", "put") and not body:
            problems.append(f"{method.name}: {verb} without a body leaves fields unreachable")
    return problems


def test_every_cart_route_matches_its_request_message():
    assert route_problems(CART) == []


@pytest.mark.parametrize(("rpc", "expected"), sorted(EXPECTED.items()))
def test_customer_facing_cart_rpcs_have_their_routes(rpc, expected):
    found = route(CART.methods_by_name[rpc])
    assert found is not None and found[:2] == expected


def test_convert_cart_is_mesh_only_without_a_route():
    assert route(CART.methods_by_name["ConvertCart"]) is None
