"""Bad input on every RPC: INVALID_ARGUMENT with a field violation per bad field, and nothing written."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from shop.order.v1 import order_service_pb2 as pb
from shop.type.v1 import address_pb2, money_pb2
from tests.identity import as_customer
from tests.integration.order.conftest import TRUSTED, create_request, place, scalar, usd
from tests.rpc_errors import expect_failure

FAR_FUTURE = timestamp_pb2.Timestamp(seconds=4_102_444_800)  # 2100-01-01

CREATE_CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "missing ids": (
        dict(checkout_id="", user_id="", payment_id="", customer_email="nobody@example.com"),
        {"checkout_id", "user_id", "payment_id"},
    ),
    "bad id characters": (dict(checkout_id="co 1", user_id="u/1"), {"checkout_id", "user_id"}),
    "no lines": (dict(lines=[], subtotal=usd(0), total=usd(970)), {"lines"}),
    "bad line": (
        dict(
            lines=[
                pb.OrderLine(sku="", product_name="", quantity=0, unit_price=usd(1), line_total=usd(0)),
                pb.OrderLine(sku="SKU-B", product_name="Tea", quantity=100, unit_price=usd(5), line_total=usd(500)),
            ]
        ),
        {"lines[0].sku", "lines[0].product_name", "lines[0].quantity", "lines[1].quantity"},
    ),
    "amounts do not add up": (dict(total=usd(5469)), {"total"}),
    "line total wrong": (
        dict(
            lines=[pb.OrderLine(sku="A", product_name="Mug", quantity=2, unit_price=usd(1999), line_total=usd(3999))],
            subtotal=usd(3999),
            total=usd(4969),
        ),
        {"lines[0].line_total"},
    ),
    "mixed currencies": (
        dict(tax=money_pb2.Money(currency_code="EUR", amount_minor=371)),
        {"tax.currency_code"},
    ),
    "discount above subtotal": (dict(discount_total=usd(5000), total=usd(468)), {"discount_total"}),
    "missing amounts and address": (
        dict(subtotal=None, total=None, shipping_address=None, shipping_method=0),
        {"subtotal", "total", "shipping_address", "shipping_method"},
    ),
    "bad address and email": (
        dict(
            shipping_address=address_pb2.Address(recipient_name="A", line1="", city="X", country_code="usa"),
            customer_email="not-an-email",
        ),
        {"shipping_address.line1", "shipping_address.country_code", "customer_email"},
    ),
    "an e-mail address carrying a mail header": (
        dict(customer_email="eve@example.com\r\nBcc: everyone@example.com"),
        {"customer_email"},
    ),
}


def _request(overrides: dict) -> pb.CreateOrderRequest:
    cleared = [field for field, value in overrides.items() if value is None]
    request = create_request(**{k: v for k, v in overrides.items() if v is not None})
    for field in cleared:
        request.ClearField(field)
    return request


async def _counts(database_url: str) -> tuple[int, int]:
    return (
        await scalar(database_url, "SELECT count(*) FROM orders.orders"),
        await scalar(database_url, "SELECT count(*) FROM orders.order_events"),
    )


@pytest.mark.parametrize("case", list(CREATE_CASES))
async def test_create_order_names_every_bad_field_and_writes_nothing(orders, database_url, case):
    overrides, fields = CREATE_CASES[case]
    failure = await expect_failure(orders.CreateOrder(_request(overrides), metadata=TRUSTED))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(failure.field_violations) == fields
    assert await _counts(database_url) == (0, 0)


async def test_every_other_rpc_refuses_bad_input_and_writes_nothing(orders, database_url):
    order = await place(orders)
    before = await _counts(database_url)
    customer = as_customer("u1")
    cases = [
        (orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=""), metadata=TRUSTED), {"order_id"}),
        (orders.GetOrder(pb.GetOrderRequest(order_id="bad id"), metadata=customer), {"order_id"}),
        (
            orders.ListOrders(
                pb.ListOrdersRequest(user_id="", page_size=-1, statuses=[pb.ORDER_STATUS_UNSPECIFIED]),
                metadata=customer,
            ),
            {"user_id", "statuses[0]"},
        ),
        (orders.ListOrders(pb.ListOrdersRequest(user_id="u1", page_size=-1), metadata=customer), {"page_size"}),
        (
            orders.ListOrders(pb.ListOrdersRequest(user_id="u1", page_token="forged.token"), metadata=customer),
            {"page_token"},
        ),
        (
            orders.CancelOrder(
                pb.CancelOrderRequest(order_id=order.order_id, note="x" * 501, idempotency_key="bad key"),
                metadata=customer,
            ),
            {"reason", "note", "idempotency_key"},
        ),
        (
            orders.MarkShipped(
                pb.MarkShippedRequest(order_id=order.order_id, tracking_number="no spaces", ship_time=FAR_FUTURE),
                metadata=TRUSTED,
            ),
            {"shipment_id", "tracking_number", "ship_time"},
        ),
        (
            orders.MarkDelivered(
                pb.MarkDeliveredRequest(order_id=order.order_id, deliver_time=FAR_FUTURE), metadata=TRUSTED
            ),
            {"deliver_time"},
        ),
    ]
    for call, fields in cases:
        failure = await expect_failure(call)
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert set(failure.field_violations) == fields
    assert await _counts(database_url) == before
    assert await scalar(database_url, "SELECT status FROM orders.orders") == "confirmed"
