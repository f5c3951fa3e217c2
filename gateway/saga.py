"""The checkout saga: a short, deterministic script (`CheckoutSaga.run`) over a durable step log
(`SagaLog`), in the manner of Temporal's saga samples.

The script has no clock, randomness or network of its own: every call is an activity
(`gateway.activities`) made through `SagaLog.step`, which writes the step's intent (and its undo)
before the call and its outcome after, retries transport failures with the same step key, and on
recovery replays a finished step's recorded result instead of calling again.

A step's outcome is written with the next step's intent (or the saga's end, or before its
compensations): nothing is called between the two, so it is one commit where there were two, and a
crash in between leaves exactly what a crash right after the call always left (the step RUNNING,
called again with its key on recovery). Each such write is one statement (`saga_log`, `saga_end`:
outcomes, the checkout's progress and intents together), committed on its own.

After the capture, the two steps that do not depend on each other (confirm the order, convert the cart)
run concurrently (`SagaLog.together`): their intents are written in one statement before either is
called, each is then called and retried on its own exactly as a single step, and their outcomes are
written with the next write. Confirming the reservation and capturing the payment do not: a charge
waits for the stock to be sold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
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
from gateway.repository import GatewayStatements, Intent, Outcome
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


def first_intents(checkout_id: str, attempt: int) -> list[Intent]:
    """The intents of a new attempt's first step, for the transaction that starts the attempt to write with
    it (durable before the call as any intent; one write less). `SagaLog(intended=...)` does not write them
    again."""
    first = SagaStep.EXTEND_RESERVATION
    return [Intent(first, domain.step_key(checkout_id, attempt, first), domain.definition(first).compensation)]


class SagaLog:
    """One run of one attempt of a checkout's saga over its step log (see the module docstring)."""

    def __init__(
        self,
        work: UnitOfWork[GatewayStatements],
        checkout: Checkout,
        records: list[StepRecord],
        policy: SagaPolicy,
        *,
        intended: Mapping[SagaStep, int] | None = None,
    ) -> None:
        self._work = work
        self.checkout_id = checkout.checkout_id
        self.attempt = checkout.attempt
        self.lines = checkout.lines
        self._records = {(record.attempt, record.step): record for record in records}
        self._policy = policy
        self._compensations: list[_Registered] = []
        #: Outcomes of steps that succeeded, not written yet: they go with the next write (module docstring).
        self._pending: list[Outcome] = []
        #: Steps whose first call's intent was written before this run (`first_intents`), with their attempts.
        self._intended = dict(intended or {})
        #: The waiting PlaceOrder's idempotency key (user, RPC, key), answered by a COMPLETED end.
        self.answer_key: tuple[str, str, str] | None = None

    def pending(self) -> list[Outcome]:
        """The outcomes waiting for the next write, in step order (the saga's end writes them)."""
        return sorted(self._pending, key=lambda outcome: domain.order_of(outcome.step))

    def written(self, outcomes: list[Outcome]) -> None:
        """The write holding `outcomes` committed."""
        self._pending = [outcome for outcome in self._pending if outcome not in outcomes]

    async def _write(self, intents: list[Intent]) -> dict[SagaStep, int]:
        """The pending outcomes, the checkout's progress and `intents` in one statement (one commit)."""
        done = self.pending()
        current: SagaStep | None
        if intents:
            current = min((intent.step for intent in intents), key=domain.order_of)
        else:
            current = domain.next_step(done[-1].step) if done else None
        attempts = await self._work.statement(
            lambda tx: tx.saga_log(self.checkout_id, self.attempt, done, current, intents)
        )
        self.written(done)
        return attempts

    async def flush(self) -> None:
        """The pending outcomes in a write of their own (before reading the step log back)."""
        if self._pending:
            await self._write([])

    def key(self, step: SagaStep) -> str:
        return domain.step_key(self.checkout_id, self.attempt, step)

    def _intent(self, step: SagaStep, compensation: tuple[Action, object] | None) -> Intent:
        return Intent(step, self.key(step), domain.definition(step).compensation if compensation else None)

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
        intended: int | None = None,
    ) -> Mapping[str, str]:
        """Runs `action(argument)` as `step` of this attempt, exactly as the module docstring says; traced
        as one span (checkout, step, attempt, calls made, outcome; ERROR when the step stops the saga).
        `intended`: the first call's intent is already written (by `together`), with these attempts."""
        with telemetry.span(
            f"saga step {step.value}",
            attributes={
                "shop.checkout.id": self.checkout_id,
                "shop.saga.step": step.value,
                "shop.saga.attempt": self.attempt,
            },
        ) as span:
            try:
                return await self._step(step, action, argument, compensation, span, intended)
            except StepStopped as stopped:
                span.set_attribute("shop.saga.outcome", "refused" if stopped.refused else "gave_up")
                telemetry.fail(span, stopped.reason)
                raise

    async def together(
        self, *steps: tuple[SagaStep, Callable[[Any], Awaitable[Mapping[str, str]]], object]
    ) -> list[Mapping[str, str] | StepStopped]:
        """Runs independent steps (none has an undo: after the pivot) concurrently: the intents of those
        not finished yet in one write, then each called and retried on its own as `step` does. Waits for
        all of them; returns each one's result, or the StepStopped that stopped it, in the order given."""
        intents = [self._intent(step, None) for step, _action, _argument in steps if self._unfinished(step)]
        attempts = await self._write(intents) if intents else {}
        outcomes = await asyncio.gather(
            *(self.step(step, action, argument, intended=attempts.get(step)) for step, action, argument in steps),
            return_exceptions=True,
        )
        results: list[Mapping[str, str] | StepStopped] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, StepStopped):
                raise outcome  # not a step's answer (e.g. the database): the recovery worker resumes the saga
            results.append(outcome)
        return results

    def _unfinished(self, step: SagaStep) -> bool:
        record = self._records.get((self.attempt, step))
        return record is None or record.status not in (StepStatus.SUCCEEDED, StepStatus.FAILED)

    async def _step(
        self,
        step: SagaStep,
        action: Callable[[In], Awaitable[Mapping[str, str]]],
        argument: In,
        compensation: tuple[Action, object] | None,
        span: trace.Span,
        intended: int | None,
    ) -> Mapping[str, str]:
        if compensation is not None:
            self._compensations.append(_Registered(step, self.attempt, compensation[0], compensation[1]))
        if intended is None:
            intended = self._intended.pop(step, None)
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
        tries = 0
        while True:
            tries += 1
            if tries == 1 and intended is not None:
                attempts = intended
            else:
                attempts = (await self._write([self._intent(step, compensation)]))[step]
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
            self._pending.append(Outcome(step, result))
            span.set_attribute("shop.saga.outcome", "succeeded")
            return result

    async def _record_error(
        self, step: SagaStep, error: DownstreamError, payment_id: str | None, *, final: bool
    ) -> None:
        await self._work.statement(
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
            fresh = await self._work.statement(lambda tx: tx.steps(self.checkout_id))
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
                await self._work.statement(
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
                await self._work.statement(
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
        a, c, q = self._activities, checkout, checkout.quote  # the first step: as `first_intents` says
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
        # The stock is sold before the payment is captured: a reservation that cannot be confirmed (it lapsed)
        # stops the saga with the card only authorized, never charged for goods it does not get.
        await saga.step(
            SagaStep.CONFIRM_RESERVATION, a.confirm_reservation, ConfirmReservation(c.checkout_id, order_id)
        )
        await saga.step(
            SagaStep.CAPTURE_PAYMENT,
            a.capture_payment,
            CapturePayment(payment_id, order_id, saga.key(SagaStep.CAPTURE_PAYMENT)),
        )
        # Then, concurrently, the order's confirmation (a CONFIRMED order is a paid one whose stock is sold) and
        # the cart's conversion (it needs only the order id).
        _stop_at_first(
            await saga.together(
                (SagaStep.CONFIRM_ORDER, a.confirm_order, ConfirmOrder(order_id)),
                (SagaStep.CONVERT_CART, a.convert_cart, ConvertCart(c.cart_id, c.checkout_id, order_id)),
            )
        )
        return Placed(order_id, payment_id)


def _stop_at_first(outcomes: list[Mapping[str, str] | StepStopped]) -> None:
    """Raises the first StepStopped of steps that ran together (in saga order), once all of them ended."""
    for outcome in outcomes:
        if isinstance(outcome, StepStopped):
            raise outcome
