"""Expires reservations past their expiry, in every replica, each row exactly once.

Not an RPC use case: a background worker the composition root hands to the runtime. Safe to run in
every replica at once: each batch claims different rows (`FOR UPDATE SKIP LOCKED`) and a row leaves
ACTIVE once. Four statements per batch, whatever its size; product rows are locked in SKU order.
"""

from __future__ import annotations

import asyncio
import logging

from inventory_svc.repository import InventoryStatements
from service_runtime.sql import UnitOfWork

log = logging.getLogger(__name__)


class ReservationSweeper:
    def __init__(self, work: UnitOfWork[InventoryStatements], *, interval_seconds: float, batch_size: int) -> None:
        self._work = work
        self._interval = interval_seconds
        self._batch_size = batch_size

    async def expire_batch(self) -> int:
        """Expires up to one batch of due reservations and gives their units back; returns how many."""

        async def work(tx: InventoryStatements) -> int:
            expired = await tx.expire_due(self._batch_size)
            if expired:
                await tx.lock_products_of_reservations(expired)
                await tx.give_back_reserved_lines(expired)
            return len(expired)

        return await self._work.run(work)

    async def sweep_once(self) -> int:
        """Expires everything due now, a batch per transaction; returns how many reservations expired."""
        total = 0
        while True:
            expired = await self.expire_batch()
            total += expired
            if expired < self._batch_size:
                return total

    async def run(self) -> None:
        while True:
            expired = await self.sweep_once()
            if expired:
                log.info("expired %d reservation(s)", expired)
            await asyncio.sleep(self._interval)
