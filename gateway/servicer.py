"""gRPC face of the checkout gateway: identity (the shopper's JWT), rate limits, request checks and
proto ↔ domain; the use cases are in `handlers`, the saga in `saga` and `runner`."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import grpc
from google.type import date_pb2

from gateway.domain import Checkout, CheckoutStatus, SagaStep, StepRecord
from gateway.handlers import ADDRESS_FIELDS, METHOD_NAMES, CheckoutHandlers, fingerprint
from gateway.handlers import PlaceOrder as PlaceCommand
from gateway.handlers import StartCheckout as StartCommand
from gateway.handlers import UpdateCheckout as UpdateCommand
from gateway.ratelimit import Bucket, RateLimiter
from gateway.settings import GatewaySettings
from service_runtime import errors
from service_runtime.errors import Violations
from service_runtime.identity import CallerKind, require_customer
from service_runtime.validation import check_email, check_id, check_money, check_text
from service_runtime.wire import money_in, timestamp_out
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CheckoutService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]

#: What UpdateCheckout may change (update_mask paths).
UPDATABLE = ("shipping_method", "shipping_address", "customer_email")
KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CARD_NUMBER = re.compile(r"[0-9][0-9 -]{11,22}[0-9]")
_NO_DEADLINE = 365 * 24 * 3600.0
#: What PlaceOrder keeps back from the client's deadline to answer PLACING in time.
ANSWER_MARGIN_SECONDS = 0.2


def signed_in_user() -> str:
    caller = require_customer()
    if caller.kind is not CallerKind.CUSTOMER:
        raise errors.PermissionDenied("sign in to check out", reason="SIGN_IN_REQUIRED")
    return caller.subject


def wait_until(context: Context, default_seconds: float) -> float:
    """The loop time by which the client must be answered."""
    now = asyncio.get_running_loop().time()
    remaining: float | None = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return now + default_seconds
    return now + max(0.0, remaining - ANSWER_MARGIN_SECONDS)


def client_deadline(context: Context) -> float | None:
    remaining: float | None = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return asyncio.get_running_loop().time() + remaining


def check_key(violations: Violations, key: str) -> None:
    if not key:
        violations.add("idempotency_key", "is required")
    elif not KEY_PATTERN.fullmatch(key):
        violations.add("idempotency_key", "must be 1..128 characters of [A-Za-z0-9._:-]")


def check_token(violations: Violations, token: str) -> None:
    check_text(violations, token, "payment_token", maximum=256, required=True)
    if CARD_NUMBER.fullmatch(token.strip()):
        raise errors.InvalidArgument(
            [errors.FieldViolation("payment_token", "must be a PSP token, never a card number")],
            "the payment token looks like a card number",
            reason="CARD_NUMBER_REJECTED",
        )


def _money(currency: str, minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=minor)


def _step_enum(step: SagaStep | None) -> pb.SagaStep.ValueType:
    return pb.SagaStep.Value(f"SAGA_STEP_{step.name}") if step else pb.SAGA_STEP_UNSPECIFIED


def checkout_out(checkout: Checkout, steps: list[StepRecord]) -> pb.Checkout:
    q, currency = checkout.quote, checkout.quote.currency_code
    options = shipping_pb.GetShippingOptionsResponse.FromString(checkout.shipping_options)
    message = pb.Checkout(
        checkout_id=checkout.checkout_id,
        user_id=checkout.user_id,
        cart_id=checkout.cart_id,
        status=pb.CheckoutStatus.Value(checkout.status.contract_name),
        customer_email=checkout.contact_email,
        order_id=checkout.order_id,
        payment_id=checkout.payment_id,
        cart_etag=checkout.cart_etag,
        attempt=checkout.attempt,
        shipping_method=_method_enum(checkout.shipping_method),
        current_step=_step_enum(None if checkout.status is CheckoutStatus.COMPLETED else checkout.current_step),
    )
    message.shipping_address.CopyFrom(_address(checkout.shipping_address))
    message.lines.extend(
        pb.CheckoutLine(
            sku=line.sku,
            product_name=line.product_name,
            quantity=line.quantity,
            unit_price=_money(currency, line.unit_price_minor),
            line_total=_money(currency, line.line_total_minor),
        )
        for line in checkout.lines
    )
    message.quote.CopyFrom(
        pb.CheckoutQuote(
            subtotal=_money(currency, q.subtotal_minor),
            shipping_cost=_money(currency, q.shipping_minor),
            tax=_money(currency, q.tax_minor),
            total=_money(currency, q.total_minor),
            tax_rate_basis_points=(q.tax_rate_ppm + 50) // 100,
            tax_rate_ppm=q.tax_rate_ppm,
            discount_total=_money(currency, q.discount_minor),
            shipping_taxed=q.shipping_taxed,
            free_shipping_applied=q.free_shipping_applied,
            delivery_estimate=shipping_pb.DeliveryEstimate(
                min_business_days=q.min_business_days,
                max_business_days=q.max_business_days,
                earliest_delivery_date=_gdate(q.earliest_delivery_date),
                latest_delivery_date=_gdate(q.latest_delivery_date),
            ),
        )
    )
    message.available_shipping_options.extend(options.options)
    for field, moment in (
        ("reservation_expire_time", checkout.reservation_expires_at),
        ("create_time", checkout.created_at),
        ("update_time", checkout.updated_at),
        ("end_time", checkout.ended_at),
    ):
        stamp = timestamp_out(moment)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    for step in steps:
        state = message.steps.add(
            step=_step_enum(step.step),
            status=pb.SagaStepStatus.Value(f"SAGA_STEP_STATUS_{step.status.name}"),
            attempts=step.attempts,
            last_error_reason=step.last_error_reason,
            attempt=step.attempt,
            payment_id=step.payment_id,
            last_error_code=step.last_error_code,
        )
        for field, moment in (("start_time", step.started_at), ("end_time", step.ended_at)):
            stamp = timestamp_out(moment)
            if stamp is not None:
                getattr(state, field).CopyFrom(stamp)
    if checkout.card_brand or checkout.card_last4:
        message.payment_card.CopyFrom(payment_pb.CardSummary(brand=checkout.card_brand, last4=checkout.card_last4))
    failure = checkout.last_failure
    if failure is not None:
        message.last_failure.CopyFrom(
            pb.CheckoutFailure(
                reason=failure.reason,
                message=failure.message,
                step=_step_enum(failure.step),
                attempt=failure.attempt,
                payment_id=failure.payment_id,
                code=failure.code,
            )
        )
        stamp = timestamp_out(failure.at)
        if stamp is not None:
            message.last_failure.fail_time.CopyFrom(stamp)
    return message


def _gdate(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _address(fields: Mapping[str, str]) -> address_pb2.Address:
    return address_pb2.Address(**{key: value for key, value in fields.items() if value and key in ADDRESS_FIELDS})


_METHODS: dict[str, shipping_pb.ShippingMethod.ValueType] = {name: value for value, name in METHOD_NAMES.items()}


def _method_enum(name: str) -> shipping_pb.ShippingMethod.ValueType:
    return _METHODS.get(name, shipping_pb.SHIPPING_METHOD_UNSPECIFIED)


class CheckoutServicer(pb_grpc.CheckoutServiceServicer):
    """shop.gateway.v1.CheckoutService."""

    def __init__(self, handlers: CheckoutHandlers, limiter: RateLimiter, settings: GatewaySettings) -> None:
        self._handlers = handlers
        self._limiter = limiter
        self._settings = settings
        self._writes = Bucket("checkout", settings.rate_limit_capacity, settings.rate_limit_per_second)
        self._reads = Bucket("checkout_read", settings.rate_limit_capacity * 4, settings.rate_limit_per_second * 4)

    async def _user(self, bucket: Bucket) -> str:
        user_id = signed_in_user()
        await self._limiter.take(bucket, user_id)
        return user_id

    async def _view(self, checkout: Checkout, steps: list[StepRecord] | None = None) -> pb.Checkout:
        """The checkout as the contract shows it, with its step log (read unless the use case had it)."""
        if steps is None:
            steps = await self._handlers.steps(checkout.checkout_id)
        return checkout_out(checkout, steps)

    async def StartCheckout(self, request: pb.StartCheckoutRequest, context: Context) -> pb.StartCheckoutResponse:
        user_id = await self._user(self._writes)
        command = self._start_command(user_id, request, "")
        answer = await self._handlers.start_checkout(command, wait_until(context, self._settings.place_wait_seconds))
        return pb.StartCheckoutResponse(
            checkout=await self._view(answer.checkout, answer.steps), replayed=answer.replayed
        )

    def _start_command(
        self, user_id: str, request: Any, prefix: str, violations: Violations | None = None
    ) -> StartCommand:
        violations = violations or Violations()
        check_id(violations, request.cart_id, "cart_id")
        if not request.HasField("shipping_address"):
            violations.add("shipping_address", "is required")
        method = METHOD_NAMES.get(request.shipping_method)
        if method is None:
            violations.add("shipping_method", "must be STANDARD, EXPRESS or OVERNIGHT")
        check_email(violations, request.customer_email, "customer_email")
        check_key(violations, request.idempotency_key)
        violations.raise_if_any()
        return StartCommand(
            user_id=user_id,
            cart_id=request.cart_id,
            address={field: getattr(request.shipping_address, field) for field in ADDRESS_FIELDS},
            shipping_method=method or "",
            customer_email=request.customer_email,
            idempotency_key=prefix + request.idempotency_key,
            fingerprint=fingerprint(request),
        )

    async def GetCheckout(self, request: pb.GetCheckoutRequest, context: Context) -> pb.GetCheckoutResponse:
        user_id = await self._user(self._reads)
        violations = Violations()
        check_id(violations, request.checkout_id, "checkout_id")
        violations.raise_if_any()
        checkout = await self._handlers.owned(user_id, request.checkout_id)
        return pb.GetCheckoutResponse(checkout=await self._view(checkout))

    async def PlaceOrder(self, request: pb.PlaceOrderRequest, context: Context) -> pb.PlaceOrderResponse:
        user_id = await self._user(self._writes)
        violations = Violations()
        check_id(violations, request.checkout_id, "checkout_id")
        check_token(violations, request.payment_token)
        check_key(violations, request.idempotency_key)
        violations.raise_if_any()
        command = PlaceCommand(
            user_id=user_id,
            checkout_id=request.checkout_id,
            payment_token=request.payment_token,
            idempotency_key=request.idempotency_key,
            fingerprint=fingerprint(request),
        )
        answer = await self._handlers.place_order(
            command, wait_until(context, self._settings.place_wait_seconds), client_deadline(context)
        )
        return pb.PlaceOrderResponse(checkout=await self._view(answer.checkout, answer.steps), replayed=answer.replayed)

    async def CancelCheckout(self, request: pb.CancelCheckoutRequest, context: Context) -> pb.CancelCheckoutResponse:
        user_id = await self._user(self._writes)
        violations = Violations()
        check_id(violations, request.checkout_id, "checkout_id")
        check_text(violations, request.reason, "reason", maximum=200, required=False)
        violations.raise_if_any()
        checkout, replayed = await self._handlers.cancel_checkout(user_id, request.checkout_id, request.reason)
        return pb.CancelCheckoutResponse(checkout=await self._view(checkout), replayed=replayed)

    async def CheckoutCart(self, request: pb.CheckoutCartRequest, context: Context) -> pb.CheckoutCartResponse:
        user_id = await self._user(self._writes)
        violations = Violations()
        check_token(violations, request.payment_token)
        if request.HasField("expected_total"):
            check_money(violations, money_in(request.expected_total), "expected_total", maximum_minor=10**13)
        start = self._start_command(user_id, request, "", violations)
        deadline = wait_until(context, self._settings.place_wait_seconds)
        started = await self._handlers.start_checkout(start, deadline, rpc="CheckoutCart")
        checkout = started.checkout
        total = checkout.quote
        if request.HasField("expected_total") and (
            request.expected_total.currency_code != total.currency_code
            or request.expected_total.amount_minor != total.total_minor
        ):
            if checkout.status is CheckoutStatus.QUOTED:
                await self._handlers.cancel_checkout(user_id, checkout.checkout_id, "quote_changed")
            raise errors.FailedPrecondition(
                "the total changed; show the new total and try again",
                reason="QUOTE_CHANGED",
                metadata={
                    "checkoutId": checkout.checkout_id,
                    "totalMinor": str(total.total_minor),
                    "currencyCode": total.currency_code,
                },
            )
        place = PlaceCommand(
            user_id=user_id,
            checkout_id=checkout.checkout_id,
            payment_token=request.payment_token,
            # The one-shot call's own key, derived (never minted): its retries place with the same key.
            idempotency_key="checkout-cart:" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:48],
            fingerprint=start.fingerprint,
        )
        placed = await self._handlers.place_order(place, deadline, client_deadline(context))
        return pb.CheckoutCartResponse(
            checkout=await self._view(placed.checkout, placed.steps), replayed=started.replayed and placed.replayed
        )

    async def UpdateCheckout(self, request: pb.UpdateCheckoutRequest, context: Context) -> pb.UpdateCheckoutResponse:
        user_id = await self._user(self._writes)
        violations = Violations()
        check_id(violations, request.checkout.checkout_id, "checkout.checkout_id")
        paths = set(request.update_mask.paths)
        if "*" in paths:
            paths = set(UPDATABLE)
        if not paths:
            violations.add("update_mask", "must name at least one field")
        for path in sorted(paths - set(UPDATABLE)):
            violations.add("update_mask", f"{path!r} cannot be updated; updatable: {', '.join(UPDATABLE)}")
        method: str | None = None
        if "shipping_method" in paths:
            method = METHOD_NAMES.get(request.checkout.shipping_method)
            if method is None:
                violations.add("checkout.shipping_method", "must be STANDARD, EXPRESS or OVERNIGHT")
        if "shipping_address" in paths and not request.checkout.HasField("shipping_address"):
            violations.add("checkout.shipping_address", "is required when the mask names it")
        if "customer_email" in paths:
            check_email(violations, request.checkout.customer_email, "checkout.customer_email")
        violations.raise_if_any()
        address = (
            {field: getattr(request.checkout.shipping_address, field) for field in ADDRESS_FIELDS}
            if "shipping_address" in paths
            else None
        )
        checkout = await self._handlers.update_checkout(
            UpdateCommand(
                user_id=user_id,
                checkout_id=request.checkout.checkout_id,
                shipping_method=method,
                address=address,
                customer_email=request.checkout.customer_email if "customer_email" in paths else None,
            )
        )
        return pb.UpdateCheckoutResponse(checkout=await self._view(checkout))
