"""Read-only queries: ListPayments (GetPayment shares `PaymentHandlers.find`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from payment_svc.domain import Payment
from payment_svc.handlers import Work
from payment_svc.repository import PaymentStatements
from service_runtime.errors import Violations
from service_runtime.pagination import PageTokens, page_size
from service_runtime.validation import check_id


@dataclass(frozen=True)
class PaymentPage:
    payments: list[Payment]
    next_page_token: str


class PaymentViews:
    def __init__(self, work: Work, tokens: PageTokens) -> None:
        self._work = work
        self._tokens = tokens

    async def list_payments(self, checkout_id: str, requested_size: int, page_token: str) -> PaymentPage:
        v = Violations()
        check_id(v, checkout_id, "checkout_id")
        v.raise_if_any()
        size = page_size(requested_size)
        query = {"checkout_id": checkout_id}
        position = self._tokens.read(page_token, query)
        after = (datetime.fromisoformat(position[0]), str(position[1])) if position else None

        async def work(tx: PaymentStatements) -> list[Payment]:
            rows = await tx.list_payments(checkout_id, after, size + 1)
            return [await tx.with_details(payment) for payment in rows]

        payments = await self._work.read(work)
        token = ""
        if len(payments) > size:
            payments = payments[:size]
            last = payments[-1]
            token = self._tokens.issue([last.created_at.isoformat(), last.payment_id], query)
        return PaymentPage(payments, token)
