"""The checkout saga: a short, deterministic script (`CheckoutSaga.run`) over a durable step log
(`SagaLog`), in the manner of Temporal's saga samples.

The script has no clock, randomness or network of its own: every call is an activity
(`gateway.activities`) made through `SagaLog.step`, which writes the step's intent (and its undo)
before the call and its outcome after, retries transport failures with the same step key, and on
recovery replays a finished step's recorded result instead of calling again.

A step's outcome is written in the same transaction as the next step's intent (or the saga's end, or
its compensation's first write): nothing is called between the two, so this is one commit where there
were two, and a crash in between leaves exactly what a crash right after the call always left (the
step RUNNING, called again with its key on recovery).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from opentelemetry import trace

from gateway import domain
from gateway.activities import (
    Activities,
    AuthorizePayment,
    CapturePayment,
    ConfirmOrder,
    ConfirmReservation,
    ConvertCart,
    CreateOrder,
    ExtendReservation,
    ReleaseReservation,
    VoidPayment,
)
from gateway.domain import Checkout, SagaStep, StepRecord, StepStatus
from gateway.repository import GatewayStatements
from service_runtime import metrics, telemetry
from service_runtime.downstream import DownstreamError
from service_runtime.sql import UnitOfWork
from service_runtime.values import Money

log = logging.getLogger(__name__)

In = TypeVar("In")
Action = Callable[[Any], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True)
class SagaPolicy:
    #: Calls of one step (across retries and recoveries) before the saga gives up on it.
    step_max_attempts: int
    #: Calls of one compensation before the saga gives up and ends FAILED for an operator.
    compensation_max_attempts: int
    backoff_initial_seconds: float
    backoff_max_seconds: float
    #: GATEWAY_FAILPOINT: "before:<step>" or "after:<step>" ends the process there (crash tests only).
    failpoint: str = ""

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** max(0, attempt - 1)))


class StepStopped(Exception):
    """A step that cannot be done: refused (a business answer) or given up on after its retries."""

    def __init__(self, step: SagaStep, error: DownstreamError | None, *, refused: bool, payment_id: str = "") -> None:
        super().__init__(f"{step.value}: {error.reason if error else 'refused earlier'}")
        self.step = step
        self.refused = refused
        self.code = error.code.name if error else "FAILED_PRECONDITION"
        self.reason = (error.reason if error else "") or self.code
        self.message = error.message if error else ""
        self.payment_id = payment_id


class CompensationFailed(Exception):
    def __init__(self, step: SagaStep, reason: str) -> None:
        super().__init__(f"could not undo {step.value}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True)
class Placed:
    order_id: str
    payment_id: str


@dataclass(frozen=True)
class _Registered:
    step: SagaStep
    attempt: int
    action: Action
    argument: object


class SagaLog:
    """One run of one attempt of a checkout's saga over its step log (see the module docstring)."""

    def __init__(
        self,
        work: UnitOfWork[GatewayStatements],
        checkout: Checkout,
        records: list[StepRecord],
        policy: SagaPolicy,
    ) -> None:
        self._work = work
        self.checkout_id = checkout.checkout_id
        self.attempt = checkout.attempt
        self._records = {(record.attempt, record.step): record for record in records}
        self._policy = policy
        self._compensations: list[_Registered] = []
        #: The last step's outcome, not written yet: it goes in the next transaction (module docstring).
        self._pending: Callable[[GatewayStatements], Awaitable[None]] | None = None
        self._pending_next: SagaStep | None = None

    async def write_pending(self, tx: GatewayStatements) -> None:
        """Writes the outcome waiting for the next transaction, in `tx` (the saga's end calls it)."""
        if self._pending is not None:
            await self._pending(tx)

    def _written(self) -> None:
        """The transaction holding the pending outcome committed."""
        self._pending = None
        self._pending_next = None

    async def flush(self) -> None:
        """The pending outcome in a transaction of its own (before reading the step log back)."""
        if self._pending is not None:
            await self._work.run(self.write_pending)
            self._written()

    def key(self, step: SagaStep) -> str:
        return domain.step_key(self.checkout_id, self.attempt, step)

    def register(self, step: SagaStep, action: Action, argument: object, *, attempt: int) -> None:
        """Registers the undo of `step` (of `attempt`) without running the step (it ran earlier)."""
        self._compensations.append(_Registered(step, attempt, action, argument))

    async def step(
        self,
        step: SagaStep,
        action: Callable[[In], Awaitable[Mapping[str, str]]],
        argument: In,
        *,
        compensation: tuple[Action, object] | None = None,
    ) -> Mapping[str, str]:
        """Runs `action(argument)` as `step` of this attempt, exactly as the module docstring says; traced
        as one span (checkout, step, attempt, calls made, outcome; ERROR when the step stops the saga)."""
        with telemetry.span(
            f"saga step {step.value}",
            attributes={
                "shop.checkout.id": self.checkout_id,
                "shop.saga.step": step.value,
                "shop.saga.attempt": self.attempt,
            },
        ) as span:
            try:
                return await self._step(step, action, argument, compensation, span)
            except StepStopped as stopped:
                span.set_attribute("shop.saga.outcome", "refused" if stopped.refused else "gave_up")
                telemetry.fail(span, stopped.reason)
                raise

    async def _step(
        self,
        step: SagaStep,
        action: Callable[[In], Awaitable[Mapping[str, str]]],
        argument: In,
        compensation: tuple[Action, object] | None,
        span: trace.Span,
    ) -> Mapping[str, str]:
        compensation_path = domain.definition(step).compensation if compensation else None
        if compensation is not None:
            self._compensations.append(_Registered(step, self.attempt, compensation[0], compensation[1]))
        record = self._records.get((self.attempt, step))
        if record is not None and record.status is StepStatus.SUCCEEDED:
            span.set_attribute("shop.saga.outcome", "replayed")
            return record.result
        if record is not None and record.status is StepStatus.FAILED:
            error = DownstreamError(
                code=grpc.StatusCode[record.last_error_code or "FAILED_PRECONDITION"],
                message="",
                reason=record.last_error_reason,
            )
            raise StepStopped(step, error, refused=True, payment_id=record.payment_id)
        key = self.key(step)
        tries = 0
        while True:
            tries += 1

            async def intent(tx: GatewayStatements) -> int:
                await self.write_pending(tx)
                if self._pending_next is not step:  # the pending outcome already moved the checkout to `step`
                    await tx.record_progress(self.checkout_id, step)
                return await tx.step_intent(self.checkout_id, self.attempt, step, key, compensation_path)

            attempts = await self._work.run(intent)
            self._written()
            self._failpoint("before", step)
            span.set_attribute("shop.saga.calls", tries)
            started = time.perf_counter()
            try:
                result = await action(argument)
            except grpc.aio.AioRpcError as failure:
                error = DownstreamError.of(failure)
                _timed(step, started, error.code.name)
                payment_id = error.metadata.get("paymentId") if step is SagaStep.AUTHORIZE_PAYMENT else None
                exhausted = attempts >= self._policy.step_max_attempts
                ends = error.refusal or (exhausted and domain.gives_up_when_exhausted(step))
                await self._record_error(step, error, payment_id, final=ends)
                if error.refusal:
                    raise StepStopped(step, error, refused=True, payment_id=payment_id or "") from None
                log.warning(
                    "saga %s step %s failed (%s, try %d)", self.checkout_id, step.value, error.code.name, attempts
                )
                if exhausted:
                    raise StepStopped(step, error, refused=False, payment_id=payment_id or "") from None
                await asyncio.sleep(max(self._policy.backoff(tries), error.retry_delay_seconds or 0.0))
                continue
            _timed(step, started, "OK")
            self._failpoint("after", step)
            await self._record_success(step, result)
            span.set_attribute("shop.saga.outcome", "succeeded")
            return result

    async def _record_error(
        self, step: SagaStep, error: DownstreamError, payment_id: str | None, *, final: bool
    ) -> None:
        await self._work.run(
            lambda tx: tx.step_error(
                self.checkout_id,
                self.attempt,
                step,
                final=final,
                reason=error.reason or error.code.name,
                code=error.code.name,
                payment_id=payment_id,
            )
        )

    async def _record_success(self, step: SagaStep, result: Mapping[str, str]) -> None:
        """Makes the step's outcome pending: written with the next transaction (module docstring)."""
        payment_id = result.get("paymentId") if step is SagaStep.AUTHORIZE_PAYMENT else None

        async def outcome(tx: GatewayStatements) -> None:
            await tx.step_succeeded(self.checkout_id, self.attempt, step, result, payment_id)
            if step is SagaStep.EXTEND_RESERVATION and result.get("expireTime"):
                await tx.extend_reservation_time(self.checkout_id, _instant(result["expireTime"]))
            await tx.record_progress(
                self.checkout_id,
                domain.next_step(step),
                payment_id=payment_id,
                order_id=result.get("orderId") if step is SagaStep.CREATE_ORDER else None,
                card_brand=result.get("cardBrand"),
                card_last4=result.get("cardLast4"),
            )

        self._pending = outcome
        self._pending_next = domain.next_step(step)

    async def compensate(self, *, release_reservation: bool) -> None:
        """Runs the registered undos, newest first, of every step that did (or may have) happened; each
        retried with backoff until done. One that cannot be done does not stop the others; the first such
        is raised (CompensationFailed) once all were tried."""
        failed: CompensationFailed | None = None
        await self.flush()
        for registered in reversed(self._compensations):
            if registered.step is SagaStep.RESERVE_INVENTORY and not release_reservation:
                continue
            record = self._records.get((registered.attempt, registered.step))
            fresh = await self._work.read(lambda tx: tx.steps(self.checkout_id))
            current = {(r.attempt, r.step): r for r in fresh}.get((registered.attempt, registered.step), record)
            if current is None or current.status in (StepStatus.FAILED, StepStatus.COMPENSATED, StepStatus.PENDING):
                continue  # never ran, refused (nothing held), or already undone
            with telemetry.span(
                f"saga compensate {registered.step.value}",
                attributes={
                    "shop.checkout.id": self.checkout_id,
                    "shop.saga.step": registered.step.value,
                    "shop.saga.attempt": registered.attempt,
                },
            ) as span:
                await self._work.run(
                    lambda tx, r=registered: tx.step_compensation(  # type: ignore[misc]
                        self.checkout_id, r.attempt, r.step, StepStatus.COMPENSATING
                    )
                )
                undone = False
                for tries in range(1, self._policy.compensation_max_attempts + 1):
                    span.set_attribute("shop.saga.calls", tries)
                    try:
                        await registered.action(registered.argument)
                        undone = True
                        break
                    except grpc.aio.AioRpcError as failure:
                        error = DownstreamError.of(failure)
                        if error.refusal or tries == self._policy.compensation_max_attempts:
                            failed = failed or CompensationFailed(registered.step, error.reason or error.code.name)
                            break
                        await asyncio.sleep(self._policy.backoff(tries))
                if not undone:
                    span.set_attribute("shop.saga.outcome", "failed")
                    telemetry.fail(span, "compensation failed")
                    continue
                await self._work.run(
                    lambda tx, r=registered: tx.step_compensation(  # type: ignore[misc]
                        self.checkout_id, r.attempt, r.step, StepStatus.COMPENSATED
                    )
                )
                span.set_attribute("shop.saga.outcome", "compensated")
        if failed is not None:
            raise failed

    def _failpoint(self, when: str, step: SagaStep) -> None:
        if self._policy.failpoint == f"{when}:{step.value}":
            log.error("failpoint %s:%s reached: exiting", when, step.value)
            os._exit(137)


