"""Maps errors to gRPC status with `google.rpc.Status` details, in one place for the whole mesh.

- A `ServiceError` becomes its status code with ErrorInfo (stable reason), BadRequest field violations,
  PreconditionFailure, RetryInfo and any typed detail messages it carries.
- A downstream `grpc.aio.AioRpcError` that escapes a handler is passed on with its code, message and
  rich details, so a caller two hops away still sees why.
- A request whose bytes do not decode as the method's message is INVALID_ARGUMENT
  (`MALFORMED_REQUEST`), never UNKNOWN with the decoder's text.
- Anything else is logged and answered INTERNAL, never UNKNOWN.

Every status this module writes carries exactly one ErrorInfo (AIP-193): the error's reason, or the
code's name when it has none.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from redis import exceptions as redis_errors

from service_runtime import database, errors, metrics

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

_CODES: dict[type[errors.ServiceError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def code_of(error: errors.ServiceError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


#: A status travels in trailers, and a client drops an answer whose metadata passes its limit (8 KiB soft,
#: 16 KiB hard by default): it would see RESOURCE_EXHAUSTED instead of the refusal. So a status carries at
#: most MAX_VIOLATIONS violations, and its message, metadata values and violations' texts are cut to a
#: bounded length (a 5,000-character id echoed twice once made a 10 KB trailer).
MAX_VIOLATIONS = 10
MAX_MESSAGE_CHARS = 1024
MAX_DETAIL_CHARS = 160


def _cut(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_status(error: errors.ServiceError, *, domain: str) -> status_pb2.Status:
    """The `google.rpc.Status` for a domain error; `domain` names the service (e.g. "inventory.shop")."""
    code = code_of(error)
    reason = error.reason or code.name
    metadata = {key: _cut(value) for key, value in error.metadata.items()}
    details = [_pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata))]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_cut(v.field), description=_cut(v.description)
                        )
                        for v in error.violations[:MAX_VIOLATIONS]
                    ]
                )
            )
        )
    if isinstance(error, errors.FailedPrecondition) and error.violations:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=_cut(v.type), subject=_cut(v.subject), description=_cut(v.description)
                        )
                        for v in error.violations[:MAX_VIOLATIONS]
                    ]
                )
            )
        )
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    details.extend(_pack(detail) for detail in error.details)
    return status_pb2.Status(code=code.value[0], message=_cut(error.message, MAX_MESSAGE_CHARS), details=details)


def bare_status(code: grpc.StatusCode, message: str, *, reason: str, domain: str) -> status_pb2.Status:
    """A status with only its ErrorInfo (INTERNAL, UNIMPLEMENTED, a downstream failure we relabel)."""
    return status_pb2.Status(
        code=code.value[0], message=message, details=[_pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))]
    )


class _Undecodable:
    """Stands in for a request whose bytes did not decode; the guarded handler refuses it."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    message_type = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = message_type.full_name if message_type is not None else "request"

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or invalid UTF-8 in a string field: the client sent bad bytes
            return _Undecodable(name)

    return decode


def malformed_request(message_type: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        [errors.FieldViolation("", f"the request bytes are not a valid {message_type} message")],
        f"the request is not a valid {message_type} message",
        reason="MALFORMED_REQUEST",
    )


async def answer(
    inner: Callable[[Any, Context], Awaitable[Any]], request: Any, context: Context, method: str, domain: str
) -> Any:
    """Runs a unary behaviour so that no exception reaches the client as UNKNOWN: each one becomes its
    status with details (the module docstring). The one place every served call's errors are mapped
    (`service_runtime.inbound` calls it for every method)."""
    if isinstance(request, _Undecodable):
        log.info("%s: undecodable request", method)
        await context.abort_with_status(
            rpc_status.to_status(to_status(malformed_request(request.message_type), domain=domain))
        )
    try:
        return await inner(request, context)
    except errors.ServiceError as error:
        metrics.refused(method, error.reason or code_of(error).name)
        await context.abort_with_status(rpc_status.to_status(to_status(error, domain=domain)))
    except grpc.aio.AioRpcError as error:
        await _abort_with_downstream(context, error, method, domain)
    except (grpc.aio.AbortError, grpc.aio.UsageError):
        raise
    except NotImplementedError:  # the generated base class: declared in the contract, not built yet
        await context.abort_with_status(
            rpc_status.to_status(
                bare_status(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} is not implemented yet",
                    reason="NOT_IMPLEMENTED",
                    domain=domain,
                )
            )
        )
    except Exception as error:
        translated = database.as_service_error(error) or redis_outage(error)
        if translated is None:
            log.exception("unhandled error in %s", method)
            await context.abort_with_status(
                rpc_status.to_status(
                    bare_status(grpc.StatusCode.INTERNAL, "internal error", reason="INTERNAL", domain=domain)
                )
            )
        log.warning("%s: %s (%s)", method, translated.message, type(error).__name__)
        await context.abort_with_status(rpc_status.to_status(to_status(translated, domain=domain)))


def tolerant_handler(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: Callable[[Any, Context], Awaitable[Any]]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary handler running `behaviour`, whose request decoder turns bytes that do not decode into a
    stand-in that `answer` refuses as MALFORMED_REQUEST."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def redis_outage(error: BaseException) -> errors.ServiceError | None:
    """Redis unreachable, timing out or still loading its data after a restart: UNAVAILABLE (retry later),
    never INTERNAL. A command that never reached Redis changed nothing; one that timed out may have been
    applied, which a retry tolerates because every Redis-backed mutation is idempotent (the cart's AddItem
    on its idempotency key, the others by setting absolute values)."""
    if isinstance(error, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return errors.Unavailable(
            "Redis is unavailable; retry later", reason="REDIS_UNAVAILABLE", retry_after_seconds=1.0
        )
    return None


async def _abort_with_downstream(context: Context, error: grpc.aio.AioRpcError, method: str, domain: str) -> None:
    code = error.code()
    trailing = tuple((k, v) for k, v in (error.trailing_metadata() or ()) if k == _STATUS_DETAILS_KEY)
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED) or not trailing:
        log.warning("downstream call from %s ended %s: %s", method, code, error.details())
        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
            code = grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.CANCELLED else grpc.StatusCode.INTERNAL
        # The details described the old code (or there were none): write our own, with one ErrorInfo.
        await context.abort_with_status(
            rpc_status.to_status(
                bare_status(code, error.details() or code.name, reason="DOWNSTREAM_" + code.name, domain=domain)
            )
        )
    await context.abort(code, error.details() or code.name, trailing_metadata=trailing)
