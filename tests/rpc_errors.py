"""Reads the rich error details (google.rpc.Status) off a failed gRPC call, for assertions."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: dict[str, str] = field(default_factory=dict)
    retry_delay_seconds: float | None = None
    details: list[Message] = field(default_factory=list)
    raw_details: list = field(default_factory=list)

    def detail(self, message_type: type[Message]) -> Message | None:
        for packed in self.raw_details:
            if packed.Is(message_type.DESCRIPTOR):
                unpacked = message_type()
                packed.Unpack(unpacked)
                return unpacked
        return None


def failure_of(error: grpc.aio.AioRpcError) -> RpcFailure:
    failure = RpcFailure(code=error.code(), message=error.details() or "")
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        assert status.code == error.code().value[0], "details disagree with the status code"
        failure.raw_details = list(status.details)
        for packed in status.details:
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                failure.reason, failure.domain, failure.metadata = info.reason, info.domain, dict(info.metadata)
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                failure.field_violations = {v.field: v.description for v in bad.field_violations}
            elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                failure.retry_delay_seconds = retry.retry_delay.ToNanoseconds() / 1e9
    return failure


async def expect_failure(call) -> RpcFailure:  # type: ignore[no-untyped-def]
    """Awaits a call that must fail and returns what it failed with."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        return failure_of(error)
    raise AssertionError(f"expected the call to fail, it returned {response!r}")
