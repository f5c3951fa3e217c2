"""Shipments: booked with the sandbox carrier, idempotent on the order, cancelled while BOOKED, moved by
carrier scans (idempotent on the event id), trusted callers only; bad input writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from shop.shipping.v1 import shipping_service_pb2 as pb
from shop.type.v1 import line_item_pb2
from tests.identity import as_customer, as_service
from tests.integration.shipping.conftest import US_ADDRESS, usd
from tests.rpc_errors import expect_failure

MESH = as_service("order")
ITEMS = [line_item_pb2.LineItem(sku="W-250", quantity=2), line_item_pb2.LineItem(sku="W-100", quantity=1)]


def _create(order_id: str = "ord-1", method=pb.SHIPPING_METHOD_EXPRESS, items=ITEMS) -> pb.CreateShipmentRequest:
    return pb.CreateShipmentRequest(order_id=order_id, shipping_address=US_ADDRESS, shipping_method=method, items=items)


def _scan(event_id: str, shipment_id: str, kind) -> pb.RecordCarrierScanRequest:
    return pb.RecordCarrierScanRequest(
        event_id=event_id, shipment_id=shipment_id, kind=kind, scan_time=timestamp_pb2.Timestamp(seconds=1_800_000_000)
    )


async def test_create_shipment_books_with_the_sandbox_carrier_once_per_order(shipping):
    booked = await shipping.CreateShipment(_create(), metadata=MESH)
    shipment = booked.shipment
    assert not booked.replayed and shipment.status == pb.SHIPMENT_STATUS_BOOKED
    assert shipment.carrier == "sandbox-post" and shipment.tracking_number.startswith("SBX-")
    assert [(i.sku, i.quantity) for i in shipment.items] == [("W-100", 1), ("W-250", 2)]
    assert shipment.total_weight_grams == 600
    assert shipment.delivery_estimate.min_business_days == 1 and shipment.delivery_estimate.max_business_days == 3
    assert shipment.delivery_estimate.earliest_delivery_date.year >= 2026

    replay = await shipping.CreateShipment(_create(items=list(reversed(ITEMS))), metadata=MESH)
    assert replay.replayed and replay.shipment == shipment
    other = await expect_failure(shipping.CreateShipment(_create(method=pb.SHIPPING_METHOD_STANDARD), metadata=MESH))
    assert (other.code, other.reason) == (grpc.StatusCode.ALREADY_EXISTS, "SHIPMENT_ALREADY_EXISTS")
    assert other.metadata == {"shipmentId": shipment.shipment_id, "orderId": "ord-1"}
    got = await shipping.GetShipment(pb.GetShipmentRequest(shipment_id=shipment.shipment_id), metadata=MESH)
    assert got.shipment == shipment


async def test_shipments_are_for_trusted_callers_only(shipping):
    booked = await shipping.CreateShipment(_create(), metadata=MESH)
    shipment_id = booked.shipment.shipment_id
    calls = [
        lambda md: shipping.CreateShipment(_create("ord-2"), metadata=md),
        lambda md: shipping.GetShipment(pb.GetShipmentRequest(shipment_id=shipment_id), metadata=md),
        lambda md: shipping.CancelShipment(pb.CancelShipmentRequest(shipment_id=shipment_id), metadata=md),
        lambda md: shipping.RecordCarrierScan(_scan("e1", shipment_id, pb.CARRIER_SCAN_KIND_IN_TRANSIT), metadata=md),
    ]
    for call in calls:
        customer = await expect_failure(call(as_customer("alice")))
        assert (customer.code, customer.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TRUSTED_CALLER_REQUIRED")
        nobody = await expect_failure(call(()))
        assert nobody.code == grpc.StatusCode.UNAUTHENTICATED
    still = await shipping.GetShipment(pb.GetShipmentRequest(shipment_id=shipment_id), metadata=MESH)
    assert still.shipment.status == pb.SHIPMENT_STATUS_BOOKED


async def test_cancel_while_booked_is_idempotent_and_a_cancelled_shipment_takes_no_scans(shipping):
    shipment_id = (await shipping.CreateShipment(_create(), metadata=MESH)).shipment.shipment_id
    cancelled = await shipping.CancelShipment(pb.CancelShipmentRequest(shipment_id=shipment_id), metadata=MESH)
    assert cancelled.shipment.status == pb.SHIPMENT_STATUS_CANCELLED and not cancelled.replayed
    again = await shipping.CancelShipment(pb.CancelShipmentRequest(shipment_id=shipment_id), metadata=MESH)
    assert again.replayed and again.shipment.status == pb.SHIPMENT_STATUS_CANCELLED
    scan = await expect_failure(
        shipping.RecordCarrierScan(_scan("e1", shipment_id, pb.CARRIER_SCAN_KIND_IN_TRANSIT), metadata=MESH)
    )
    assert (scan.code, scan.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SHIPMENT_CANCELLED")


async def test_scans_move_booked_to_in_transit_to_delivered_and_never_back(shipping):
    shipment_id = (await shipping.CreateShipment(_create(), metadata=MESH)).shipment.shipment_id
    transit = await shipping.RecordCarrierScan(_scan("e1", shipment_id, pb.CARRIER_SCAN_KIND_IN_TRANSIT), metadata=MESH)
    assert transit.shipment.status == pb.SHIPMENT_STATUS_IN_TRANSIT and not transit.replayed
    replay = await shipping.RecordCarrierScan(_scan("e1", shipment_id, pb.CARRIER_SCAN_KIND_IN_TRANSIT), metadata=MESH)
    assert replay.replayed
    reused = await expect_failure(
        shipping.RecordCarrierScan(_scan("e1", shipment_id, pb.CARRIER_SCAN_KIND_DELIVERED), metadata=MESH)
    )
    assert (reused.code, reused.reason, reused.metadata) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "EVENT_ID_REUSED",
        {"eventId": "e1"},
    )
    refused = await expect_failure(
        shipping.CancelShipment(pb.CancelShipmentRequest(shipment_id=shipment_id), metadata=MESH)
    )
    assert (refused.reason, refused.metadata["status"]) == ("SHIPMENT_NOT_CANCELLABLE", "SHIPMENT_STATUS_IN_TRANSIT")
    delivered = await shipping.RecordCarrierScan(
        _scan("e2", shipment_id, pb.CARRIER_SCAN_KIND_DELIVERED), metadata=MESH
    )
    assert delivered.shipment.status == pb.SHIPMENT_STATUS_DELIVERED
    late = await shipping.RecordCarrierScan(_scan("e3", shipment_id, pb.CARRIER_SCAN_KIND_IN_TRANSIT), metadata=MESH)
    assert late.shipment.status == pb.SHIPMENT_STATUS_DELIVERED and not late.replayed


async def test_unknown_shipment_is_not_found(shipping):
    failure = await expect_failure(shipping.GetShipment(pb.GetShipmentRequest(shipment_id="shp_nope"), metadata=MESH))
    assert (failure.code, failure.reason, failure.metadata) == (
        grpc.StatusCode.NOT_FOUND,
        "SHIPMENT_NOT_FOUND",
        {"shipmentId": "shp_nope"},
    )


BAD_REQUESTS = [
    ("ValidateAddress", pb.ValidateAddressRequest(), {"address"}),
    ("GetShippingOptions", pb.GetShippingOptionsRequest(), {"shipping_address", "items", "subtotal"}),
    (
        "GetShippingOptions",
        pb.GetShippingOptionsRequest(
            shipping_address=US_ADDRESS,
            items=[line_item_pb2.LineItem(sku="W-100", quantity=0), line_item_pb2.LineItem(sku="W-100", quantity=1)],
            subtotal=usd(-1),
        ),
        {"items[0].quantity", "items[1].sku", "subtotal.amount_minor"},
    ),
    (
        "QuoteShipping",
        pb.QuoteShippingRequest(shipping_address=US_ADDRESS, items=ITEMS, subtotal=usd(1)),
        {"shipping_method"},
    ),
    ("CreateShipment", pb.CreateShipmentRequest(), {"order_id", "shipping_method", "shipping_address", "items"}),
    (
        "CreateShipment",
        pb.CreateShipmentRequest(
            order_id="bad id", shipping_address=US_ADDRESS, shipping_method=pb.SHIPPING_METHOD_STANDARD, items=ITEMS
        ),
        {"order_id"},
    ),
    ("GetShipment", pb.GetShipmentRequest(), {"shipment_id"}),
    ("CancelShipment", pb.CancelShipmentRequest(shipment_id="x" * 65), {"shipment_id"}),
    ("RecordCarrierScan", pb.RecordCarrierScanRequest(), {"event_id", "shipment_id", "kind", "scan_time"}),
]


async def _row_counts(database_url: str) -> tuple[int, int, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT (SELECT count(*) FROM shipping.shipments), (SELECT count(*) FROM shipping.shipment_items),"
            " (SELECT count(*) FROM shipping.carrier_scans)"
        )
        row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize(("rpc", "request_message", "fields"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_naming_each_field_and_writes_nothing(
    shipping, database_url, rpc, request_message, fields
):
    await shipping.CreateShipment(_create("ord-existing"), metadata=MESH)
    before = await _row_counts(database_url)
    failure = await expect_failure(getattr(shipping, rpc)(request_message, metadata=MESH))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason in ("INVALID_ARGUMENT", "ADDRESS_INVALID")
    assert set(failure.field_violations) == fields
    assert await _row_counts(database_url) == before


def _rates_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rates.json"
    path.write_text(text)
    return path


BAD_RATE_FILES = [
    ("{not json", "not JSON"),
    ('{"currency_code": "usd", "zones": []}', "currency_code"),
    (
        '{"currency_code": "USD", "zones": [{"name": "a", "countries": ["US"], "free_shipping_threshold_minor": null,'
        ' "methods": {"standard": {"display_name": "S", "min_business_days": 3, "max_business_days": 7,'
        ' "brackets": [{"up_to_grams": 500, "price_minor": 1}, {"up_to_grams": 400, "price_minor": 2}]}}}]}',
        "zones[0].methods.standard.brackets[1].up_to_grams: must ascend",
    ),
    (
        '{"currency_code": "USD", "zones": [{"name": "a", "countries": ["QQ"], "free_shipping_threshold_minor": null,'
        ' "methods": {"standard": {"display_name": "S", "min_business_days": 3, "max_business_days": 7,'
        ' "brackets": [{"up_to_grams": 500, "price_minor": 1}]}}}]}',
        "'QQ' is not an ISO 3166-1 alpha-2 code",
    ),
]


@pytest.mark.parametrize(("text", "named"), BAD_RATE_FILES)
def test_a_bad_rate_file_stops_the_service_naming_the_problem(tmp_path, text, named):
    path = _rates_file(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "shipping_svc", "migrate"],
        env={**os.environ, "SHIPPING_RATES_FILE": str(path), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "SHIPPING_RATES_FILE" in result.stderr and named in result.stderr, result.stderr


def test_a_missing_rate_file_stops_the_service(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "shipping_svc", "migrate"],
        env={**os.environ, "SHIPPING_RATES_FILE": str(tmp_path / "absent.json")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "cannot be read" in result.stderr, result.stderr
