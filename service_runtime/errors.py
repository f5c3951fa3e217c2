"""Domain errors: what went wrong, in business terms, free of gRPC.

Handlers and domain code raise these; `status.py` turns them into gRPC status codes with
`google.rpc.Status` details (BadRequest, ErrorInfo, RetryInfo, PreconditionFailure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message


@dataclass(frozen=True)
class FieldViolation:
    """One bad field. `field` is a path into the request, e.g. "items[2].quantity"."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition, e.g. type "STOCK", subject "sku:ABC-1"."""

    type: str
    subject: str
    description: str


#: ErrorInfo metadata keys are lowerCamelCase across the mesh (AIP-193), e.g. "checkoutId".
METADATA_KEY = re.compile(r"[a-z][a-zA-Z0-9]*")


class ServiceError(Exception):
    """Base of every error a service means to return to its caller.

    `reason` is the ErrorInfo reason (UPPER_SNAKE_CASE, stable); `metadata` keys are lowerCamelCase and a
    status in metadata is written as the contract's enum value name (e.g. "RESERVATION_STATUS_EXPIRED").
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        details: Sequence[Message] = (),
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        bad_keys = [key for key in metadata or {} if not METADATA_KEY.fullmatch(key)]
        if bad_keys:
            raise ValueError(f"ErrorInfo metadata keys must be lowerCamelCase: {bad_keys}")
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.details = tuple(details)
        self.retry_after_seconds = retry_after_seconds


class InvalidArgument(ServiceError):
    """The request is malformed; retrying it unchanged cannot succeed."""

    def __init__(
        self, violations: Sequence[FieldViolation], message: str | None = None, *, reason: str = "INVALID_ARGUMENT"
    ) -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:5])
        super().__init__(message or f"invalid request: {summary}", reason=reason)


class NotFound(ServiceError):
    """The named resource does not exist."""


class AlreadyExists(ServiceError):
    """A resource or key exists with different content than this request asks for."""


class FailedPrecondition(ServiceError):
    """The system is not in a state in which the request can succeed; retrying unchanged will not help."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[PreconditionViolation] = (),
        details: Sequence[Message] = (),
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata, details=details)
        self.violations = tuple(violations)


class Aborted(ServiceError):
    """A concurrency conflict; retrying the whole request later may succeed."""


class Unavailable(ServiceError):
    """A dependency is down; retrying later may succeed."""


class ResourceExhausted(ServiceError):
    """A quota or rate limit is used up."""


class DeadlineExceeded(ServiceError):
    """Too little of the caller's deadline is left to do the work."""


class Unauthenticated(ServiceError):
    """The caller's identity is missing or invalid."""


class PermissionDenied(ServiceError):
    """The caller may not do this."""


@dataclass
class Violations:
    """Collects field violations while validating a request; `raise_if_any` raises one InvalidArgument."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def check(self, condition: bool, field_path: str, description: str) -> bool:
        if not condition:
            self.add(field_path, description)
        return condition

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


def with_details(error: ServiceError, *details: Message) -> ServiceError:
    """The same error with typed detail messages added (the servicer adds its API's detail types)."""
    error.details = (*error.details, *details)
    return error
