"""The gateway's only SQL: checkouts, their lines, the saga's step log, idempotency keys, events."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from psycopg.types.json import Jsonb

from gateway.domain import (
    Checkout,
    CheckoutLine,
    CheckoutStatus,
    Failure,
    IdempotencyRecord,
    KeyState,
    Quote,
    Resolution,
    SagaStep,
    StepRecord,
    StepStatus,
)
from service_runtime.sql import QueryFile, Row, Statements


class GatewayStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    # Idempotency keys

    async def idempotency_key(self, user_id: str, rpc: str, key: str) -> IdempotencyRecord | None:
        """The key's record, locked (an expired one is forgotten in the same statement: None)."""
        row = await self._row("idempotency_key", {"user_id": user_id, "rpc": rpc, "key": key})
        if row is None:
            return None
        return IdempotencyRecord(
            fingerprint=bytes(row["fingerprint"]),
            state=KeyState(row["state"]),
            locked_until=row["locked_until"],
            checkout_id=row["checkout_id"] or "",
            response_code=row["response_code"],
            response=bytes(row["response"]) if row["response"] is not None else None,
        )

    async def insert_idempotency_key(
        self, user_id: str, rpc: str, key: str, fingerprint: bytes, checkout_id: str, hold_seconds: float
    ) -> None:
        await self._rows(
            "insert_idempotency_key",
            {
                "user_id": user_id,
                "rpc": rpc,
                "key": key,
                "fingerprint": fingerprint,
                "checkout_id": checkout_id,
                "hold_seconds": hold_seconds,
            },
        )

    async def complete_idempotency_key(self, user_id: str, rpc: str, key: str, code: int, response: bytes) -> None:
        await self._rows(
            "complete_idempotency_key",
            {"user_id": user_id, "rpc": rpc, "key": key, "code": code, "response": response},
        )

    async def delete_idempotency_key(self, user_id: str, rpc: str, key: str) -> None:
        await self._rows("delete_idempotency_key", {"user_id": user_id, "rpc": rpc, "key": key})

    # Checkouts

    async def insert_checkout(self, checkout: Checkout, tax_rate_basis_points: int) -> Checkout:
        """Stores a new checkout and its lines (one statement); returns it as stored (read back by the INSERT)."""
        q, lines = checkout.quote, checkout.lines
        row = await self._one(
            "insert_checkout",
            {
                "checkout_id": checkout.checkout_id,
                "user_id": checkout.user_id,
                "cart_id": checkout.cart_id,
                "shipping_address": Jsonb(dict(checkout.shipping_address)),
                "shipping_method": checkout.shipping_method,
                "contact_email": checkout.contact_email,
                "currency_code": q.currency_code,
                "subtotal_minor": q.subtotal_minor,
                "discount_minor": q.discount_minor,
                "shipping_minor": q.shipping_minor,
                "tax_minor": q.tax_minor,
                "total_minor": q.total_minor,
                "tax_rate_basis_points": tax_rate_basis_points,
                "tax_rate_ppm": q.tax_rate_ppm,
                "shipping_taxed": q.shipping_taxed,
                "free_shipping_applied": q.free_shipping_applied,
                "min_business_days": q.min_business_days,
                "max_business_days": q.max_business_days,
                "earliest_delivery_date": q.earliest_delivery_date,
                "latest_delivery_date": q.latest_delivery_date,
                "reservation_expires_at": checkout.reservation_expires_at,
                "cart_etag": checkout.cart_etag,
                "shipping_options": checkout.shipping_options,
                "lines": json.dumps(
                    [
                        {
                            "sku": line.sku,
                            "position": position,
                            "product_name": line.product_name,
                            "quantity": line.quantity,
                            "unit_price_minor": line.unit_price_minor,
                            "line_total_minor": line.line_total_minor,
                        }
                        for position, line in enumerate(lines)
                    ]
                ),
            },
        )
        return _checkout(row, lines)

    async def checkout(self, checkout_id: str, *, lock: bool = False) -> Checkout | None:
        """A checkout with its lines, in one statement."""
        row = await self._row("checkout_for_update" if lock else "checkout", {"checkout_id": checkout_id})
        if row is None:
            return None
        return _checkout(row, _lines(row["lines"]))

    async def open_checkouts_of_cart(self, cart_id: str) -> list[tuple[str, CheckoutStatus]]:
        rows = await self._rows("open_checkouts_of_cart", {"cart_id": cart_id})
        return [(row["checkout_id"], CheckoutStatus(row["status"])) for row in rows]

    async def start_attempt(
        self,
        checkout_id: str,
        payment_token: str,
        owner: str,
        lease_seconds: float,
        traceparent: str = "",
        *,
        lines: tuple[CheckoutLine, ...] = (),
        intents: Sequence[Intent] = (),
    ) -> Checkout:
        """QUOTED → PLACING, with `intents` (the new attempt's first steps, keyed for it) in the same
        statement; the checkout as the new attempt starts it (with `lines`, which never change once stored:
        the caller has read them)."""
        row = await self._one(
            "start_attempt",
            {
                "checkout_id": checkout_id,
                "payment_token": payment_token,
                "owner": owner,
                "lease_seconds": lease_seconds,
                "traceparent": traceparent,
                "intents": _intents(intents),
            },
        )
        return _checkout(row, lines)

    async def traceparent(self, checkout_id: str) -> str:
        row = await self._row("traceparent", {"checkout_id": checkout_id})
        return str(row["traceparent"]) if row is not None else ""

    async def cancel_checkout(self, checkout_id: str) -> None:
        await self._rows("cancel_checkout", {"checkout_id": checkout_id})

    async def record_failure(self, checkout_id: str, failure: Failure) -> None:
        await self._rows(
            "record_failure",
            {
                "checkout_id": checkout_id,
                "reason": failure.reason,
                "message": failure.message[:500],
                "step": failure.step.value,
                "code": failure.code,
                "attempt": failure.attempt,
                "payment_id": failure.payment_id,
            },
        )

    async def update_quote(self, checkout: Checkout, tax_rate_basis_points: int) -> bool:
        q = checkout.quote
        rows = await self._rows(
            "update_quote",
            {
                "checkout_id": checkout.checkout_id,
                "shipping_address": Jsonb(dict(checkout.shipping_address)),
                "shipping_method": checkout.shipping_method,
                "contact_email": checkout.contact_email,
                "shipping_minor": q.shipping_minor,
                "tax_minor": q.tax_minor,
                "total_minor": q.total_minor,
                "tax_rate_ppm": q.tax_rate_ppm,
                "tax_rate_basis_points": tax_rate_basis_points,
                "shipping_taxed": q.shipping_taxed,
                "free_shipping_applied": q.free_shipping_applied,
                "min_business_days": q.min_business_days,
                "max_business_days": q.max_business_days,
                "earliest_delivery_date": q.earliest_delivery_date,
                "latest_delivery_date": q.latest_delivery_date,
                "shipping_options": checkout.shipping_options,
            },
        )
        return bool(rows)

    # The step log

    async def saga_log(
        self,
        checkout_id: str,
        attempt: int,
        done: Sequence[Outcome],
        current_step: SagaStep | None,
        intents: Sequence[Intent],
    ) -> dict[SagaStep, int]:
        """The step log's write between calls, one statement: `done` steps' outcomes, the checkout's progress
        (on `current_step`, with the ids the outcomes produced) and `intents`. Returns, per intended step,
        the calls counted against its retry budget."""
        rows = await self._rows(
            "saga_log",
            {
                **_outcomes(checkout_id, attempt, done),
                "current_step": current_step.value if current_step else None,
                "intents": _intents(intents),
            },
        )
        return {SagaStep(row["step"]): int(row["attempts"]) for row in rows}

    async def saga_end(
        self,
        checkout_id: str,
        attempt: int,
        done: Sequence[Outcome],
        status: CheckoutStatus,
        current_step: SagaStep | None,
        lines: tuple[CheckoutLine, ...],
        answer_key: tuple[str, str, str] | None = None,
    ) -> Checkout:
        """A saga's end, one statement: `done` steps' outcomes and the checkout's next state (as
        end_checkout); when it COMPLETED, status 0 on the idempotency key `answer_key` (user, RPC, key) if
        its request has not recorded its answer yet. Returns the checkout (with `lines`, which never change)."""
        key_user_id, key_rpc, key = answer_key or (None, None, None)
        row = await self._one(
            "saga_end",
            {
                **_outcomes(checkout_id, attempt, done),
                "status": status.value,
                "current_step": current_step.value if current_step else None,
                "key_user_id": key_user_id,
                "key_rpc": key_rpc,
                "key": key,
            },
        )
        return _checkout(row, lines)

    async def step_error(
        self,
        checkout_id: str,
        attempt: int,
        step: SagaStep,
        *,
        final: bool,
        reason: str,
        code: str,
        payment_id: str | None,
    ) -> None:
        await self._rows(
            "step_error",
            {
                "checkout_id": checkout_id,
                "attempt": attempt,
                "step": step.value,
                "status": StepStatus.FAILED.value if final else StepStatus.RUNNING.value,
                "reason": reason[:64],
                "code": code,
                "payment_id": payment_id,
            },
        )

    async def step_compensation(self, checkout_id: str, attempt: int, step: SagaStep, status: StepStatus) -> None:
        await self._rows(
            "step_compensation",
            {"checkout_id": checkout_id, "attempt": attempt, "step": step.value, "status": status.value},
        )

    async def insert_reserved_step(self, checkout_id: str, step_key: str, compensation: str) -> StepRecord:
        return _step(
            await self._one(
                "insert_reserved_step", {"checkout_id": checkout_id, "step_key": step_key, "compensation": compensation}
            )
        )

    async def steps(self, checkout_id: str) -> list[StepRecord]:
        return [_step(row) for row in await self._rows("steps", {"checkout_id": checkout_id})]

    # Leases and background work

    async def renew_lease(self, checkout_id: str, owner: str, lease_seconds: float) -> bool:
        row = await self._row(
            "renew_lease", {"checkout_id": checkout_id, "owner": owner, "lease_seconds": lease_seconds}
        )
        return row is not None

    async def claim_lapsed(self, owner: str, lease_seconds: float, limit: int) -> list[str]:
        rows = await self._rows("claim_lapsed", {"owner": owner, "lease_seconds": lease_seconds, "limit": limit})
        return [row["checkout_id"] for row in rows]

    async def expire_lapsed_quotes(self, limit: int) -> list[tuple[str, str, str]]:
        rows = await self._rows("expire_lapsed_quotes", {"limit": limit})
        return [(row["checkout_id"], row["user_id"], row["contact_email"]) for row in rows]

    async def insert_event(self, event_id: str, checkout_id: str, event_type: str, payload: Mapping[str, Any]) -> None:
        await self._rows(
            "insert_event",
            {"event_id": event_id, "checkout_id": checkout_id, "event_type": event_type, "payload": Jsonb(payload)},
        )

    async def claim_unpublished_events(self, limit: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        rows = await self._rows("claim_unpublished_events", {"limit": limit})
        return [(row["event_id"], row["checkout_id"], row["event_type"], dict(row["payload"])) for row in rows]

    async def mark_events_published(self, event_ids: list[str]) -> None:
        await self._rows("mark_events_published", {"event_ids": event_ids})

    async def unfinished_releases(self, after_seconds: float, limit: int) -> list[str]:
        rows = await self._rows("unfinished_releases", {"after_seconds": after_seconds, "limit": limit})
        return [row["checkout_id"] for row in rows]

    async def list_checkouts(
        self, status: CheckoutStatus, older_than_seconds: float, after: str | None, limit: int
    ) -> list[Checkout]:
        rows = await self._rows(
            "list_checkouts",
            {"status": status.value, "older_than_seconds": older_than_seconds, "after": after, "limit": limit},
        )
        return [_checkout(row, _lines(row["lines"])) for row in rows]

    # Operators

    async def resume_failed(self, checkout_id: str, owner: str, lease_seconds: float) -> bool:
        await self._rows("reset_failed_steps", {"checkout_id": checkout_id})
        rows = await self._rows(
            "resume_failed", {"checkout_id": checkout_id, "owner": owner, "lease_seconds": lease_seconds}
        )
        return bool(rows)

    async def resolution(self, checkout_id: str) -> Resolution | None:
        row = await self._row("resolution", {"checkout_id": checkout_id})
        if row is None:
            return None
        return Resolution(row["resolution_action"], row["resolution_reason"], row["resolved_by"], row["resolved_at"])

    async def record_resolution(self, checkout_id: str, action: str, reason: str, resolved_by: str) -> None:
        await self._rows(
            "record_resolution",
            {"checkout_id": checkout_id, "action": action, "reason": reason, "resolved_by": resolved_by},
        )


@dataclass(frozen=True)
class Outcome:
    """A step that succeeded, as the step log records it."""

    step: SagaStep
    result: Mapping[str, str]


@dataclass(frozen=True)
class Intent:
    """A step about to be called: its key and the undo registered for it."""

    step: SagaStep
    step_key: str
    compensation: str | None


def _outcomes(checkout_id: str, attempt: int, done: Sequence[Outcome]) -> dict[str, Any]:
    """The parameters of `done` for saga_log and saga_end: per step, and what they produced for the checkout
    (the payment and card from the authorization, the order, the reservation's new expiry)."""
    produced: dict[str, Any] = {"payment_id": None, "order_id": None, "card_brand": None, "card_last4": None}
    produced["expires_at"] = None
    for outcome in done:
        result = outcome.result
        if outcome.step is SagaStep.AUTHORIZE_PAYMENT:
            produced["payment_id"] = result.get("paymentId")
            produced["card_brand"] = result.get("cardBrand")
            produced["card_last4"] = result.get("cardLast4")
        elif outcome.step is SagaStep.CREATE_ORDER:
            produced["order_id"] = result.get("orderId")
        elif outcome.step is SagaStep.EXTEND_RESERVATION and result.get("expireTime"):
            produced["expires_at"] = _instant(result["expireTime"])
    return {
        "checkout_id": checkout_id,
        "attempt": attempt,
        "done": json.dumps(
            [
                {
                    "step": outcome.step.value,
                    "result": dict(outcome.result),
                    "payment_id": outcome.result.get("paymentId")
                    if outcome.step is SagaStep.AUTHORIZE_PAYMENT
                    else None,
                }
                for outcome in done
            ]
        ),
        **produced,
    }


def _intents(intents: Sequence[Intent]) -> str:
    """Intents as the one JSON parameter the statements read them from (one parameter, not an array per field:
    psycopg adapts a JSON string several times faster than lists)."""
    return json.dumps(
        [
            {"step": intent.step.value, "step_key": intent.step_key, "compensation": intent.compensation}
            for intent in intents
        ]
    )


def _instant(rfc3339: str) -> datetime:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(rfc3339)
    return stamp.ToDatetime(tzinfo=UTC)


def _lines(aggregated: Sequence[Mapping[str, Any]]) -> tuple[CheckoutLine, ...]:
    """A checkout's lines from the JSON array the checkout statements aggregate them into."""
    return tuple(
        CheckoutLine(line["sku"], line["product_name"], int(line["quantity"]), int(line["unit_price_minor"]))
        for line in aggregated
    )


def _checkout(row: Row, lines: tuple[CheckoutLine, ...]) -> Checkout:
    failure = None
    if row["last_failure_reason"] is not None:
        failure = Failure(
            reason=row["last_failure_reason"],
            message=row["last_failure_message"],
            step=SagaStep(row["last_failure_step"]),
            at=row["last_failure_at"],
            code=row["last_failure_code"],
            attempt=row["last_failure_attempt"],
            payment_id=row["last_failure_payment"],
        )
    address = row["shipping_address"]
    return Checkout(
        checkout_id=row["checkout_id"],
        user_id=row["user_id"],
        cart_id=row["cart_id"],
        status=CheckoutStatus(row["status"]),
        shipping_address=json.loads(address) if isinstance(address, str) else dict(address),
        shipping_method=row["shipping_method"],
        contact_email=row["contact_email"],
        quote=Quote(
            currency_code=row["currency_code"],
            subtotal_minor=row["subtotal_minor"],
            discount_minor=row["discount_minor"],
            shipping_minor=row["shipping_minor"],
            tax_minor=row["tax_minor"],
            tax_rate_ppm=row["tax_rate_ppm"],
            shipping_taxed=row["shipping_taxed"],
            free_shipping_applied=row["free_shipping_applied"],
            min_business_days=row["min_business_days"],
            max_business_days=row["max_business_days"],
            earliest_delivery_date=row["earliest_delivery_date"],
            latest_delivery_date=row["latest_delivery_date"],
        ),
        lines=lines,
        reservation_expires_at=row["reservation_expires_at"],
        attempt=row["place_attempt"],
        current_step=SagaStep(row["current_step"]) if row["current_step"] else None,
        order_id=row["order_id"] or "",
        payment_id=row["payment_id"] or "",
        payment_token=row["payment_token"] or "",
        cart_etag=row["cart_etag"],
        card_brand=row["card_brand"],
        card_last4=row["card_last4"],
        shipping_options=bytes(row["shipping_options"]),
        last_failure=failure,
        lease_owner=row["lease_owner"] or "",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
    )


def _step(row: Row) -> StepRecord:
    return StepRecord(
        checkout_id=row["checkout_id"],
        attempt=row["attempt"],
        step=SagaStep(row["step"]),
        step_key=row["step_key"],
        status=StepStatus(row["status"]),
        compensation=row["compensation"],
        attempts=row["attempts"],
        last_error_reason=row["last_error_reason"],
        last_error_code=row["last_error_code"],
        payment_id=row["payment_id"],
        result={str(k): str(v) for k, v in dict(row["result"]).items()},
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )
