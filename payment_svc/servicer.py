"""gRPC face of the payment service: proto → command → use case or view → proto, nothing else.

Two things happen here before any use case runs, because they concern the request as a whole: a string
field anywhere in the request that looks like a card number refuses it (CARD_NUMBER_REJECTED; the value is
never logged, stored or echoed), and the caller must be a trusted mesh service. Payments in a final state
are written through to the status cache as they are answered, and GetPayment reads them from it.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from payment_svc import commands, domain
from payment_svc.domain import FailureReason, Payment, PaymentStatus, RefundReason, RefundStatus
from payment_svc.handlers import PaymentHandlers
from payment_svc.status_cache import PaymentStatusCache
from payment_svc.views import PaymentViews
from service_runtime.errors import FieldViolation, InvalidArgument
from service_runtime.identity import require_trusted
from service_runtime.values import Money
from service_runtime.wire import money_out, optional_money_in, timestamp_out
from shop.payment.v1 import payment_service_pb2 as pb
from shop.payment.v1 import payment_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PaymentService"].full_name

_STATUS = {status: pb.PaymentStatus.Value(status.contract_name) for status in PaymentStatus}
_FAILURE = {reason: pb.PaymentFailureReason.Value(f"PAYMENT_FAILURE_REASON_{reason.name}") for reason in FailureReason}
_REFUND_STATUS = {status: pb.RefundStatus.Value(f"REFUND_STATUS_{status.name}") for status in RefundStatus}
_REFUND_REASON = {reason: pb.RefundReason.Value(f"REFUND_REASON_{reason.name}") for reason in RefundReason}
_REFUND_REASON_IN = {value: reason for reason, value in _REFUND_REASON.items()}
_FINAL = frozenset({PaymentStatus.VOIDED, PaymentStatus.REFUNDED, PaymentStatus.FAILED, PaymentStatus.EXPIRED})


def reject_card_numbers(message: Message, path: str = "") -> None:
    """Refuses a request carrying a card number in any string field (the value is never repeated)."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        values = value if field.is_repeated else [value]
        for item in values:
            if isinstance(item, Message):
                reject_card_numbers(item, f"{name}.")
            elif isinstance(item, str) and (
                domain.contains_card_number(item)
                or (field.name == "payment_token" and domain.looks_like_card_number(item))
            ):
                raise InvalidArgument(
                    [FieldViolation(name, "looks like a card number; send a PSP payment token, never card data")],
                    "card numbers are refused; send a PSP payment token",
                    reason="CARD_NUMBER_REJECTED",
                )


def _budget(context: Context) -> float | None:
    remaining: float | None = context.time_remaining()
    return None if remaining is None else max(remaining - 0.05, 0.0)


