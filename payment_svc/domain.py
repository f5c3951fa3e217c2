"""Payment's business rules, free of I/O: the state machine, what each call may do, and refund arithmetic.

    PENDING            ──▶ PROCESSING                          (sent to the PSP)
    PROCESSING         ──▶ AUTHORIZED | FAILED                 (the PSP answered)
    AUTHORIZED         ──▶ CAPTURED | VOIDED
    CAPTURED           ──▶ PARTIALLY_REFUNDED | REFUNDED
    PARTIALLY_REFUNDED ──▶ PARTIALLY_REFUNDED | REFUNDED       (another refund)

PENDING: recorded, nothing sent to the PSP. PROCESSING: sent, outcome not yet known (the reconciler
settles unknown outcomes); while a payment is PENDING or PROCESSING, a capture or void cannot be
decided and answers UNAVAILABLE (PAYMENT_OUTCOME_UNKNOWN) so the caller retries.

Money is integer minor units; a payment captures its full authorized amount, and refunds return at
most what was captured, counting refunds still at the PSP so two concurrent refunds cannot together
exceed the capture.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from service_runtime.errors import FailedPrecondition, Unavailable, Violations
from service_runtime.values import Money

#: How long a caller should wait before retrying a call on a payment whose outcome is still unknown.
OUTCOME_UNKNOWN_RETRY_SECONDS = 1.0

#: 13..19 digits, optionally grouped with spaces or dashes: what a card number (PAN) looks like.
_CARD_NUMBER = re.compile(r"^\d(?:[ -]?\d){12,18}$")


class PaymentStatus(enum.Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"

    @property
    def contract_name(self) -> str:
        return f"PAYMENT_STATUS_{self.name}"


TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.FAILED}),
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.CAPTURED, PaymentStatus.VOIDED}),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
    PaymentStatus.VOIDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
}

TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
_UNSETTLED = frozenset({PaymentStatus.PENDING, PaymentStatus.PROCESSING})
_CAPTURED_OR_LATER = frozenset({PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED})


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    """Guards every write to the event history: raises FailedPrecondition for a move the state machine lacks."""
    if target not in TRANSITIONS[current]:
        raise FailedPrecondition(
            f"a payment cannot go from {current.value} to {target.value}",
            reason="PAYMENT_TRANSITION_NOT_ALLOWED",
            metadata={"status": current.contract_name, "targetStatus": target.contract_name},
        )


class Transition(enum.Enum):
    """What a capture or void should do, decided from the payment's state alone."""

    PROCEED = "proceed"
    ALREADY_DONE = "already_done"


def outcome_unknown(payment_id: str) -> Unavailable:
    return Unavailable(
        f"the authorization of payment {payment_id} is not settled yet; retry",
        reason="PAYMENT_OUTCOME_UNKNOWN",
        metadata={"paymentId": payment_id},
        retry_after_seconds=OUTCOME_UNKNOWN_RETRY_SECONDS,
    )


def decide_capture(payment_id: str, status: PaymentStatus, *, captured_for: str, order_id: str) -> Transition:
    """CapturePayment: AUTHORIZED proceeds; captured (or later) for the same order is a replay."""
    if status is PaymentStatus.AUTHORIZED:
        return Transition.PROCEED
    if status in _CAPTURED_OR_LATER:
        if captured_for != order_id:
            raise FailedPrecondition(
                f"payment {payment_id} was captured for another order",
                reason="ORDER_MISMATCH",
                metadata={"paymentId": payment_id, "orderId": captured_for},
            )
        return Transition.ALREADY_DONE
    if status in _UNSETTLED:
        raise outcome_unknown(payment_id)
    raise FailedPrecondition(
        f"payment {payment_id} is {status.value}: nothing is held to capture",
        reason="PAYMENT_NOT_AUTHORIZED",
        metadata={"paymentId": payment_id, "status": status.contract_name},
    )


def decide_void(payment_id: str, status: PaymentStatus) -> Transition:
    """VoidPayment: AUTHORIZED proceeds; VOIDED, and FAILED (nothing is held), are replays."""
    if status is PaymentStatus.AUTHORIZED:
        return Transition.PROCEED
    if status in (PaymentStatus.VOIDED, PaymentStatus.FAILED):
        return Transition.ALREADY_DONE
    if status in _UNSETTLED:
        raise outcome_unknown(payment_id)
    raise FailedPrecondition(
        f"payment {payment_id} was captured; refund it instead",
        reason="PAYMENT_ALREADY_CAPTURED",
        metadata={"paymentId": payment_id, "status": status.contract_name},
    )


# Refunds


def refundable_minor(*, captured_minor: int, refunded_minor: int, in_flight_minor: int) -> int:
    """What may still be refunded: captured less succeeded refunds less refunds still at the PSP."""
    return max(captured_minor - refunded_minor - in_flight_minor, 0)


def check_refund(
    payment_id: str, status: PaymentStatus, *, currency_code: str, refundable: int, requested: Money | None
) -> int:
    """RefundPayment: the amount to refund in minor units; `requested` None means everything refundable."""
    if requested is not None:
        v = Violations()
        v.check(
            requested.currency_code == currency_code,
            "amount.currency_code",
            f"must be {currency_code}, the payment's currency",
        )
        v.check(requested.amount_minor >= 1, "amount.amount_minor", "must be at least 1")
        v.raise_if_any()
    if status not in (PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED):
        raise FailedPrecondition(
            f"payment {payment_id} is {status.value}: only captured money can be refunded",
            reason="PAYMENT_NOT_CAPTURED",
            metadata={"paymentId": payment_id, "status": status.contract_name},
        )
    amount = refundable if requested is None else requested.amount_minor
    if amount > refundable or amount == 0:
        raise FailedPrecondition(
            f"payment {payment_id} has {refundable} minor units left to refund",
            reason="REFUND_EXCEEDS_CAPTURED",
            metadata={"paymentId": payment_id, "refundableMinor": str(refundable)},
        )
    return amount


def status_after_refunds(*, captured_minor: int, refunded_minor: int) -> PaymentStatus:
    """The state a captured payment is in once `refunded_minor` has been returned in total."""
    if not 0 <= refunded_minor <= captured_minor:
        raise ValueError(f"refunded {refunded_minor} is outside 0..{captured_minor}, the captured amount")
    if refunded_minor == 0:
        return PaymentStatus.CAPTURED
    if refunded_minor == captured_minor:
        return PaymentStatus.REFUNDED
    return PaymentStatus.PARTIALLY_REFUNDED


# Card data


def looks_like_card_number(payment_token: str) -> bool:
    """True for a "token" that is really a card number: refused (CARD_NUMBER_REJECTED), never logged or stored."""
    return bool(_CARD_NUMBER.match(payment_token.strip()))
