"""Runs sagas: in the background for PlaceOrder (never inside the request's own task), and from boot in
every replica's recovery worker, which claims PLACING sagas whose lease lapsed (their replica died),
expires QUOTED checkouts whose reservation lapsed, and finishes releases that were left undone.

A saga runs under a lease (`lease_owner`, `lease_expires_at`), renewed while it runs; a replica that
loses its lease stops driving that saga, and whoever claims it next resumes from the step log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from opentelemetry import trace

from gateway import domain
from gateway.activities import Activities, ReleaseReservation, client_deadline
from gateway.domain import Checkout, CheckoutStatus, Failure, SagaStep, StepRecord, StepStatus
from gateway.repository import GatewayStatements
from gateway.saga import CheckoutSaga, CompensationFailed, SagaLog, SagaPolicy, StepStopped, first_intents
from service_runtime import metrics, telemetry
from service_runtime.sql import UnitOfWork

log = logging.getLogger(__name__)

#: Sagas that ended FAILED since start (exported for metrics; an operator resolves each).
failed_sagas = 0


@dataclass(frozen=True)
class RunnerSettings:
    lease_seconds: float
    recovery_interval_seconds: float
    recovery_batch_size: int


def replica_id() -> str:
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SagaRunner:
    def __init__(
        self,
        work: UnitOfWork[GatewayStatements],
        saga: CheckoutSaga,
        activities: Activities,
        policy: SagaPolicy,
        settings: RunnerSettings,
    ) -> None:
        self._work = work
        self._saga = saga
        self._activities = activities
        self._policy = policy
        self.settings = settings
        self.owner = replica_id()
        self._tasks: dict[str, asyncio.Task[Checkout | None]] = {}

    # Starting and driving

    def start(
        self,
        checkout_id: str,
        deadline: float | None,
        *,
        recovered: bool = False,
        started: Checkout | None = None,
        answer_key: tuple[str, str, str] | None = None,
    ) -> asyncio.Task[Checkout | None]:
        """The saga's task, owned by the runner: a client that stops waiting does not stop it. Its result is
        the checkout as the saga left it when this run ended it (None when it did not).

        `started`: the checkout as the transaction that started its new attempt (under this replica's
        lease) left it, having written the intents of `saga.first_intents` and nothing else of the attempt,
        so the saga need not read its steps back. `answer_key` (user, RPC, key): the PlaceOrder waiting for
        it, whose answer a COMPLETED end records with it (`GatewayStatements.saga_end`).

        Traced as a `checkout saga` span: in the trace of the request that started it, or, `recovered`
        by the recovery worker, as a new trace linked to the PlaceOrder that started the attempt."""
        running = self._tasks.get(checkout_id)
        if running is not None and not running.done():
            return running

        async def drive() -> Checkout | None:
            client_deadline.set(deadline)
            try:
                links = (
                    telemetry.link_to(await self._work.read(lambda tx: tx.traceparent(checkout_id)))
                    if recovered
                    else []
                )
                with telemetry.span(
                    "checkout saga",
                    attributes={"shop.checkout.id": checkout_id, "shop.saga.recovered": recovered},
                    links=links,
                ):
                    return await self.drive(checkout_id, started, answer_key)
            except Exception:
                log.exception("saga %s stopped on an unexpected error; the recovery worker resumes it", checkout_id)
                return None

        task = asyncio.get_running_loop().create_task(drive(), name=f"saga:{checkout_id}")
        self._tasks[checkout_id] = task
        task.add_done_callback(lambda done: self._forget(checkout_id, done))
        return task

    def _forget(self, checkout_id: str, done: asyncio.Task[Checkout | None]) -> None:
        if self._tasks.get(checkout_id) is done:
            del self._tasks[checkout_id]

    async def drive(
        self, checkout_id: str, started: Checkout | None = None, answer_key: tuple[str, str, str] | None = None
    ) -> Checkout | None:
        """Drives a PLACING checkout this replica holds the lease of to its next state; returns it there
        (None when it was not this replica's to drive). `started`, `answer_key`: as `start` says."""

        async def load(tx: GatewayStatements) -> tuple[Checkout | None, list[StepRecord]]:
            found = await tx.checkout(checkout_id)
            if found is None or found.status is not CheckoutStatus.PLACING or found.lease_owner != self.owner:
                return None, []
            return found, await tx.steps(checkout_id)

        checkout: Checkout | None
        records: list[StepRecord]
        intended: dict[SagaStep, int] = {}
        if started is not None and started.status is CheckoutStatus.PLACING and started.lease_owner == self.owner:
            checkout, records = started, []  # a new attempt: nothing of it written but its first intents
            intended = {intent.step: 1 for intent in first_intents(checkout_id, started.attempt)}
        else:
            checkout, records = await self._work.read(load)  # one snapshot, one round of reads
        if checkout is None:
            return None
        saga = SagaLog(self._work, checkout, records, self._policy, intended=intended)
        saga.answer_key = answer_key
        renewer = asyncio.create_task(self._keep_lease(checkout_id, asyncio.current_task()))
        try:
            try:
                placed = await self._saga.run(saga, checkout)
            except StepStopped as stop:
                if stop.step is SagaStep.CONVERT_CART:
                    # The order is placed and paid; a cart that cannot be converted (e.g. it expired) stays as it is.
                    log.warning("checkout %s completed, but its cart was not converted: %s", checkout_id, stop.reason)
                    return await self._end(CheckoutStatus.COMPLETED, None, saga)
                return await self._stop(saga, checkout.attempt, stop)
            ended = await self._end(CheckoutStatus.COMPLETED, None, saga)
            log.info("checkout %s completed: order %s, payment %s", checkout_id, placed.order_id, placed.payment_id)
            return ended
        finally:
            renewer.cancel()

    async def _stop(self, saga: SagaLog, attempt: int, stop: StepStopped) -> Checkout:
        ending = domain.ending_for(stop.step, refused=stop.refused, reason=stop.reason)
        failure = Failure(
            reason=stop.reason,
            message=stop.message or f"{stop.step.value} failed ({stop.reason})",
            step=stop.step,
            at=datetime.now(UTC),
            code=stop.code,
            attempt=attempt,
            payment_id=stop.payment_id,
        )
        status = ending.status
        if not domain.is_past_pivot([stop.step]) or stop.step is domain.PIVOT:
            try:
                await saga.compensate(release_reservation=ending.release_reservation)
            except CompensationFailed as failed:
                status = CheckoutStatus.FAILED
                failure = Failure(
                    reason="COMPENSATION_FAILED",
                    message=f"{failure.message}; then {failed}",
                    step=failed.step,
                    at=failure.at,
                    code="INTERNAL",
                    attempt=attempt,
                    payment_id=stop.payment_id,
                )
        return await self._end(status, failure, saga)

    async def _end(self, status: CheckoutStatus, failure: Failure | None, saga: SagaLog) -> Checkout:
        """Ends the saga: the outcomes not written yet (the last steps') in the same commit as the end;
        one statement when it completed."""
        global failed_sagas
        checkout_id, done = saga.checkout_id, saga.pending()
        stopped_at = failure.step if failure is not None and status is CheckoutStatus.FAILED else None

        async def work(tx: GatewayStatements) -> Checkout:
            if failure is not None:
                await tx.record_failure(checkout_id, failure)
            ended = await tx.saga_end(checkout_id, saga.attempt, done, status, stopped_at, saga.lines, saga.answer_key)
            if status is CheckoutStatus.EXPIRED:
                await _expired_event(tx, checkout_id)
            return ended

        if failure is None and status is not CheckoutStatus.EXPIRED:
            ended = await self._work.statement(work)
        else:
            ended = await self._work.run(work)
        saga.written(done)
        trace.get_current_span().set_attribute("shop.saga.outcome", status.value)
        if metrics.enabled():
            metrics.instruments().saga_outcomes.add(1, {"outcome": status.value})
        if status is CheckoutStatus.FAILED:
            failed_sagas += 1
            log.error(
                "checkout %s FAILED and needs an operator: %s at %s (%s)",
                checkout_id,
                failure.reason if failure else "",
                failure.step.value if failure else "",
                failure.message if failure else "",
            )
        return ended

    async def _keep_lease(self, checkout_id: str, driver: asyncio.Task[object] | None) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                held = await self._work.run(
                    lambda tx: tx.renew_lease(checkout_id, self.owner, self.settings.lease_seconds)
                )
            except Exception:
                log.warning("could not renew the lease of saga %s", checkout_id, exc_info=True)
                continue
            if not held:
                log.warning("lost the lease of saga %s; another replica resumes it", checkout_id)
                if driver is not None:
                    driver.cancel()
                return

    # The recovery worker

    async def run(self) -> None:
        """The background worker of every replica, from boot until shutdown."""
        while True:
            try:
                await self.recover_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("recovery pass failed; trying again", exc_info=True)
            await asyncio.sleep(self.settings.recovery_interval_seconds)

    async def recover_once(self) -> int:
        claimed = await self._work.statement(  # one statement: no transaction around it
            lambda tx: tx.claim_lapsed(self.owner, self.settings.lease_seconds, self.settings.recovery_batch_size)
        )
        for checkout_id in claimed:
            log.info("recovering saga %s", checkout_id)
            self.start(checkout_id, None, recovered=True)
        expired = await self._work.run(lambda tx: _expire_quotes(tx, self.settings.recovery_batch_size))
        for checkout_id in expired:
            await self.release(checkout_id, attempt=0, reason="reservation_expired")
        for checkout_id in await self._work.statement(
            lambda tx: tx.unfinished_releases(self.settings.lease_seconds, self.settings.recovery_batch_size)
        ):
            await self.release(checkout_id, attempt=0, reason="checkout_ended")
        return len(claimed)

    async def release(self, checkout_id: str, *, attempt: int, reason: str) -> bool:
        """Releases a checkout's reservation (its registered undo), recording it; False if it must wait."""
        await self._work.statement(
            lambda tx: tx.step_compensation(checkout_id, attempt, SagaStep.RESERVE_INVENTORY, StepStatus.COMPENSATING)
        )
        try:
            await self._activities.release_reservation(ReleaseReservation(checkout_id, reason))
        except grpc.aio.AioRpcError as failure:
            # It stays COMPENSATING; the recovery worker's next pass retries it.
            log.warning("release of %s failed (%s); the recovery worker retries it", checkout_id, failure.code().name)
            return False
        await self._work.statement(
            lambda tx: tx.step_compensation(checkout_id, attempt, SagaStep.RESERVE_INVENTORY, StepStatus.COMPENSATED)
        )
        return True

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


async def _expired_event(tx: GatewayStatements, checkout_id: str) -> None:
    checkout = await tx.checkout(checkout_id)
    if checkout is None:
        return
    await tx.insert_event(
        f"{checkout_id}:expired",
        checkout_id,
        "CheckoutExpired",
        {
            "checkoutId": checkout_id,
            "userId": checkout.user_id,
            "customerEmail": checkout.contact_email,
            "cartId": checkout.cart_id,
        },
    )


async def _expire_quotes(tx: GatewayStatements, limit: int) -> list[str]:
    expired = await tx.expire_lapsed_quotes(limit)
    for checkout_id, _user, _email in expired:
        await _expired_event(tx, checkout_id)
    return [checkout_id for checkout_id, _user, _email in expired]
