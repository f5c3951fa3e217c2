"""gRPC face of shop.gateway.v1.CheckoutAdminService: trusted callers only."""

from __future__ import annotations

from typing import Any

import grpc

from gateway.admin import AdminHandlers, Details
from gateway.domain import CheckoutStatus
from gateway.servicer import checkout_out
from service_runtime import errors
from service_runtime.errors import Violations
from service_runtime.identity import require_trusted
from service_runtime.pagination import PageTokens, page_size
from service_runtime.validation import check_id, check_text
from service_runtime.wire import optional_seconds_in, timestamp_out
from shop.gateway.v1 import admin_service_pb2 as pb
from shop.gateway.v1 import admin_service_pb2_grpc as pb_grpc
from shop.gateway.v1 import gateway_service_pb2 as gateway_pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CheckoutAdminService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]

_STATUSES = {status.contract_name: status for status in CheckoutStatus}


def _resolution(details: Details) -> pb.Resolution | None:
    resolution = details.resolution
    if resolution is None:
        return None
    message = pb.Resolution(action=resolution.action, reason=resolution.reason, resolved_by=resolution.resolved_by)
    stamp = timestamp_out(resolution.resolved_at)
    if stamp is not None:
        message.resolve_time.CopyFrom(stamp)
    return message


def _checkout_id(request: Any) -> None:
    violations = Violations()
    check_id(violations, request.checkout_id, "checkout_id")
    violations.raise_if_any()


class CheckoutAdminServicer(pb_grpc.CheckoutAdminServiceServicer):
    def __init__(self, handlers: AdminHandlers, page_tokens: PageTokens) -> None:
        self._handlers = handlers
        self._tokens = page_tokens

    async def ListCheckouts(self, request: pb.ListCheckoutsRequest, context: Context) -> pb.ListCheckoutsResponse:
        require_trusted()
        violations = Violations()
        # proto3 enums are open: a number the contract does not name arrives as itself (it was INTERNAL)
        known = request.status in gateway_pb.CheckoutStatus.values()
        status = _STATUSES.get(gateway_pb.CheckoutStatus.Name(request.status)) if known else None
        if status is None:
            violations.add("status", "must name a status, e.g. CHECKOUT_STATUS_FAILED")
        min_unchanged = optional_seconds_in(request, "min_unchanged") or 0.0
        if min_unchanged < 0:
            violations.add("min_unchanged", "must not be negative")
        violations.raise_if_any()
        assert status is not None
        limit = page_size(request.page_size)
        query = {"status": status.value, "minUnchanged": min_unchanged}
        after = self._tokens.read(request.page_token, query) if request.page_token else None
        found = await self._handlers.list_checkouts(status, min_unchanged, after, limit + 1)
        response = pb.ListCheckoutsResponse(checkouts=[checkout_out(c, steps) for c, steps in found[:limit]])
        if len(found) > limit:
            response.next_page_token = self._tokens.issue(found[limit - 1][0].checkout_id, query)
        return response

    async def GetCheckoutDetails(
        self, request: pb.GetCheckoutDetailsRequest, context: Context
    ) -> pb.GetCheckoutDetailsResponse:
        require_trusted()
        _checkout_id(request)
        details = await self._handlers.details(request.checkout_id)
        return pb.GetCheckoutDetailsResponse(
            checkout=checkout_out(details.checkout, list(details.steps)), resolution=_resolution(details)
        )

    async def RetryCheckout(self, request: pb.RetryCheckoutRequest, context: Context) -> pb.RetryCheckoutResponse:
        require_trusted()
        violations = Violations()
        check_id(violations, request.checkout_id, "checkout_id")
        check_text(violations, request.reason, "reason", maximum=500, required=False)
        violations.raise_if_any()
        checkout, replayed = await self._handlers.retry(request.checkout_id)
        details = await self._handlers.details(checkout.checkout_id)
        return pb.RetryCheckoutResponse(checkout=checkout_out(checkout, list(details.steps)), replayed=replayed)

    async def ResolveCheckout(self, request: pb.ResolveCheckoutRequest, context: Context) -> pb.ResolveCheckoutResponse:
        caller = require_trusted()
        violations = Violations()
        check_id(violations, request.checkout_id, "checkout_id")
        check_text(violations, request.reason, "reason", maximum=500, required=True)
        violations.raise_if_any()
        details, replayed = await self._handlers.resolve(request.checkout_id, request.reason, caller.subject)
        if details.resolution is None:
            raise errors.Aborted("the resolution was not recorded; retry", reason="CONFLICT", retry_after_seconds=0.1)
        return pb.ResolveCheckoutResponse(
            checkout=checkout_out(details.checkout, list(details.steps)),
            resolution=_resolution(details),
            replayed=replayed,
        )
