"""Maps errors to gRPC status with `google.rpc.Status` details, in one place for the whole mesh.

- A `ServiceError` becomes its status code with ErrorInfo (stable reason), BadRequest field violations,
  PreconditionFailure, RetryInfo and any typed detail messages it carries.
- A downstream `grpc.aio.AioRpcError` that escapes a handler is passed on with its code, message and
  rich details, so a caller two hops away still sees why.
- Anything else is logged and answered INTERNAL, never UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service_runtime import database, errors

log = logging.getLogger(__name__)

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
            return _CODES[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: errors.ServiceError, *, domain: str) -> status_pb2.Status:
    """The `google.rpc.Status` for a domain error; `domain` names the service (e.g. "inventory.shop")."""
    code = code_of(error)
    details: list[any_pb2.Any] = []
    if error.reason:
        details.append(_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)))
    if isinstance(error, errors.InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
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
                            type=v.type, subject=v.subject, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    details.extend(_pack(detail) for detail in error.details)
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def internal_status(message: str = "internal error") -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary handler so that no exception reaches a client as UNKNOWN."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        domain = self._domain

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except errors.ServiceError as error:
                await context.abort_with_status(rpc_status.to_status(to_status(error, domain=domain)))
            except grpc.aio.AioRpcError as error:
                await _abort_with_downstream(context, error, method)
            except (grpc.aio.AbortError, grpc.aio.UsageError):
                raise
            except NotImplementedError:  # the generated base class: declared in the contract, not built yet
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
            except Exception as error:
                translated = database.as_service_error(error)
                if translated is None:
                    log.exception("unhandled error in %s", method)
                    await context.abort_with_status(rpc_status.to_status(internal_status()))
                log.warning("%s: %s (%s)", method, translated.message, type(error).__name__)
                await context.abort_with_status(rpc_status.to_status(to_status(translated, domain=domain)))

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _abort_with_downstream(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError, method: str) -> None:
    code = error.code()
    trailing = tuple((k, v) for k, v in (error.trailing_metadata() or ()) if k == _STATUS_DETAILS_KEY)
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED) or code is None:
        log.warning("downstream call from %s ended %s: %s", method, code, error.details())
        code = grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.CANCELLED else grpc.StatusCode.INTERNAL
        trailing = ()  # the details described the old code; do not contradict the new one
    await context.abort(code, error.details() or code.name, trailing_metadata=trailing)
