"""The operator's use cases (shop.gateway.v1.CheckoutAdminService): list what needs an operator, show a
checkout with its steps, resume a FAILED saga whose order exists, resolve a FAILED checkout by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from gateway import domain
from gateway.activities import Activities, ReleaseReservation, VoidPayment
from gateway.domain import Checkout, CheckoutStatus, Resolution, SagaStep, StepRecord, StepStatus
from gateway.handlers import reissue
from gateway.repository import GatewayStatements
from gateway.runner import SagaRunner
from service_runtime import errors
from service_runtime.sql import UnitOfWork
from shop.order.v1 import order_service_pb2 as order_pb

ORDER_CANCELLED = "order_cancelled"
VOIDED_AND_RELEASED = "payment_voided_stock_released"


@dataclass(frozen=True)
class Details:
    checkout: Checkout
    steps: Sequence[StepRecord]
    resolution: Resolution | None


def _not_found(checkout_id: str) -> errors.NotFound:
    return errors.NotFound("no such checkout", reason="CHECKOUT_NOT_FOUND", metadata={"checkoutId": checkout_id})


class AdminHandlers:
    def __init__(self, work: UnitOfWork[GatewayStatements], activities: Activities, runner: SagaRunner) -> None:
        self._work = work
        self._a = activities
        self._runner = runner

    async def list_checkouts(
        self, status: CheckoutStatus, min_unchanged_seconds: float, after: str | None, limit: int
    ) -> list[tuple[Checkout, list[StepRecord]]]:
        async def read(tx: GatewayStatements) -> list[tuple[Checkout, list[StepRecord]]]:
            found = await tx.list_checkouts(status, min_unchanged_seconds, after, limit)
            return [(checkout, await tx.steps(checkout.checkout_id)) for checkout in found]

        return await self._work.read(read)

    async def details(self, checkout_id: str) -> Details:
        async def read(tx: GatewayStatements) -> Details:
            checkout = await tx.checkout(checkout_id)
            if checkout is None:
                raise _not_found(checkout_id)
            return Details(checkout, await tx.steps(checkout_id), await tx.resolution(checkout_id))

        return await self._work.read(read)

    async def retry(self, checkout_id: str) -> tuple[Checkout, bool]:
        async def resume(tx: GatewayStatements) -> bool:
            checkout = await tx.checkout(checkout_id, lock=True)
            if checkout is None:
                raise _not_found(checkout_id)
            if checkout.status in (CheckoutStatus.PLACING, CheckoutStatus.COMPLETED):
                return False
            if await tx.resolution(checkout_id) is not None:
                raise errors.FailedPrecondition(
                    "an operator resolved this checkout",
                    reason="CHECKOUT_RESOLVED",
                    metadata={"checkoutId": checkout_id},
                )
            if checkout.status is not CheckoutStatus.FAILED or not checkout.order_id:
                raise errors.FailedPrecondition(
                    "only a FAILED checkout whose order exists can be resumed; resolve it instead",
                    reason="CHECKOUT_NOT_RETRYABLE",
                    metadata={"status": checkout.status.contract_name, "checkoutId": checkout_id},
                )
            return await tx.resume_failed(checkout_id, self._runner.owner, self._runner.settings.lease_seconds)

        resumed = await self._work.run(resume)
        if resumed:
            self._runner.start(checkout_id, None)
        checkout = (await self.details(checkout_id)).checkout
        return checkout, not resumed

    async def resolve(self, checkout_id: str, reason: str, operator: str) -> tuple[Details, bool]:
        before = await self.details(checkout_id)
        if before.resolution is not None:
            return before, True
        if before.checkout.status is not CheckoutStatus.FAILED:
            raise errors.FailedPrecondition(
                "only a FAILED checkout is resolved by hand",
                reason="CHECKOUT_NOT_FAILED",
                metadata={"status": before.checkout.status.contract_name, "checkoutId": checkout_id},
            )
        try:
            if before.checkout.order_id:
                await self._a.order.CancelOrder(
                    order_pb.CancelOrderRequest(
                        order_id=before.checkout.order_id,
                        reason=order_pb.CANCEL_REASON_OPERATOR,
                        note=reason[:500],
                        idempotency_key=f"resolve-{checkout_id}"[:128],
                    ),
                    timeout=self._a.timeout(self._a.settings.order),
                )
                action = ORDER_CANCELLED
            else:
                await self._give_back(before.checkout, before.steps)
                action = VOIDED_AND_RELEASED
        except grpc.aio.AioRpcError as failure:
            raise reissue(failure) from None
        await self._work.run(lambda tx: tx.record_resolution(checkout_id, action, reason, operator))
        return await self.details(checkout_id), False

    async def _give_back(self, checkout: Checkout, steps: Sequence[StepRecord]) -> None:
        """Voids every authorization that may hold money (by checkout and key) and releases the stock."""
        for step in steps:
            if step.step is SagaStep.AUTHORIZE_PAYMENT and step.status is not StepStatus.COMPENSATED:
                key = domain.step_key(checkout.checkout_id, step.attempt, SagaStep.AUTHORIZE_PAYMENT)
                await self._a.void_payment(VoidPayment(checkout.checkout_id, key, "resolved_by_operator"))
        await self._a.release_reservation(ReleaseReservation(checkout.checkout_id, "resolved_by_operator"))
