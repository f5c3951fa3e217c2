"""Reads a failed downstream call: its code and the `google.rpc.Status` details our services attach.

A caller that must decide what to do next (the gateway's saga: compensate, retry, or give up) asks
`DownstreamError.of(error)`:

- `refusal`: the service understood the request and said no for a business reason (a declined card,
  short stock, a bad field). Retrying the same request cannot help.
- `transport_failure`: the request may not have been processed, or its outcome is unknown (the service
  or its database was unreachable, the deadline passed, a conflict aborted it, a quota was used up).
  Retrying the same request with the same idempotency key is safe and may succeed.

Anything else (INTERNAL, UNIMPLEMENTED, DATA_LOSS…) is neither: a bug or a missing feature, for a
human to look at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

M = TypeVar("M", bound=Message)

STATUS_DETAILS_KEY = "grpc-status-details-bin"

REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
TRANSPORT_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class DownstreamError:
    code: grpc.StatusCode
    message: str
    #: ErrorInfo reason and domain ("" when the status had no ErrorInfo, e.g. a transport failure).
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: BadRequest field violations, field path → description.
    field_violations: Mapping[str, str] = field(default_factory=dict)
    #: RetryInfo's delay in seconds, when the service said when to retry.
    retry_delay_seconds: float | None = None
    #: Every detail as sent (packed), typed ones included; read them with `detail`.
    details: tuple[any_pb2.Any, ...] = ()
    #: How many ErrorInfo details the status carried (our convention: exactly one).
    error_info_count: int = 0

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> DownstreamError:
        code = error.code()
        message = error.details() or ""
        status = _status_of(error)
        if status is None:
            return cls(code=code, message=message)
        reason = domain = ""
        metadata: dict[str, str] = {}
        violations: dict[str, str] = {}
        retry_delay: float | None = None
        infos = 0
        for packed in status.details:
            if _is(packed, error_details_pb2.ErrorInfo):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                infos += 1
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif _is(packed, error_details_pb2.BadRequest):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                violations.update({v.field: v.description for v in bad.field_violations})
            elif _is(packed, error_details_pb2.RetryInfo):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
        return cls(
            code=code,
            message=message,
            reason=reason,
            domain=domain,
            metadata=metadata,
            field_violations=violations,
            retry_delay_seconds=retry_delay,
            details=tuple(status.details),
            error_info_count=infos,
        )

    @property
    def refusal(self) -> bool:
        return self.code in REFUSALS

    @property
    def transport_failure(self) -> bool:
        return self.code in TRANSPORT_FAILURES

    def detail(self, message_type: type[M]) -> M | None:
        """The first detail of that type (e.g. `shop.inventory.v1.InsufficientStock`), or None."""
        for packed in self.details:
            if _is(packed, message_type):
                unpacked = message_type()
                packed.Unpack(unpacked)
                return unpacked
        return None


def _is(packed: any_pb2.Any, message_type: type[Message]) -> bool:
    return packed.TypeName() == message_type.DESCRIPTOR.full_name


def _status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                return None
            # Details that describe another code than the call's own are not trusted.
            return status if status.code == error.code().value[0] else None
    return None