class PaymentServicer(pb_grpc.PaymentServiceServicer):
    def __init__(self, handlers: PaymentHandlers, views: PaymentViews, cache: PaymentStatusCache) -> None:
        self._handlers = handlers
        self._views = views
        self._cache = cache

    async def _out(self, payment: Payment) -> pb.Payment:
        message = payment_out(payment)
        if payment.status in _FINAL:
            await self._cache.put(payment.payment_id, message.SerializeToString())
        return message

    async def AuthorizePayment(
        self, request: pb.AuthorizePaymentRequest, context: Context
    ) -> pb.AuthorizePaymentResponse:
        reject_card_numbers(request)
        require_trusted()
        authorized = await self._handlers.authorize(
            commands.AuthorizePayment(
                checkout_id=request.checkout_id,
                amount=optional_money_in(request, "amount"),
                payment_token=request.payment_token,
                idempotency_key=request.idempotency_key,
            ),
            _budget(context),
        )
        return pb.AuthorizePaymentResponse(payment=await self._out(authorized.payment), replayed=authorized.replayed)

    async def CapturePayment(self, request: pb.CapturePaymentRequest, context: Context) -> pb.CapturePaymentResponse:
        reject_card_numbers(request)
        require_trusted()
        captured = await self._handlers.capture(
            commands.CapturePayment(
                payment_id=request.payment_id,
                order_id=request.order_id,
                amount=optional_money_in(request, "amount"),
                idempotency_key=request.idempotency_key,
            ),
            _budget(context),
        )
        return pb.CapturePaymentResponse(payment=await self._out(captured.payment), replayed=captured.replayed)

    async def VoidPayment(self, request: pb.VoidPaymentRequest, context: Context) -> pb.VoidPaymentResponse:
        reject_card_numbers(request)
        require_trusted()
        voided = await self._handlers.void(
            commands.VoidPayment(
                payment_id=request.payment_id,
                reason=request.reason,
                checkout_id=request.checkout_id,
                authorization_idempotency_key=request.authorization_idempotency_key,
            ),
            _budget(context),
        )
        return pb.VoidPaymentResponse(
            payment=await self._out(voided.payment) if voided.payment else None,
            replayed=voided.replayed,
            cancelled_before_authorization=voided.cancelled_before_authorization,
        )

    async def RefundPayment(self, request: pb.RefundPaymentRequest, context: Context) -> pb.RefundPaymentResponse:
        reject_card_numbers(request)
        require_trusted()
        refunded = await self._handlers.refund(
            commands.RefundPayment(
                payment_id=request.payment_id,
                amount=optional_money_in(request, "amount"),
                reason=_REFUND_REASON_IN.get(request.reason),
                note=request.note,
                idempotency_key=request.idempotency_key,
            ),
            _budget(context),
        )
        return pb.RefundPaymentResponse(
            payment=await self._out(refunded.payment), refund=refund_out(refunded.refund), replayed=refunded.replayed
        )

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Context) -> pb.GetPaymentResponse:
        reject_card_numbers(request)
        require_trusted()
        if request.payment_id and not request.checkout_id and not request.authorization_idempotency_key:
            cached = await self._cache.get(request.payment_id)
            if cached is not None:
                return pb.GetPaymentResponse(payment=pb.Payment.FromString(cached))
        payment = await self._handlers.find(
            commands.PaymentName(
                payment_id=request.payment_id,
                checkout_id=request.checkout_id,
                authorization_idempotency_key=request.authorization_idempotency_key,
            )
        )
        return pb.GetPaymentResponse(payment=await self._out(payment))

    async def ListPayments(self, request: pb.ListPaymentsRequest, context: Context) -> pb.ListPaymentsResponse:
        reject_card_numbers(request)
        require_trusted()
        page = await self._views.list_payments(request.checkout_id, request.page_size, request.page_token)
        return pb.ListPaymentsResponse(
            payments=[payment_out(payment) for payment in page.payments], next_page_token=page.next_page_token
        )


def payment_out(payment: Payment) -> pb.Payment:
    currency = payment.amount.currency_code
    message = pb.Payment(
        payment_id=payment.payment_id,
        checkout_id=payment.checkout_id,
        order_id=payment.order_id,
        status=_STATUS[payment.status],
        amount=money_out(payment.amount),
        captured_amount=money_out(Money(currency, payment.captured_minor)),
        refunded_amount=money_out(Money(currency, payment.refunded_minor)),
        refundable_amount=money_out(Money(currency, payment.refundable_minor)),
        psp_reference=payment.psp_reference,
        refunds=[refund_out(refund) for refund in payment.refunds],
        history=[
            pb.PaymentTransition(
                from_status=_STATUS[entry.from_status] if entry.from_status else pb.PAYMENT_STATUS_UNSPECIFIED,
                to_status=_STATUS[entry.to_status],
                transition_time=timestamp_out(entry.at),
                cause=entry.cause,
            )
            for entry in payment.history
        ],
        create_time=timestamp_out(payment.created_at),
        update_time=timestamp_out(payment.updated_at),
        authorize_time=timestamp_out(payment.authorized_at),
        capture_time=timestamp_out(payment.captured_at),
        void_time=timestamp_out(payment.voided_at),
        authorization_expire_time=(
            timestamp_out(payment.authorization_expires_at) if payment.status is PaymentStatus.AUTHORIZED else None
        ),
        idempotency_key=payment.idempotency_key,
    )
    if payment.failure_reason is not None:
        message.failure.CopyFrom(
            pb.PaymentFailure(
                reason=_FAILURE[payment.failure_reason],
                psp_decline_code=payment.psp_decline_code,
                message=payment.failure_message,
            )
        )
    if payment.card is not None:
        message.payment_method.CopyFrom(
            pb.PaymentMethod(
                type=pb.PAYMENT_METHOD_TYPE_CARD,
                card=pb.CardSummary(
                    brand=payment.card.brand,
                    last4=payment.card.last4,
                    exp_month=payment.card.exp_month,
                    exp_year=payment.card.exp_year,
                    funding=payment.card.funding,
                ),
            )
        )
    return message


def refund_out(refund: domain.Refund) -> pb.Refund:
    return pb.Refund(
        refund_id=refund.refund_id,
        amount=money_out(refund.amount),
        reason=_REFUND_REASON[refund.reason],
        note=refund.note,
        status=_REFUND_STATUS[refund.status],
        psp_reference=refund.psp_reference,
        create_time=timestamp_out(refund.created_at),
        complete_time=timestamp_out(refund.completed_at),
    )
