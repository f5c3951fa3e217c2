"""The cancel worker: gives a cancelled order's money and stock back, exactly once, however often it is
interrupted.

CancelOrder commits the order CANCELLED with `refund_status` and `restock_status` PENDING and
`compensation_due_at` now. This worker (in every replica, and once inline right after CancelOrder)
claims due rows with `FOR UPDATE SKIP LOCKED`, pushing `compensation_due_at` out by a lease in the
claiming transaction, then - outside any transaction - calls

- Payment: RefundPayment when the order was CONFIRMED (captured), with the idempotency key
  `order:<order_id>:refund` on every attempt; VoidPayment when it was PENDING (authorized only; naturally
  idempotent on payment_id). Each falls over to the other if Payment says the payment moved
  (PAYMENT_NOT_CAPTURED / PAYMENT_ALREADY_CAPTURED);
- Inventory: ReturnStock (idempotent on order_id) for a CONFIRMED order's sold stock; ReleaseReservation
  (naturally idempotent on checkout_id) for a PENDING order's reservation, or ReturnStock if inventory
  says the reservation was confirmed after all;

and records each outcome, with its OrderEvent (OrderRefunded / OrderPaymentVoided / OrderRestocked), in
one transaction. A transport failure (Payment or Inventory down) reschedules with capped exponential
backoff; the same keys are sent again. A refusal (the other service says no for good) marks that
compensation FAILED for an operator. A worker killed mid-call (SIGKILL) leaves its lease to expire, and
the next claim sends the same idempotent calls again, so money and stock still come back once.

This is the order's own compensation, after the checkout's saga has finished: the gateway's saga
compensates a checkout that fails before its order is confirmed (VoidPayment, ReleaseReservation, then
CancelOrder with reason PAYMENT_FAILED or OUT_OF_STOCK); this worker is what a cancellation of a
placed order runs, and it is safe to overlap with the saga because every call it makes is idempotent on
the same business keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from opentelemetry.trace import Link

from order_svc import domain
from order_svc.domain import CompensationStatus, Order, RefundAction, RestockAction
from order_svc.handlers import record_event
from order_svc.repository import OrderStatements
from service_runtime import telemetry
from service_runtime.channels import Channels
from service_runtime.downstream import DownstreamError
from service_runtime.sql import UnitOfWork
from service_runtime.wire import money_out
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import events_pb2 as events
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shop.type.v1 import line_item_pb2

log = logging.getLogger(__name__)

CANCEL_REASON_TEXT = "order_cancelled"
#: How long CancelOrder waits for its inline first attempt before answering with the progress so far.
INLINE_BUDGET_SECONDS = 3.0


def refund_request(order: Order) -> payment_pb.RefundPaymentRequest:
    """The refund of a cancelled order: the same payload and key on every attempt (Payment replays it)."""
    return payment_pb.RefundPaymentRequest(
        payment_id=order.payment_id,
        reason=payment_pb.REFUND_REASON_ORDER_CANCELLED,
        note=f"order {order.order_id} cancelled",
        idempotency_key=domain.refund_key(order.order_id),
    )


class Retry(Exception):
    """The step could not be finished now (a transport failure): try again later with the same keys."""


@dataclass(frozen=True)
class RefundOutcome:
    status: CompensationStatus
    refund_id: str = ""
    refunded_minor: int = 0
    voided: bool = False


@dataclass(frozen=True)
class WorkerSettings:
    lease_seconds: float = 30.0
    batch_size: int = 20
    poll_seconds: float = 1.0
    call_timeout_seconds: float = 5.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0


class CancellationWorker:
    def __init__(
        self,
        work: UnitOfWork[OrderStatements],
        channels: Channels,
        *,
        payment_target: str,
        inventory_target: str,
        settings: WorkerSettings = WorkerSettings(),
    ) -> None:
        self._work = work
        self._channels = channels
        self._payment_target = payment_target
        self._inventory_target = inventory_target
        self._settings = settings
        self._wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            done = await self.run_once()
            if done < self._settings.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)

    async def run_once(self, order_ids: tuple[str, ...] = ()) -> int:
        """Claims a batch of due cancellations (or just `order_ids`) and works each; returns how many."""
        s = self._settings
        claimed = await self._work.run(lambda tx: tx.claim_compensations(s.lease_seconds, s.batch_size, order_ids))
        for order in claimed:
            if order_ids:  # CancelOrder's inline attempt: in the request's trace
                await self.compensate(order)
                continue
            # The background worker: a trace of its own, linked to the CancelOrder that asked for it.
            with telemetry.span(
                "order compensation",
                attributes={"shop.order.id": order.order_id},
                links=await self._cancel_links(order.order_id),
            ):
                await self.compensate(order)
        return len(claimed)

    async def _cancel_links(self, order_id: str) -> list[Link]:
        payload = await self._work.read(lambda tx: tx.cancelled_event(order_id))
        return telemetry.link_to(events.OrderEvent.FromString(payload).traceparent) if payload else []

    async def compensate_now(self, order_id: str) -> None:
        """CancelOrder's inline first attempt, bounded by INLINE_BUDGET_SECONDS; the worker finishes it."""
        try:
            # bounded, so a slow Payment or Inventory cannot hold the customer's CancelOrder; a claim cut
            # short keeps its lease and the background worker resends the same idempotent calls after it
            await asyncio.wait_for(self.run_once((order_id,)), INLINE_BUDGET_SECONDS)
        except TimeoutError:
            log.warning("inline compensation of %s ran out of time; the worker finishes it", order_id)
        except Exception:  # the durable row is there: the background worker will get it
            log.exception("inline compensation of %s failed; the worker retries", order_id)
        self._wake.set()

    async def compensate(self, order: Order) -> None:
        cancellation = order.cancellation
        assert cancellation is not None
        errors: list[str] = []
        if cancellation.refund_status is CompensationStatus.PENDING:
            try:
                outcome = await self._give_money_back(order)
            except Retry as retry:
                errors.append(str(retry))
            else:
                await self._work.run(lambda tx: self._record_refund(tx, order, outcome))
        if cancellation.restock_status is CompensationStatus.PENDING:
            try:
                restocked = await self._give_stock_back(order)
            except Retry as retry:
                errors.append(str(retry))
            else:
                await self._work.run(lambda tx: self._record_restock(tx, order, restocked))
        if errors:
            s = self._settings
            attempts = await self._attempts(order.order_id)
            delay = domain.compensation_delay(
                attempts + 1, base_seconds=s.backoff_base_seconds, max_seconds=s.backoff_max_seconds
            )
            message = "; ".join(errors)
            await self._work.run(lambda tx: tx.schedule_compensation(order.order_id, delay, message))
            log.warning("cancellation of %s not finished (%s); retrying in %.1f s", order.order_id, message, delay)

    async def _attempts(self, order_id: str) -> int:
        return await self._work.read(lambda tx: tx.compensation_attempts(order_id))

    # Money

    async def _give_money_back(self, order: Order) -> RefundOutcome:
        assert order.cancellation is not None
        action = domain.refund_action(order.cancellation.cancelled_from)
        for _ in range(2):  # at most one fall-over between refund and void
            if action is RefundAction.REFUND:
                refusal = await self._call_refund(order)
                if isinstance(refusal, RefundOutcome):
                    return refusal
                if refusal.reason == "PAYMENT_NOT_CAPTURED":
                    action = RefundAction.VOID
                    continue
                if refusal.reason == "REFUND_EXCEEDS_CAPTURED" and refusal.metadata.get("refundableMinor") == "0":
                    return RefundOutcome(CompensationStatus.NOT_REQUIRED)
                return self._gave_up(order, "refund", refusal)
            refusal_or_done = await self._call_void(order)
            if isinstance(refusal_or_done, RefundOutcome):
                return refusal_or_done
            if refusal_or_done.reason == "PAYMENT_ALREADY_CAPTURED":
                action = RefundAction.REFUND
                continue
            return self._gave_up(order, "void", refusal_or_done)
        raise Retry("payment kept moving between captured and authorized")

    async def _call_refund(self, order: Order) -> RefundOutcome | DownstreamError:
        stub = payment_grpc.PaymentServiceStub(self._channels.get(self._payment_target))
        try:
            response = await stub.RefundPayment(refund_request(order), timeout=self._settings.call_timeout_seconds)
        except grpc.aio.AioRpcError as error:
            return self._refusal_or_retry("payment", error)
        if response.refund.status == payment_pb.REFUND_STATUS_FAILED:
            log.error("cancellation of %s: the refund %s failed at the PSP", order.order_id, response.refund.refund_id)
            return RefundOutcome(CompensationStatus.FAILED, refund_id=response.refund.refund_id)
        if response.refund.status != payment_pb.REFUND_STATUS_SUCCEEDED:
            # still in flight at the PSP: ask again later with the same key, which replays this refund
            raise Retry(f"refund {response.refund.refund_id} is still processing")
        return RefundOutcome(
            CompensationStatus.SUCCEEDED,
            refund_id=response.refund.refund_id,
            refunded_minor=response.refund.amount.amount_minor,
        )

    async def _call_void(self, order: Order) -> RefundOutcome | DownstreamError:
        stub = payment_grpc.PaymentServiceStub(self._channels.get(self._payment_target))
        request = payment_pb.VoidPaymentRequest(payment_id=order.payment_id, reason=CANCEL_REASON_TEXT)
        try:
            await stub.VoidPayment(request, timeout=self._settings.call_timeout_seconds)
        except grpc.aio.AioRpcError as error:
            failure = self._refusal_or_retry("payment", error)
            if failure.code == grpc.StatusCode.NOT_FOUND:
                return RefundOutcome(CompensationStatus.NOT_REQUIRED)  # no payment was ever authorized
            return failure
        return RefundOutcome(CompensationStatus.SUCCEEDED, voided=True)

    # Stock

    async def _give_stock_back(self, order: Order) -> bool:
        """True when sold stock was returned, False when a reservation was released; raises Retry."""
        assert order.cancellation is not None
        stub = inventory_grpc.InventoryServiceStub(self._channels.get(self._inventory_target))
        timeout = self._settings.call_timeout_seconds
        if domain.restock_action(order.cancellation.cancelled_from) is RestockAction.RELEASE:
            try:
                await stub.ReleaseReservation(
                    inventory_pb.ReleaseReservationRequest(checkout_id=order.checkout_id, reason=CANCEL_REASON_TEXT),
                    timeout=timeout,
                )
                return False
            except grpc.aio.AioRpcError as error:
                failure = self._refusal_or_retry("inventory", error)
                if failure.reason != "RESERVATION_CONFIRMED":
                    if failure.code == grpc.StatusCode.NOT_FOUND or failure.reason in (
                        "RESERVATION_EXPIRED",
                        "RESERVATION_RELEASED",
                    ):
                        return False  # nothing is held any more
                    raise Retry(
                        f"inventory refused ReleaseReservation: {failure.reason or failure.code.name}"
                    ) from None
                # the saga confirmed the reservation after all: the stock was sold, so return it
        try:
            await stub.ReturnStock(
                inventory_pb.ReturnStockRequest(
                    order_id=order.order_id,
                    items=[line_item_pb2.LineItem(sku=line.sku, quantity=line.quantity) for line in order.lines],
                    reason=CANCEL_REASON_TEXT,
                ),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as error:
            failure = self._refusal_or_retry("inventory", error)
            raise Retry(f"inventory refused ReturnStock: {failure.reason or failure.code.name}") from None
        return True

    # Outcomes

    def _refusal_or_retry(self, service: str, error: grpc.aio.AioRpcError) -> DownstreamError:
        failure = DownstreamError.of(error)
        if not failure.refusal:
            raise Retry(f"{service} {failure.code.name}: {failure.message[:200]}") from None
        return failure

    def _gave_up(self, order: Order, step: str, refusal: DownstreamError) -> RefundOutcome:
        log.error("cancellation of %s: payment refused the %s for good (%s)", order.order_id, step, refusal.reason)
        return RefundOutcome(CompensationStatus.FAILED)

    async def _record_refund(self, tx: OrderStatements, order: Order, outcome: RefundOutcome) -> None:
        updated = await tx.record_refund(
            order.order_id, outcome.status, outcome.refund_id or None, outcome.refunded_minor
        )
        if updated is None or outcome.status is not CompensationStatus.SUCCEEDED:
            return  # recorded already by another worker, or nothing to tell the customer
        updated = await tx.bump_event_count(order.order_id)
        payload: events.OrderRefunded | events.OrderPaymentVoided
        if outcome.voided:
            payload = events.OrderPaymentVoided(payment_id=order.payment_id)
        else:
            payload = events.OrderRefunded(
                payment_id=order.payment_id,
                refund_id=outcome.refund_id,
                amount=money_out(updated.cancellation.refunded if updated.cancellation else order.total),
            )
        await record_event(tx, updated, payload)

    async def _record_restock(self, tx: OrderStatements, order: Order, returned: bool) -> None:
        updated = await tx.record_restock(order.order_id, CompensationStatus.SUCCEEDED)
        if updated is None:
            return
        updated = await tx.bump_event_count(order.order_id)
        await record_event(tx, updated, events.OrderRestocked(returned=returned))
