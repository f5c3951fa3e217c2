"""One command per use case, and its validation (one INVALID_ARGUMENT naming every bad field)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from payment_svc.domain import RefundReason
from service_runtime.errors import Violations
from service_runtime.validation import CURRENCY_PATTERN, check_id, check_text
from service_runtime.values import Money

MAX_AMOUNT_MINOR = 100_000_000_000
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _check_key(v: Violations, value: str, field: str) -> None:
    if not value:
        v.add(field, "is required")
    elif not _KEY.fullmatch(value):
        v.add(field, "must be 1..128 characters of [A-Za-z0-9._:-]")


def _check_amount(v: Violations, money: Money | None, field: str, *, required: bool) -> None:
    if money is None:
        if required:
            v.add(field, "is required")
        return
    if not CURRENCY_PATTERN.fullmatch(money.currency_code):
        v.add(f"{field}.currency_code", "must be a 3-letter ISO 4217 code")
    if not 1 <= money.amount_minor <= MAX_AMOUNT_MINOR:
        v.add(f"{field}.amount_minor", f"must be between 1 and {MAX_AMOUNT_MINOR}")


@dataclass(frozen=True)
class AuthorizePayment:
    checkout_id: str
    amount: Money | None
    payment_token: str
    idempotency_key: str

    def validate(self) -> Money:
        v = Violations()
        check_id(v, self.checkout_id, "checkout_id")
        _check_amount(v, self.amount, "amount", required=True)
        if not self.payment_token.strip():
            v.add("payment_token", "is required")
        elif len(self.payment_token) > 256:
            v.add("payment_token", "must be at most 256 characters")
        _check_key(v, self.idempotency_key, "idempotency_key")
        v.raise_if_any()
        assert self.amount is not None
        return self.amount


@dataclass(frozen=True)
class CapturePayment:
    payment_id: str
    order_id: str
    amount: Money | None
    idempotency_key: str

    def validate(self) -> None:
        v = Violations()
        check_id(v, self.payment_id, "payment_id")
        check_id(v, self.order_id, "order_id")
        _check_amount(v, self.amount, "amount", required=False)
        _check_key(v, self.idempotency_key, "idempotency_key")
        v.raise_if_any()


@dataclass(frozen=True)
class VoidPayment:
    payment_id: str
    reason: str
    checkout_id: str = ""
    authorization_idempotency_key: str = ""

    def validate(self) -> None:
        v = Violations()
        check_text(v, self.reason, "reason", maximum=200, required=True)
        _check_payment_name(v, self.payment_id, self.checkout_id, self.authorization_idempotency_key)
        v.raise_if_any()


@dataclass(frozen=True)
class RefundPayment:
    payment_id: str
    amount: Money | None
    reason: RefundReason | None
    note: str
    idempotency_key: str

    def validate(self) -> None:
        v = Violations()
        check_id(v, self.payment_id, "payment_id")
        _check_amount(v, self.amount, "amount", required=False)
        if self.reason is None:
            v.add("reason", "is required (not REFUND_REASON_UNSPECIFIED)")
        check_text(v, self.note, "note", maximum=500, required=False)
        _check_key(v, self.idempotency_key, "idempotency_key")
        v.raise_if_any()


def _check_payment_name(v: Violations, payment_id: str, checkout_id: str, authorization_key: str) -> None:
    """Exactly one of payment_id, or checkout_id with authorization_idempotency_key."""
    if payment_id:
        check_id(v, payment_id, "payment_id")
        if checkout_id or authorization_key:
            v.add("checkout_id", "must be empty when payment_id is given")
        return
    if not checkout_id and not authorization_key:
        v.add("payment_id", "is required (or checkout_id with authorization_idempotency_key)")
        return
    check_id(v, checkout_id, "checkout_id")
    _check_key(v, authorization_key, "authorization_idempotency_key")


@dataclass(frozen=True)
class PaymentName:
    """GetPayment's name of a payment: its id, or the checkout and authorization key."""

    payment_id: str
    checkout_id: str = ""
    authorization_idempotency_key: str = ""

    def validate(self) -> None:
        v = Violations()
        _check_payment_name(v, self.payment_id, self.checkout_id, self.authorization_idempotency_key)
        v.raise_if_any()
