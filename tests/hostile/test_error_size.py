"""A refusal of a request with thousands of bad elements still reaches the client as INVALID_ARGUMENT:
its details are capped, so the trailer stays under the client's metadata limit."""

from __future__ import annotations

from google.rpc import error_details_pb2

from service_runtime import errors
from service_runtime.status import MAX_VIOLATIONS, to_status


def test_ten_thousand_field_violations_are_capped_in_the_status_details():
    error = errors.InvalidArgument(
        [errors.FieldViolation(f"statuses[{index}]", "is not a known order status") for index in range(10_000)]
    )

    status = to_status(error, domain="order.shop")

    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert len(bad_request.field_violations) == MAX_VIOLATIONS
    assert bad_request.field_violations[0].field == "statuses[0]"
    assert status.ByteSize() < 4 * 1024  # the trailer stays well under the client's 8 KiB soft limit


def test_a_5000_character_id_echoed_in_a_refusal_is_cut_short():
    sku = "x" * 5000
    error = errors.NotFound(f"product {sku} was not found", reason="PRODUCT_NOT_FOUND", metadata={"sku": sku})

    status = to_status(error, domain="inventory.shop")

    assert len(status.message) <= 1024 and status.message.endswith("…")
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "PRODUCT_NOT_FOUND" and len(info.metadata["sku"]) <= 160
    assert status.ByteSize() < 2 * 1024
