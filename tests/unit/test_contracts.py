"""The contracts as a whole: proto3 JSON round trips, HTTP routes on the gateway, exact money."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

import shop

SERVICES = {
    "shop.cart.v1.CartService",
    "shop.inventory.v1.InventoryService",
    "shop.payment.v1.PaymentService",
    "shop.order.v1.OrderService",
    "shop.shipping.v1.ShippingService",
    "shop.notification.v1.NotificationService",
    "shop.gateway.v1.CheckoutService",
    "shop.gateway.v1.CheckoutAdminService",
}


def generated_modules() -> Iterator[object]:
    for module in pkgutil.walk_packages(shop.__path__, prefix="shop."):
        if module.name.endswith("_pb2"):
            yield importlib.import_module(module.name)


def all_messages() -> list[type[Message]]:
    found: list[type[Message]] = []

    def walk(container: object) -> None:
        for name in dir(container):
            value = getattr(container, name)
            if (
                isinstance(value, type)
                and issubclass(value, Message)
                and value.DESCRIPTOR.full_name.startswith("shop.")
                and value not in found
            ):
                found.append(value)
                walk(value)

    for module in generated_modules():
        walk(module)
    return found


def filled(descriptor: Descriptor, depth: int = 0) -> dict:
    """A JSON-ready dict with every field set (first member of each oneof), two levels deep."""
    value: dict = {}
    chosen_oneofs: set[str] = set()
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            if field.containing_oneof.name in chosen_oneofs:
                continue
            chosen_oneofs.add(field.containing_oneof.name)
        sample = _sample(field, depth)
        if sample is None:
            continue
        value[field.json_name] = [sample] if field.is_repeated and not _is_map(field) else sample
    return value


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _sample(field: FieldDescriptor, depth: int) -> Any:
    if _is_map(field):
        assert field.message_type is not None
        return {"k": "v"} if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING else None
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return "2026-11-25T08:00:00.123Z"
        if name == "google.protobuf.Duration":
            return "90.500s"
        if name.startswith("google.protobuf.") or depth >= 2:
            return None
        return filled(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        values = field.enum_type.values
        return values[min(1, len(values) - 1)].name
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_STRING,):
        return "A-1"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return "AQID"
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return str(2**53 + 1)  # beyond a double's exact range: must survive as a string
    if field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return str(2**53 + 1)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5
    return 7


MESSAGES = all_messages()


def test_every_service_of_the_mesh_has_a_contract():
    declared = {s.full_name for m in generated_modules() for s in m.DESCRIPTOR.services_by_name.values()}  # type: ignore[attr-defined]
    assert declared == SERVICES


@pytest.mark.parametrize("message", MESSAGES, ids=[m.DESCRIPTOR.full_name for m in MESSAGES])
def test_message_round_trips_through_proto3_json(message):
    parsed = json_format.ParseDict(filled(message.DESCRIPTOR), message())
    as_json = json_format.MessageToJson(parsed)

    assert json_format.Parse(as_json, message()) == parsed
    assert json_format.Parse(json_format.MessageToJson(parsed, preserving_proto_field_name=True), message()) == parsed


def test_no_contract_carries_money_as_a_float():
    floats = [
        f"{m.DESCRIPTOR.full_name}.{f.name}"
        for m in MESSAGES
        for f in m.DESCRIPTOR.fields
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
    ]
    assert floats == []


def test_every_gateway_rpc_has_an_http_route():
    from shop.gateway.v1 import gateway_service_pb2

    service = gateway_service_pb2.DESCRIPTOR.services_by_name["CheckoutService"]
    routes = {}
    for method in service.methods:
        options = descriptor_pb2.MethodOptions()
        options.ParseFromString(method.GetOptions().SerializeToString())
        extensions: Any = options.Extensions  # the googleapis stubs type `http` as a plain FieldDescriptor
        rule = extensions[annotations_pb2.http]
        routes[method.name] = rule.WhichOneof("pattern")
    assert routes and all(routes.values()), routes


def test_descriptor_set_for_transcoding_holds_every_service():
    path = Path(shop.__file__).with_name("descriptors.binpb")
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())

    declared = {f"{file.package}.{service.name}" for file in descriptors.file for service in file.service}
    assert declared >= SERVICES
    assert any(file.name == "google/api/annotations.proto" for file in descriptors.file)
