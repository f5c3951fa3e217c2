"""The only module of the payment service that runs SQL: one method per statement of queries.sql."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from payment_svc.domain import (
    CardSummary,
    FailureReason,
    HistoryEntry,
    Payment,
    PaymentStatus,
    PendingCall,
    Refund,
    RefundReason,
    RefundStatus,
)
from service_runtime.sql import QueryFile, Row, Statements
from service_runtime.values import Money


def _payment(row: Row) -> Payment:
    card = (
        CardSummary(
            row["card_brand"], row["card_last4"], row["card_exp_month"], row["card_exp_year"], row["card_funding"]
        )
        if row["method_type"] == "card"
        else None
    )
    return Payment(
        payment_id=row["payment_id"],
        checkout_id=row["checkout_id"],
        idempotency_key=row["idempotency_key"],
        fingerprint=bytes(row["request_fingerprint"]),
        status=PaymentStatus(row["status"]),
        amount=Money(row["currency_code"], row["amount_minor"]),
        captured_minor=row["captured_minor"],
        refunded_minor=row["refunded_minor"],
        order_id=row["order_id"] or "",
        psp_reference=row["psp_reference"] or "",
        failure_reason=FailureReason(row["failure_reason"]) if row["failure_reason"] else None,
        psp_decline_code=row["psp_decline_code"],
        failure_message=row["failure_message"],
        card=card,
        pending_operation=row["pending_operation"] or "",
        pending_order_id=row["pending_order_id"] or "",
        pending_amount_minor=row["pending_amount_minor"] or 0,
        capture_key=row["capture_idempotency_key"] or "",
        capture_fingerprint=bytes(row["capture_fingerprint"] or b""),
        operation_attempt=row["operation_attempt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        authorized_at=row["authorized_at"],
        authorization_expires_at=row["authorization_expires_at"],
        captured_at=row["captured_at"],
        voided_at=row["voided_at"],
    )


def _refund(row: Row, currency_code: str) -> Refund:
    return Refund(
        refund_id=row["refund_id"],
        payment_id=row["payment_id"],
        idempotency_key=row["idempotency_key"],
        fingerprint=bytes(row["request_fingerprint"]),
        amount=Money(currency_code, row["amount_minor"]),
        reason=RefundReason(row["reason"]),
        note=row["note"],
        status=RefundStatus(row["status"]),
        psp_reference=row["psp_reference"] or "",
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


def _with_details(payment: Payment, row: Row) -> Payment:
    """The payment with the `refunds` and `history` JSON columns of `row` (details_of, mark_authorized, …)."""
    refunds = [
        {
            **item,
            "request_fingerprint": bytes.fromhex(item["request_fingerprint"]),
            "created_at": datetime.fromisoformat(item["created_at"]),
            "completed_at": datetime.fromisoformat(item["completed_at"]) if item["completed_at"] else None,
        }
        for item in row["refunds"]
    ]
    return replace(
        payment,
        refunds=tuple(_refund(item, payment.amount.currency_code) for item in refunds),
        history=tuple(
            HistoryEntry(
                PaymentStatus(item["from_status"]) if item["from_status"] else None,
                PaymentStatus(item["to_status"]),
                item["cause"],
                datetime.fromisoformat(item["created_at"]),
            )
            for item in row["history"]
        ),
    )


class PaymentStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    async def payment(self, payment_id: str, *, lock: bool = False) -> Payment | None:
        row = await self._row("lock_payment" if lock else "payment", {"payment_id": payment_id})
        return _payment(row) if row else None

    async def payment_by_key(self, checkout_id: str, idempotency_key: str) -> Payment | None:
        row = await self._row("payment_by_key", {"checkout_id": checkout_id, "idempotency_key": idempotency_key})
        return _payment(row) if row else None

    async def lock_checkout(self, checkout_id: str) -> None:
        await self._rows("lock_checkout", {"checkout_id": checkout_id})

    async def cancel(self, checkout_id: str, idempotency_key: str, reason: str) -> bool:
        """Records the cancellation; False when it was already recorded."""
        row = await self._row(
            "insert_cancellation", {"checkout_id": checkout_id, "idempotency_key": idempotency_key, "reason": reason}
        )
        return row is not None

    async def begin_authorization(
        self, payment_id: str, checkout_id: str, idempotency_key: str, fingerprint: bytes, amount: Money, grace: float
    ) -> tuple[str, str | None]:
        """(outcome, payment id): existing, cancelled, live or created (see migration 0003)."""
        row = await self._one(
            "begin_authorization",
            {
                "payment_id": payment_id,
                "checkout_id": checkout_id,
                "idempotency_key": idempotency_key,
                "fingerprint": fingerprint,
                "currency_code": amount.currency_code,
                "amount_minor": amount.amount_minor,
                "grace_seconds": grace,
            },
        )
        return str(row["outcome"]), row["payment_id"]

    async def record(
        self,
        payment_id: str,
        from_status: PaymentStatus | None,
        to_status: PaymentStatus,
        cause: str,
        psp_response: dict[str, Any] | None = None,
    ) -> None:
        await self._rows(
            "insert_event",
            {
                "payment_id": payment_id,
                "from_status": from_status.value if from_status else None,
                "to_status": to_status.value,
                "cause": cause[:200],
                "psp_response": Jsonb(psp_response) if psp_response is not None else None,
            },
        )

    async def mark_authorized(
        self,
        payment_id: str,
        psp_reference: str,
        expires_at: datetime,
        card: CardSummary,
        cause: str,
        psp_response: dict[str, Any],
    ) -> Payment | None:
        row = await self._row(
            "mark_authorized",
            {
                "payment_id": payment_id,
                "psp_reference": psp_reference,
                "expires_at": expires_at,
                **_card(card),
                **_event(cause, psp_response),
            },
        )
        return _with_details(_payment(row), row) if row else None

    async def mark_failed(
        self,
        payment_id: str,
        reason: FailureReason,
        decline_code: str,
        message: str,
        card: CardSummary | None,
        cause: str,
        psp_response: dict[str, Any],
    ) -> Payment | None:
        row = await self._row(
            "mark_failed",
            {
                "payment_id": payment_id,
                "failure_reason": reason.value,
                "decline_code": decline_code[:64],
                "message": message[:500],
                "method_type": "card" if card else None,
                **_card(card),
                **_event(cause, psp_response),
            },
        )
        return _payment(row) if row else None

    async def begin_pending(
        self,
        payment_id: str,
        operation: str,
        *,
        grace: float,
        order_id: str | None = None,
        amount_minor: int | None = None,
        capture_key: str | None = None,
        capture_fingerprint: bytes | None = None,
    ) -> Payment:
        row = await self._one(
            "begin_pending",
            {
                "payment_id": payment_id,
                "operation": operation,
                "order_id": order_id,
                "amount_minor": amount_minor,
                "capture_key": capture_key,
                "capture_fingerprint": capture_fingerprint,
                "grace_seconds": grace,
            },
        )
        return _payment(row)

    async def begin_capture(
        self,
        payment_id: str,
        *,
        order_id: str,
        amount: Money | None,
        capture_key: str,
        capture_fingerprint: bytes,
        grace: float,
    ) -> PendingCall | None:
        row = await self._row(
            "begin_capture",
            {
                "payment_id": payment_id,
                "order_id": order_id,
                "amount_minor": amount.amount_minor if amount else None,
                "currency_code": amount.currency_code if amount else None,
                "capture_key": capture_key,
                "capture_fingerprint": capture_fingerprint,
                "grace_seconds": grace,
            },
        )
        if row is None:
            return None
        return PendingCall(
            row["payment_id"],
            row["psp_reference"],
            row["pending_operation"],
            row["pending_amount_minor"],
            row["operation_attempt"],
        )

    async def clear_pending(self, payment_id: str) -> Payment:
        return _payment(await self._one("clear_pending", {"payment_id": payment_id}))

    async def mark_captured(self, payment_id: str, cause: str, psp_response: dict[str, Any]) -> Payment | None:
        row = await self._row("mark_captured", {"payment_id": payment_id, **_event(cause, psp_response)})
        return _with_details(_payment(row), row) if row else None

    async def mark_voided(self, payment_id: str, cause: str, psp_response: dict[str, Any]) -> Payment | None:
        row = await self._row("mark_voided", {"payment_id": payment_id, **_event(cause, psp_response)})
        return _payment(row) if row else None

    async def mark_expired(self, payment_id: str) -> Payment:
        return _payment(await self._one("mark_expired", {"payment_id": payment_id}))

    async def add_refunded(self, payment_id: str, amount_minor: int, status: PaymentStatus) -> Payment:
        row = await self._one(
            "add_refunded", {"payment_id": payment_id, "amount_minor": amount_minor, "status": status.value}
        )
        return _payment(row)

    async def refund_by_key(self, payment: Payment, idempotency_key: str) -> Refund | None:
        row = await self._row("refund_by_key", {"payment_id": payment.payment_id, "idempotency_key": idempotency_key})
        return _refund(row, payment.amount.currency_code) if row else None

    async def lock_refund(self, refund_id: str, currency_code: str) -> Refund | None:
        row = await self._row("lock_refund", {"refund_id": refund_id})
        return _refund(row, currency_code) if row else None

    async def refunds_in_flight(self, payment_id: str) -> int:
        row = await self._one("refunds_in_flight", {"payment_id": payment_id})
        return int(row["total"])

    async def insert_refund(
        self,
        refund_id: str,
        payment: Payment,
        idempotency_key: str,
        fingerprint: bytes,
        amount_minor: int,
        reason: RefundReason,
        note: str,
        grace: float,
    ) -> Refund:
        row = await self._one(
            "insert_refund",
            {
                "refund_id": refund_id,
                "payment_id": payment.payment_id,
                "idempotency_key": idempotency_key,
                "fingerprint": fingerprint,
                "amount_minor": amount_minor,
                "reason": reason.value,
                "note": note,
                "grace_seconds": grace,
            },
        )
        return _refund(row, payment.amount.currency_code)

    async def settle_refund(
        self, refund_id: str, status: RefundStatus, psp_reference: str | None, currency_code: str
    ) -> Refund:
        row = await self._one(
            "settle_refund", {"refund_id": refund_id, "status": status.value, "psp_reference": psp_reference}
        )
        return _refund(row, currency_code)

    async def with_details(self, payment: Payment) -> Payment:
        """The payment with its refunds and history."""
        return _with_details(payment, await self._one("details_of", {"payment_id": payment.payment_id}))

    async def list_payments(self, checkout_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Payment]:
        rows = await self._rows(
            "list_payments",
            {
                "checkout_id": checkout_id,
                "after_created": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit,
            },
        )
        return [_payment(row) for row in rows]

    async def claim_unsettled_payments(self, lease: float, limit: int) -> list[Payment]:
        rows = await self._rows("claim_unsettled_payments", {"lease_seconds": lease, "limit": limit})
        return [_payment(row) for row in rows]

    async def claim_unsettled_refunds(self, lease: float, limit: int) -> list[tuple[str, str]]:
        """(payment_id, refund_id) of claimed refunds."""
        rows = await self._rows("claim_unsettled_refunds", {"lease_seconds": lease, "limit": limit})
        return [(row["payment_id"], row["refund_id"]) for row in rows]

    async def lapsed_authorizations(self, limit: int) -> list[Payment]:
        return [_payment(row) for row in await self._rows("lapsed_authorizations", {"limit": limit})]


def _event(cause: str, psp_response: dict[str, Any]) -> dict[str, Any]:
    return {"cause": cause[:200], "psp_response": Jsonb(psp_response)}


def _card(card: CardSummary | None) -> dict[str, Any]:
    if card is None:
        return {"brand": "", "last4": "", "exp_month": 0, "exp_year": 0, "funding": ""}
    return {
        "brand": card.brand[:32],
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "funding": card.funding[:16],
    }
