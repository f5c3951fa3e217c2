"""Payment's business rules, free of I/O: the state machine, what each call may do, and refund arithmetic.

    PENDING            ──▶ PROCESSING                          (sent to the PSP)
    PROCESSING         ──▶ AUTHORIZED | FAILED                 (the PSP answered)
    AUTHORIZED         ──▶ CAPTURED | VOIDED | EXPIRED         (EXPIRED: the PSP let the hold lapse)
    CAPTURED           ──▶ PARTIALLY_REFUNDED | REFUNDED
    PARTIALLY_REFUNDED ──▶ PARTIALLY_REFUNDED | REFUNDED       (another refund)

PENDING: recorded, nothing sent to the PSP. PROCESSING: sent, outcome not yet known (the reconciler
settles unknown outcomes); while a payment is PENDING or PROCESSING, a capture or void cannot be
decided and answers UNAVAILABLE (PAYMENT_OUTCOME_UNKNOWN) so the caller retries.

A capture or void sent to the PSP is recorded as pending on the AUTHORIZED payment first; its outcome,
if lost, is settled by the reconciler like an unknown authorization.

Money is integer minor units; a payment captures its authorized amount or part of it, and refunds return
at most what was captured, counting refunds still at the PSP so two concurrent refunds cannot together
exceed the capture.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

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
    EXPIRED = "expired"

    @property
    def contract_name(self) -> str:
        return f"PAYMENT_STATUS_{self.name}"


TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.FAILED}),
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.CAPTURED, PaymentStatus.VOIDED, PaymentStatus.EXPIRED}),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
    PaymentStatus.VOIDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.EXPIRED: frozenset(),
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


def outcome_unknown(payment_id: str, *, refund_id: str = "") -> Unavailable:
    metadata = {"paymentId": payment_id, **({"refundId": refund_id} if refund_id else {})}
    return Unavailable(
        f"the PSP's answer for payment {payment_id} is not known yet; retry the same call",
        reason="PAYMENT_OUTCOME_UNKNOWN",
        metadata=metadata,
        retry_after_seconds=OUTCOME_UNKNOWN_RETRY_SECONDS,
    )


def authorization_expired(payment_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the authorization of payment {payment_id} has lapsed: the PSP no longer holds the funds",
        reason="AUTHORIZATION_EXPIRED",
        metadata={"paymentId": payment_id},
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
    if status is PaymentStatus.EXPIRED:
        raise authorization_expired(payment_id)
    raise FailedPrecondition(
        f"payment {payment_id} is {status.value}: nothing is held to capture",
        reason="PAYMENT_NOT_AUTHORIZED",
        metadata={"paymentId": payment_id, "status": status.contract_name},
    )


def decide_void(payment_id: str, status: PaymentStatus) -> Transition:
    """VoidPayment: AUTHORIZED proceeds; VOIDED, and FAILED or EXPIRED (nothing is held), are replays."""
    if status is PaymentStatus.AUTHORIZED:
        return Transition.PROCEED
    if status in (PaymentStatus.VOIDED, PaymentStatus.FAILED, PaymentStatus.EXPIRED):
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


_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_GROUPED = re.compile(r"(?<![0-9])[0-9]{4}(?:([ -])[0-9]{4,6})(?:\1[0-9]{1,5}){1,3}(?![0-9])")
#: How card numbers are written in groups: 4-4-4-4 (and 4-4-4-4-1..3 for 17..19 digits), 4-6-5, 4-6-4.
_GROUPINGS = frozenset({(4, 4, 4, 4), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)})


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """True when `text` holds a card number wherever it was typed: 13..19 digits in a row, or grouped the way
    cards print them (4-4-4-4, 4-6-5, with spaces or dashes), passing the Luhn check. Such a request is refused
    (CARD_NUMBER_REJECTED) before anything else. Ids that merely contain digits and dashes (`ord-2026-0001`)
    are not card numbers."""
    if any(_luhn(match.group(0)) for match in _DIGIT_RUN.finditer(text)):
        return True
    for match in _GROUPED.finditer(text):
        groups = re.split(r"[ -]", match.group(0))
        if tuple(len(group) for group in groups) in _GROUPINGS and _luhn("".join(groups)):
            return True
    return False


# The model


class FailureReason(enum.Enum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CARD_EXPIRED = "card_expired"
    INCORRECT_CVC = "incorrect_cvc"
    FRAUD_SUSPECTED = "fraud_suspected"
    INVALID_PAYMENT_TOKEN = "invalid_payment_token"
    AMOUNT_LIMIT_EXCEEDED = "amount_limit_exceeded"
    PROCESSOR_DECLINED = "processor_declined"


#: The PSP's decline codes and what they mean here; any other code is PROCESSOR_DECLINED.
DECLINE_CODES: Mapping[str, FailureReason] = {
    "generic_decline": FailureReason.CARD_DECLINED,
    "card_declined": FailureReason.CARD_DECLINED,
    "insufficient_funds": FailureReason.INSUFFICIENT_FUNDS,
    "expired_card": FailureReason.CARD_EXPIRED,
    "incorrect_cvc": FailureReason.INCORRECT_CVC,
    "fraudulent": FailureReason.FRAUD_SUSPECTED,
    "invalid_token": FailureReason.INVALID_PAYMENT_TOKEN,
    "amount_too_large": FailureReason.AMOUNT_LIMIT_EXCEEDED,
}

_DECLINE_MESSAGES: Mapping[FailureReason, str] = {
    FailureReason.CARD_DECLINED: "The card was declined.",
    FailureReason.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    FailureReason.CARD_EXPIRED: "The card has expired.",
    FailureReason.INCORRECT_CVC: "The card's security code is incorrect.",
    FailureReason.FRAUD_SUSPECTED: "The payment was blocked.",
    FailureReason.INVALID_PAYMENT_TOKEN: "The payment details are no longer valid; enter them again.",
    FailureReason.AMOUNT_LIMIT_EXCEEDED: "The amount exceeds the card's limit.",
    FailureReason.PROCESSOR_DECLINED: "The payment could not be processed.",
}


def decline_message(reason: FailureReason) -> str:
    return _DECLINE_MESSAGES[reason]


class RefundStatus(enum.Enum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundReason(enum.Enum):
    CUSTOMER_REQUEST = "customer_request"
    ORDER_CANCELLED = "order_cancelled"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    OTHER = "other"


@dataclass(frozen=True)
class CardSummary:
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str


@dataclass(frozen=True)
class Refund:
    refund_id: str
    payment_id: str
    idempotency_key: str
    fingerprint: bytes
    amount: Money
    reason: RefundReason
    note: str
    status: RefundStatus
    psp_reference: str
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class HistoryEntry:
    from_status: PaymentStatus | None
    to_status: PaymentStatus
    cause: str
    at: datetime


@dataclass(frozen=True)
class PendingCall:
    """A capture or void recorded as pending: what its PSP call needs."""

    payment_id: str
    psp_reference: str
    operation: str
    amount_minor: int
    attempt: int

    @property
    def psp_key(self) -> str:
        """The PSP key of the pending capture or void: numbered, so one fenced at the PSP is never reused."""
        return psp_key(self.payment_id, f"{self.operation}:{self.attempt}")


@dataclass(frozen=True)
class Payment:
    payment_id: str
    checkout_id: str
    idempotency_key: str
    fingerprint: bytes
    status: PaymentStatus
    amount: Money
    captured_minor: int
    refunded_minor: int
    order_id: str
    psp_reference: str
    failure_reason: FailureReason | None
    psp_decline_code: str
    failure_message: str
    card: CardSummary | None
    pending_operation: str
    pending_order_id: str
    pending_amount_minor: int
    capture_key: str
    capture_fingerprint: bytes
    #: How many captures or voids were sent; numbers the pending one's PSP key.
    operation_attempt: int
    created_at: datetime
    updated_at: datetime
    authorized_at: datetime | None
    authorization_expires_at: datetime | None
    captured_at: datetime | None
    voided_at: datetime | None
    refunds: tuple[Refund, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    @property
    def refundable_minor(self) -> int:
        in_flight = sum(r.amount.amount_minor for r in self.refunds if r.status is RefundStatus.PROCESSING)
        return refundable_minor(
            captured_minor=self.captured_minor, refunded_minor=self.refunded_minor, in_flight_minor=in_flight
        )

    def psp_key(self, operation: str) -> str:
        return psp_key(self.payment_id, operation)

    @property
    def pending_call(self) -> PendingCall:
        return PendingCall(
            self.payment_id,
            self.psp_reference,
            self.pending_operation,
            self.pending_amount_minor,
            self.operation_attempt,
        )

    @property
    def pending_psp_key(self) -> str:
        return self.pending_call.psp_key


def psp_key(payment_id: str, operation: str) -> str:
    """The Idempotency-Key sent to the PSP: derived from the payment and the operation, never random."""
    return f"{payment_id}:{operation}"


def refund_psp_key(payment_id: str, refund_id: str) -> str:
    return f"{payment_id}:refund:{refund_id}"


def fingerprint(*parts: object) -> bytes:
    """SHA-256 of a request's meaningful fields (so a replay can be compared without keeping a token)."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()


def decline(payment: Payment) -> FailedPrecondition:
    """The refusal a FAILED payment answers with, the first time and on every replay."""
    reason = payment.failure_reason or FailureReason.PROCESSOR_DECLINED
    return FailedPrecondition(
        payment.failure_message or decline_message(reason),
        reason=reason.name,
        metadata={"paymentId": payment.payment_id},
    )
