"""Expires reservations past their expiry, in every replica, each row exactly once."""

from __future__ import annotations

import asyncio
import logging

from inventory_svc.handlers import InventoryHandlers

log = logging.getLogger(__name__)


class ReservationSweeper:
    def __init__(self, handlers: InventoryHandlers, *, interval_seconds: float, batch_size: int) -> None:
        self._handlers = handlers
        self._interval = interval_seconds
        self._batch_size = batch_size

    async def sweep_once(self) -> int:
        """Expires everything due now, a batch per transaction; returns how many reservations expired."""
        total = 0
        while True:
            expired = await self._handlers.expire_due(self._batch_size)
            total += expired
            if expired < self._batch_size:
                return total

    async def run(self) -> None:
        while True:
            expired = await self.sweep_once()
            if expired:
                log.info("expired %d reservation(s)", expired)
            await asyncio.sleep(self._interval)
