"""The downstream error decoder tells a business refusal from a transport failure and reads every detail."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata
from grpc_status import rpc_status

from service_runtime import errors
from service_runtime.downstream import DownstreamError
from service_runtime.status import to_status
from shop.inventory.v1 import inventory_service_pb2 as pb


def rpc_error(code: grpc.StatusCode, error: errors.ServiceError | None = None) -> AioRpcError:
    trailing = Metadata()
    if error is not None:
        status = rpc_status.to_status(to_status(error, domain="inventory.shop"))
        trailing = Metadata(*status.trailing_metadata)
    return AioRpcError(code, Metadata(), trailing, details=error.message if error else "connection refused")


def test_a_refusal_carries_its_reason_metadata_violations_and_typed_details():
    shortage = errors.with_details(
        errors.FailedPrecondition("not enough", reason="INSUFFICIENT_STOCK", metadata={"skus": "A-1"}),
        pb.InsufficientStock(items=[pb.ItemAvailability(sku="A-1", requested=3, available=1)]),
    )

    decoded = DownstreamError.of(rpc_error(grpc.StatusCode.FAILED_PRECONDITION, shortage))

    assert decoded.refusal and not decoded.transport_failure
    assert (decoded.reason, decoded.domain, dict(decoded.metadata)) == (
        "INSUFFICIENT_STOCK",
        "inventory.shop",
        {"skus": "A-1"},
    )
    detail = decoded.detail(pb.InsufficientStock)
    assert detail is not None and detail.items[0].available == 1
    assert decoded.detail(pb.Reservation) is None
    assert decoded.error_info_count == 1


def test_invalid_argument_carries_its_field_violations():
    bad = errors.InvalidArgument([errors.FieldViolation("items[0].sku", "is required")])

    decoded = DownstreamError.of(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, bad))

    assert decoded.refusal and decoded.reason == "INVALID_ARGUMENT"
    assert dict(decoded.field_violations) == {"items[0].sku": "is required"}


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    ],
)
def test_transport_failures_are_retryable_and_need_no_details(code):
    decoded = DownstreamError.of(rpc_error(code))

    assert decoded.transport_failure and not decoded.refusal
    assert decoded.reason == "" and decoded.retry_delay_seconds is None


def test_retry_info_is_read_and_internal_is_neither_refusal_nor_transport_failure():
    busy = errors.Unavailable("busy", reason="DATABASE_BUSY", retry_after_seconds=0.5)
    assert DownstreamError.of(rpc_error(grpc.StatusCode.UNAVAILABLE, busy)).retry_delay_seconds == 0.5

    internal = DownstreamError.of(rpc_error(grpc.StatusCode.INTERNAL))
    assert not internal.refusal and not internal.transport_failure


def test_details_that_describe_another_code_are_not_trusted():
    shortage = errors.FailedPrecondition("not enough", reason="INSUFFICIENT_STOCK")
    forged = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, shortage)
    relabelled = AioRpcError(grpc.StatusCode.UNAVAILABLE, Metadata(), forged.trailing_metadata(), details="x")

    assert DownstreamError.of(relabelled).reason == ""


def test_error_info_metadata_keys_must_be_lower_camel_case():
    with pytest.raises(ValueError, match="lowerCamelCase"):
        errors.NotFound("gone", reason="GONE", metadata={"checkout_id": "c1"})
    assert errors.NotFound("gone", reason="GONE", metadata={"checkoutId": "c1"}).metadata == {"checkoutId": "c1"}
