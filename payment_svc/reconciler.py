"""The reconciler: settles every operation whose PSP answer was lost, in every replica.

Each pass claims due rows with `FOR UPDATE SKIP LOCKED` and leases them (`next_reconcile_at` moves
forward), so replicas share the work and one operation is looked up by one replica at a time. For each:

- it looks the operation up at the PSP by the Idempotency-Key we sent (derived from the payment and the
  operation), and records the PSP's answer as if the call had returned it (`PaymentHandlers.settle_*`);
- if the PSP has no record of the key, it fences the key at the PSP first (a request still in flight
  is then refused there), so "never received" is final: the authorization FAILS, a capture or void is
  dropped (the payment stays AUTHORIZED), a refund FAILS. It never re-sends a charge;
- if the PSP is still running the request, it leaves it for the next lease.

It also expires AUTHORIZED payments whose authorization has lapsed (AUTHORIZED -> EXPIRED).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from payment_svc import psp
from payment_svc.domain import Payment, PaymentStatus, refund_psp_key
from payment_svc.handlers import PaymentHandlers, Work
from payment_svc.repository import PaymentStatements
from service_runtime.errors import ServiceError

log = logging.getLogger(__name__)

_NEVER_RECEIVED = {"error": {"code": "not_received", "message": "the PSP never received the request"}}


class Reconciler:
    def __init__(
        self,
        work: Work,
        handlers: PaymentHandlers,
        client: psp.PspClient,
        *,
        interval_seconds: float,
        lease_seconds: float,
        batch_size: int,
    ) -> None:
        self._work = work
        self._handlers = handlers
        self._psp = client
        self._interval = interval_seconds
        self._lease = lease_seconds
        self._batch = batch_size

    async def run(self) -> None:
        """Passes until cancelled (at shutdown), which also closes the PSP client's connections."""
        try:
            while True:
                try:
                    await self.pass_once()
                except Exception:
                    log.exception("reconciler pass failed; next pass in %.1fs", self._interval)
                await asyncio.sleep(self._interval)
        finally:
            await self._psp.close()

    async def pass_once(self) -> int:
        """One pass; returns how many rows it worked on."""
        # Each claim is one statement (an UPDATE over a FOR UPDATE SKIP LOCKED select), committed on its own:
        # an idle pass costs one round trip per claim, not a BEGIN and a COMMIT around it too.
        payments = await self._work.statement(lambda tx: tx.claim_unsettled_payments(self._lease, self._batch))
        for payment in payments:
            await self._guarded(self._payment(payment))
        refunds = await self._work.statement(lambda tx: tx.claim_unsettled_refunds(self._lease, self._batch))
        for payment_id, refund_id in refunds:
            await self._guarded(self._refund(payment_id, refund_id))
        expired = await self._work.run(self._expire)
        return len(payments) + len(refunds) + expired

    @staticmethod
    async def _guarded(settle: Any) -> None:
        try:
            await settle
        except ServiceError:
            pass  # the settlement refused its (absent) caller after recording the outcome
        except psp.PspError as error:
            log.info("reconciler could not settle %s yet (%s); next lease", error, type(error).__name__)

    async def _answer(self, key: str) -> dict[str, Any] | None:
        """The PSP's final record for `key` (fencing it if it has none), or None while it is in progress."""
        found = await self._psp.lookup(key)
        if found is None:
            found = await self._psp.fence(key)
        return None if found["state"] == "in_progress" else found

    async def _payment(self, payment: Payment) -> None:
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
            found = await self._answer(payment.psp_key("authorize"))
            if found is None:
                return
            status, body = _outcome(found)
            await self._handlers.settle_authorization(payment.payment_id, status, body, "reconciler: authorize")
            log.info("reconciler settled the authorization of %s", payment.payment_id)
        elif payment.pending_operation in ("capture", "void"):
            operation = payment.pending_operation
            found = await self._answer(payment.pending_psp_key)
            if found is None:
                return
            if found["state"] == "fenced":
                await self._handlers.drop_pending(payment.payment_id, operation)
                return
            settle = self._handlers.settle_capture if operation == "capture" else self._handlers.settle_void
            await settle(payment.payment_id, found["http_status"], found["response"], f"reconciler: {operation}")

    async def _refund(self, payment_id: str, refund_id: str) -> None:
        found = await self._answer(refund_psp_key(payment_id, refund_id))
        if found is None:
            return
        status, body = _outcome(found)
        await self._handlers.settle_refund(payment_id, refund_id, status, body, f"reconciler: refund:{refund_id}")

    async def _expire(self, tx: PaymentStatements) -> int:
        lapsed = await tx.lapsed_authorizations(self._batch)
        for payment in lapsed:
            await tx.mark_expired(payment.payment_id)
            await tx.record(
                payment.payment_id, PaymentStatus.AUTHORIZED, PaymentStatus.EXPIRED, "reconciler: authorization lapsed"
            )
        return len(lapsed)


def _outcome(found: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if found["state"] == "fenced":
        return 0, _NEVER_RECEIVED
    return int(found["http_status"]), dict(found["response"] or {})
