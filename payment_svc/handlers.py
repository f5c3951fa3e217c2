"""Use cases that move money: authorize, capture, void, refund; and the settlements the reconciler shares.

Every use case has the same three steps, so that no transaction is open while the PSP is called and a
crash at any point leaves a state the reconciler can finish:

1. one unit of work records what is about to be sent (a PROCESSING payment, a pending capture or void,
   a PROCESSING refund), or finds that it was already done (a replay);
2. the PSP call, with an Idempotency-Key derived from the payment and the operation;
3. one unit of work records the PSP's answer with it in the event history (`settle_*`), unless another
   request or the reconciler settled it first.

An answer that never came leaves step 1's state for the reconciler and tells the caller
PAYMENT_OUTCOME_UNKNOWN; retrying the call re-sends the same key, which the PSP answers from its record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from payment_svc import domain, psp
from payment_svc.commands import AuthorizePayment, CapturePayment, PaymentName, RefundPayment, VoidPayment
from payment_svc.domain import (
    DECLINE_CODES,
    CardSummary,
    FailureReason,
    Payment,
    PaymentStatus,
    PendingCall,
    Refund,
    RefundStatus,
    Transition,
)
from payment_svc.repository import PaymentStatements
from service_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from service_runtime.ids import new_id
from service_runtime.sql import CommitThenRaise, UnitOfWork, conflict_persisted

log = logging.getLogger(__name__)

Work = UnitOfWork[PaymentStatements]


@dataclass(frozen=True)
class Authorized:
    payment: Payment
    replayed: bool


@dataclass(frozen=True)
class Captured:
    payment: Payment
    replayed: bool


@dataclass(frozen=True)
class Voided:
    payment: Payment | None
    replayed: bool
    cancelled_before_authorization: bool = False


@dataclass(frozen=True)
class Refunded:
    payment: Payment
    refund: Refund
    replayed: bool


def not_found(payment_id: str) -> NotFound:
    return NotFound(
        f"payment {payment_id} does not exist", reason="PAYMENT_NOT_FOUND", metadata={"paymentId": payment_id}
    )


def key_reused(key: str) -> AlreadyExists:
    return AlreadyExists(
        "this idempotency key was used for a different request",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"idempotencyKey": key},
    )


def psp_unavailable() -> Unavailable:
    return Unavailable(
        "the payment service provider could not be reached; nothing was sent; retry",
        reason="PSP_UNAVAILABLE",
        retry_after_seconds=1.0,
    )


def refund_declined(refund: Refund) -> FailedPrecondition:
    return FailedPrecondition(
        f"the PSP declined refund {refund.refund_id}; it is recorded FAILED",
        reason="REFUND_DECLINED",
        metadata={"paymentId": refund.payment_id, "refundId": refund.refund_id},
    )


def _card(body: dict[str, Any]) -> CardSummary | None:
    card = body.get("card") or body.get("error", {}).get("card")
    if not isinstance(card, dict):
        return None
    return CardSummary(
        brand=str(card.get("brand", "")),
        last4=str(card.get("last4", "")),
        exp_month=int(card.get("exp_month", 0)),
        exp_year=int(card.get("exp_year", 0)),
        funding=str(card.get("funding", "")),
    )


class PaymentHandlers:
    def __init__(
        self,
        work: Work,
        client: psp.PspClient,
        *,
        authorization_ttl_seconds: float,
        reconcile_after_seconds: float,
    ) -> None:
        self._work = work
        self._psp = client
        self._ttl = timedelta(seconds=authorization_ttl_seconds)
        self._grace = reconcile_after_seconds

    async def details(self, payment: Payment) -> Payment:
        return await self._work.read(lambda tx: tx.with_details(payment))

    # AuthorizePayment

    async def authorize(self, command: AuthorizePayment, budget: float | None) -> Authorized:
        amount = command.validate()
        fingerprint = domain.fingerprint(
            command.checkout_id, amount.currency_code, amount.amount_minor, command.payment_token
        )

        async def begin(tx: PaymentStatements) -> tuple[str, str | None]:
            return await tx.begin_authorization(
                new_id("pay"), command.checkout_id, command.idempotency_key, fingerprint, amount, self._grace
            )

        outcome, payment_id = await self._work.statement(begin)
        assert payment_id is not None or outcome == "cancelled"
        if outcome == "cancelled":
            raise FailedPrecondition(
                "this authorization was cancelled (VoidPayment) before it arrived; nothing is held",
                reason="AUTHORIZATION_CANCELLED",
                metadata={"checkoutId": command.checkout_id, "idempotencyKey": command.idempotency_key},
            )
        if outcome == "live":
            raise FailedPrecondition(
                f"checkout {command.checkout_id} already has payment {payment_id}",
                reason="CHECKOUT_HAS_ACTIVE_PAYMENT",
                metadata={"paymentId": str(payment_id)},
            )
        assert payment_id is not None
        replayed = outcome == "existing"
        if replayed:
            existing = await self._work.read(lambda tx: tx.payment(payment_id))
            assert existing is not None
            if existing.fingerprint != fingerprint:
                raise key_reused(command.idempotency_key)
            if existing.status is PaymentStatus.FAILED:
                raise domain.decline(existing)
            if existing.status is not PaymentStatus.PROCESSING:
                return Authorized(await self.details(existing), True)
        answer = await self._send(
            payment_id,
            "/v1/authorizations",
            {"amount_minor": amount.amount_minor, "currency": amount.currency_code, "token": command.payment_token},
            domain.psp_key(payment_id, "authorize"),
            budget,
        )
        settled = await self.settle_authorization(payment_id, answer.status, answer.body, "authorize")
        if settled.status is PaymentStatus.FAILED:
            raise domain.decline(settled)
        return Authorized(settled, replayed)

    async def _send(
        self, payment_id: str, path: str, body: dict[str, Any], key: str, budget: float | None, refund_id: str = ""
    ) -> psp.Answered:
        try:
            return await self._psp.post(path, body, key, budget=budget)
        except psp.InProgress:
            raise conflict_persisted() from None
        except (psp.OutcomeUnknown, psp.Fenced):
            log.warning("PSP outcome unknown for %s; the reconciler will settle it", key)
            raise domain.outcome_unknown(payment_id, refund_id=refund_id) from None
        except psp.Unreachable:
            raise psp_unavailable() from None

    async def settle_authorization(self, payment_id: str, status: int, body: dict[str, Any], cause: str) -> Payment:
        """Records the PSP's answer to the authorization (2xx: AUTHORIZED; anything else: FAILED), once."""

        async def work(tx: PaymentStatements) -> Payment:
            # One conditional UPDATE (WHERE status = 'processing') with its event, in autocommit: a concurrent
            # settlement of the same payment finds no row and reads what the first one recorded.
            card = _card(body)
            if 200 <= status < 300:
                expires = datetime.now(UTC) + self._ttl
                if isinstance(body.get("expires_at"), str):
                    expires = min(expires, datetime.fromisoformat(body["expires_at"]))
                assert card is not None
                authorized = await tx.mark_authorized(payment_id, str(body["id"]), expires, card, cause, body)
                if authorized is not None:
                    return authorized  # with its details, in the same statement
                settled = None
            else:
                error = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
                decline_code = str(error.get("decline_code") or error.get("code") or "")
                reason = DECLINE_CODES.get(decline_code, FailureReason.PROCESSOR_DECLINED)
                message = domain.decline_message(reason)
                settled = await tx.mark_failed(payment_id, reason, decline_code, message, card, cause, body)
            if settled is None:
                settled = await tx.payment(payment_id)
                assert settled is not None
            return await tx.with_details(settled)

        return await self._work.statement(work)

    # CapturePayment

    async def capture(self, command: CapturePayment, budget: float | None) -> Captured:
        command.validate()
        requested = command.amount
        fingerprint = domain.fingerprint(
            command.order_id, requested.currency_code if requested else "", requested.amount_minor if requested else ""
        )

        async def begin(tx: PaymentStatements) -> tuple[Payment, bool]:
            payment = await tx.payment(command.payment_id, lock=True)
            if payment is None:
                raise not_found(command.payment_id)
            if payment.capture_key == command.idempotency_key and payment.capture_fingerprint != fingerprint:
                raise key_reused(command.idempotency_key)
            if payment.pending_operation == "void":
                raise domain.outcome_unknown(payment.payment_id)
            if payment.pending_operation == "capture":
                if payment.pending_order_id != command.order_id:
                    raise FailedPrecondition(
                        f"payment {payment.payment_id} is being captured for another order",
                        reason="ORDER_MISMATCH",
                        metadata={"paymentId": payment.payment_id, "orderId": payment.pending_order_id},
                    )
                return payment, True
            decision = domain.decide_capture(
                payment.payment_id, payment.status, captured_for=payment.order_id, order_id=command.order_id
            )
            if decision is Transition.ALREADY_DONE:
                return payment, False
            if payment.authorization_expires_at is not None and payment.authorization_expires_at <= datetime.now(UTC):
                await tx.mark_expired(payment.payment_id)
                await tx.record(
                    payment.payment_id, PaymentStatus.AUTHORIZED, PaymentStatus.EXPIRED, "capture: authorization lapsed"
                )
                raise CommitThenRaise(domain.authorization_expired(payment.payment_id))
            amount = payment.amount.amount_minor
            if requested is not None:
                if requested.currency_code != payment.amount.currency_code:
                    raise _invalid(
                        "amount.currency_code", f"must be {payment.amount.currency_code}, the payment's currency"
                    )
                if requested.amount_minor > payment.amount.amount_minor:
                    raise _invalid(
                        "amount.amount_minor", f"must be at most {payment.amount.amount_minor}, the authorized amount"
                    )
                amount = requested.amount_minor
            pending = await tx.begin_pending(
                payment.payment_id,
                "capture",
                grace=self._grace,
                order_id=command.order_id,
                amount_minor=amount,
                capture_key=command.idempotency_key,
                capture_fingerprint=fingerprint,
            )
            return pending, True

        async def fast(tx: PaymentStatements) -> PendingCall | None:
            return await tx.begin_capture(
                command.payment_id,
                order_id=command.order_id,
                amount=requested,
                capture_key=command.idempotency_key,
                capture_fingerprint=fingerprint,
                grace=self._grace,
            )

        call = await self._work.statement(fast)
        if call is None:
            payment, send = await self._work.run(begin)
            if not send:
                return Captured(await self.details(payment), True)
            call = payment.pending_call
        answer = await self._send(
            call.payment_id,
            f"/v1/authorizations/{call.psp_reference}/capture",
            {"amount_minor": call.amount_minor},
            call.psp_key,
            budget,
        )
        settled = await self.settle_capture(call.payment_id, answer.status, answer.body, "capture")
        return Captured(settled, False)

    async def settle_capture(self, payment_id: str, status: int, body: dict[str, Any], cause: str) -> Payment:
        """Records the PSP's answer to the pending capture: CAPTURED, EXPIRED, or back to plain AUTHORIZED."""

        async def captured(tx: PaymentStatements) -> Payment | None:
            return await tx.mark_captured(payment_id, cause, body)  # one statement: event and details too

        if 200 <= status < 300 and (done := await self._work.statement(captured)) is not None:
            return done

        async def work(tx: PaymentStatements) -> Payment:
            payment = await tx.payment(payment_id, lock=True)
            assert payment is not None
            if payment.pending_operation != "capture" or 200 <= status < 300:
                return await tx.with_details(payment)
            return await _refused(tx, payment, status, body, cause)

        return await self._work.run(work)

    # VoidPayment

    async def void(self, command: VoidPayment, budget: float | None) -> Voided:
        command.validate()

        async def begin(tx: PaymentStatements) -> tuple[Payment | None, bool, bool]:
            if command.payment_id:
                payment = await tx.payment(command.payment_id, lock=True)
                if payment is None:
                    raise not_found(command.payment_id)
            else:
                await tx.lock_checkout(command.checkout_id)
                found = await tx.payment_by_key(command.checkout_id, command.authorization_idempotency_key)
                if found is None:
                    recorded = await tx.cancel(
                        command.checkout_id, command.authorization_idempotency_key, command.reason
                    )
                    return None, not recorded, False
                payment = await tx.payment(found.payment_id, lock=True)
                assert payment is not None
            if payment.pending_operation == "capture":
                raise domain.outcome_unknown(payment.payment_id)
            if payment.pending_operation == "void":
                return payment, False, True
            if domain.decide_void(payment.payment_id, payment.status) is Transition.ALREADY_DONE:
                return payment, True, False
            return await tx.begin_pending(payment.payment_id, "void", grace=self._grace), False, True

        payment, replayed, send = await self._work.run(begin)
        if payment is None:
            return Voided(None, replayed, cancelled_before_authorization=True)
        if not send:
            return Voided(await self.details(payment), replayed)
        answer = await self._send(
            payment.payment_id, f"/v1/authorizations/{payment.psp_reference}/void", {}, payment.pending_psp_key, budget
        )
        settled = await self.settle_void(payment.payment_id, answer.status, answer.body, f"void: {command.reason}")
        return Voided(settled, False)

    async def settle_void(self, payment_id: str, status: int, body: dict[str, Any], cause: str) -> Payment:
        async def work(tx: PaymentStatements) -> Payment:
            if 200 <= status < 300:
                voided = await tx.mark_voided(payment_id, cause, body)
                if voided is not None:
                    return await tx.with_details(voided)
            payment = await tx.payment(payment_id, lock=True)
            assert payment is not None
            if payment.pending_operation != "void" or 200 <= status < 300:
                return await tx.with_details(payment)
            return await _refused(tx, payment, status, body, cause)

        return await self._work.run(work)

    async def drop_pending(self, payment_id: str, operation: str) -> None:
        """The PSP never received the pending capture or void (its key is now fenced): nothing happened."""

        async def work(tx: PaymentStatements) -> None:
            payment = await tx.payment(payment_id, lock=True)
            if payment is not None and payment.pending_operation == operation:
                await tx.clear_pending(payment_id)

        await self._work.run(work)

    # RefundPayment

    async def refund(self, command: RefundPayment, budget: float | None) -> Refunded:
        command.validate()
        reason = command.reason
        assert reason is not None
        requested = command.amount
        fingerprint = domain.fingerprint(
            requested.currency_code if requested else "",
            requested.amount_minor if requested else "",
            reason.value,
            command.note,
        )

        async def begin(tx: PaymentStatements) -> tuple[Payment, Refund, bool]:
            payment = await tx.payment(command.payment_id, lock=True)
            if payment is None:
                raise not_found(command.payment_id)
            existing = await tx.refund_by_key(payment, command.idempotency_key)
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    raise key_reused(command.idempotency_key)
                if existing.status is RefundStatus.FAILED:
                    raise refund_declined(existing)
                return payment, existing, True
            refundable = domain.refundable_minor(
                captured_minor=payment.captured_minor,
                refunded_minor=payment.refunded_minor,
                in_flight_minor=await tx.refunds_in_flight(payment.payment_id),
            )
            amount = domain.check_refund(
                payment.payment_id,
                payment.status,
                currency_code=payment.amount.currency_code,
                refundable=refundable,
                requested=requested,
            )
            refund = await tx.insert_refund(
                new_id("re"),
                payment,
                command.idempotency_key,
                fingerprint,
                amount,
                reason,
                command.note,
                self._grace,
            )
            return payment, refund, False

        payment, refund, replayed = await self._work.run(begin)
        if refund.status is RefundStatus.SUCCEEDED:
            return Refunded(await self.details(payment), refund, replayed)
        answer = await self._send(
            payment.payment_id,
            "/v1/refunds",
            {"authorization": payment.psp_reference, "amount_minor": refund.amount.amount_minor},
            domain.refund_psp_key(payment.payment_id, refund.refund_id),
            budget,
            refund_id=refund.refund_id,
        )
        settled_payment, settled_refund = await self.settle_refund(
            payment.payment_id, refund.refund_id, answer.status, answer.body, f"refund:{refund.refund_id}"
        )
        if settled_refund.status is RefundStatus.FAILED:
            raise refund_declined(settled_refund)
        return Refunded(settled_payment, settled_refund, replayed)

    async def settle_refund(
        self, payment_id: str, refund_id: str, status: int, body: dict[str, Any], cause: str
    ) -> tuple[Payment, Refund]:
        async def work(tx: PaymentStatements) -> tuple[Payment, Refund]:
            payment = await tx.payment(payment_id, lock=True)
            assert payment is not None
            refund = await tx.lock_refund(refund_id, payment.amount.currency_code)
            assert refund is not None
            if refund.status is not RefundStatus.PROCESSING:
                return await tx.with_details(payment), refund
            currency = payment.amount.currency_code
            if not 200 <= status < 300:
                return payment, await tx.settle_refund(refund_id, RefundStatus.FAILED, None, currency)
            settled = await tx.settle_refund(
                refund_id, RefundStatus.SUCCEEDED, str(body.get("id", "")) or None, currency
            )
            target = domain.status_after_refunds(
                captured_minor=payment.captured_minor,
                refunded_minor=payment.refunded_minor + refund.amount.amount_minor,
            )
            updated = await tx.add_refunded(payment_id, refund.amount.amount_minor, target)
            await tx.record(payment_id, payment.status, target, cause, body)
            return await tx.with_details(updated), settled

        return await self._work.run(work)

    # Reads shared with the views

    async def find(self, name: PaymentName) -> Payment:
        name.validate()

        async def work(tx: PaymentStatements) -> Payment:
            if name.payment_id:
                payment = await tx.payment(name.payment_id)
                missing = name.payment_id
            else:
                payment = await tx.payment_by_key(name.checkout_id, name.authorization_idempotency_key)
                missing = f"{name.checkout_id}/{name.authorization_idempotency_key}"
            if payment is None:
                raise not_found(missing)
            return await tx.with_details(payment)

        return await self._work.read(work)


async def _refused(tx: PaymentStatements, payment: Payment, status: int, body: dict[str, Any], cause: str) -> Payment:
    """The PSP refused a pending capture or void: an expired authorization becomes EXPIRED, anything else
    leaves the payment AUTHORIZED; either way the caller is refused after the commit."""
    code = str(body.get("error", {}).get("code", "")) if isinstance(body.get("error"), dict) else ""
    if code == "authorization_expired":
        expired = await tx.mark_expired(payment.payment_id)
        await tx.record(payment.payment_id, PaymentStatus.AUTHORIZED, PaymentStatus.EXPIRED, cause, body)
        raise CommitThenRaise(domain.authorization_expired(expired.payment_id))
    await tx.clear_pending(payment.payment_id)
    raise CommitThenRaise(
        FailedPrecondition(
            f"the PSP refused the {payment.pending_operation} of payment {payment.payment_id} ({code or status})",
            reason="PAYMENT_NOT_AUTHORIZED",
            metadata={"paymentId": payment.payment_id, "status": payment.status.contract_name},
        )
    )


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation(field, description)])