def _timed(step: SagaStep, started: float, outcome: str) -> None:
    """One call of a step: its latency, by step and outcome (a gRPC status code name)."""
    if metrics.enabled():
        metrics.instruments().saga_step_duration.record(
            (time.perf_counter() - started) * 1000, {"shop.saga.step": step.value, "outcome": outcome}
        )


def _instant(rfc3339: str) -> datetime:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(rfc3339)
    return stamp.ToDatetime(tzinfo=UTC)


class CheckoutSaga:
    """Places one PlaceOrder attempt of a QUOTED-then-PLACING checkout.

    Guarantees, given that every activity is idempotent on the key it is sent with:

    - Never charges without an order: the payment is only captured after the order exists (the pivot),
      and a saga that stops before the pivot voids the authorization (by checkout and key when its
      outcome is unknown), so a held authorization never outlives a failed checkout.
    - Never creates an order without stock: the reservation is extended before authorizing and confirmed
      right after the order; a lapsed reservation ends the checkout EXPIRED with nothing charged.
    - Never charges twice: each step's key is derived from the checkout, the attempt and the step
      (`domain.step_key`), the same on every retry and on recovery; one attempt authorizes at most once
      and captures at most once.
    - Finishes what it started: the step log is in PostgreSQL (intent before each call, outcome after);
      after the pivot nothing is undone and each step is retried with its key until done, by this run
      or by the recovery worker of any replica; a step that can neither be done nor undone within the
      policy's attempts ends the checkout FAILED with its reason, for an operator.

    Compensations are registered before their step runs, since a call that timed out may have succeeded.
    """

    def __init__(self, activities: Activities, *, extend_ttl_seconds: int) -> None:
        self._activities = activities
        self._extend_ttl_seconds = extend_ttl_seconds

    async def run(self, saga: SagaLog, checkout: Checkout) -> Placed:
        a, c, q = self._activities, checkout, checkout.quote
        saga.register(
            SagaStep.RESERVE_INVENTORY,
            a.release_reservation,
            ReleaseReservation(c.checkout_id, "checkout_not_placed"),
            attempt=0,
        )
        await saga.step(
            SagaStep.EXTEND_RESERVATION,
            a.extend_reservation,
            ExtendReservation(c.checkout_id, self._extend_ttl_seconds),
        )
        authorize_key = saga.key(SagaStep.AUTHORIZE_PAYMENT)
        payment = await saga.step(
            SagaStep.AUTHORIZE_PAYMENT,
            a.authorize_payment,
            AuthorizePayment(c.checkout_id, Money(q.currency_code, q.total_minor), c.payment_token, authorize_key),
            compensation=(a.void_payment, VoidPayment(c.checkout_id, authorize_key, "checkout_not_placed")),
        )
        payment_id = payment["paymentId"]
        order = await saga.step(  # the pivot: from here on, only forward
            SagaStep.CREATE_ORDER,
            a.create_order,
            CreateOrder(
                checkout_id=c.checkout_id,
                user_id=c.user_id,
                customer_email=c.contact_email,
                payment_id=payment_id,
                currency_code=q.currency_code,
                lines=c.lines,
                subtotal_minor=q.subtotal_minor,
                discount_minor=q.discount_minor,
                shipping_minor=q.shipping_minor,
                tax_minor=q.tax_minor,
                total_minor=q.total_minor,
                shipping_address=c.shipping_address,
                shipping_method=c.shipping_method,
            ),
        )
        order_id = order["orderId"]
        await saga.step(
            SagaStep.CONFIRM_RESERVATION, a.confirm_reservation, ConfirmReservation(c.checkout_id, order_id)
        )
        await saga.step(
            SagaStep.CAPTURE_PAYMENT,
            a.capture_payment,
            CapturePayment(payment_id, order_id, saga.key(SagaStep.CAPTURE_PAYMENT)),
        )
        await saga.step(SagaStep.CONFIRM_ORDER, a.confirm_order, ConfirmOrder(order_id))
        await saga.step(SagaStep.CONVERT_CART, a.convert_cart, ConvertCart(c.cart_id, c.checkout_id, order_id))
        return Placed(order_id, payment_id)
