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
    assert status.ByteSize() < 8 * 1024  # the client's soft metadata limit, with room for the rest
