"""Abandonment sweeper: records expired carts in PostgreSQL before Redis drops them.

Runs in every replica. Each pass leases a batch of expired cart ids from the expiry index (an atomic
script pushes each leased id's score into the future, so other replicas skip it); each cart is then
claimed (`abandoning`) by a script that only takes a cart still expired, recorded ABANDONED with
`ON CONFLICT DO NOTHING`, and dropped from Redis. A replica that dies mid-way leaves its lease to run
out; the next one to take the id finds the claim or the record and finishes the job, never writing a
cart twice. Keyspace notifications are not used: they are lost while no subscriber listens.
"""

from __future__ import annotations

import asyncio
import logging

from cart_svc.handlers import CartHandlers
from cart_svc.store import CartStore

log = logging.getLogger(__name__)


class AbandonmentSweeper:
    def __init__(
        self,
        store: CartStore,
        handlers: CartHandlers,
        *,
        interval_seconds: float,
        batch_size: int,
        lease_seconds: float,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._lease = lease_seconds

    async def sweep_once(self) -> int:
        """One pass; returns how many carts it recorded as ABANDONED."""
        recorded = 0
        for cart_id in await self._store.lease_expired(self._batch_size, self._lease):
            if await self._handlers.abandon(cart_id):
                recorded += 1
        return recorded

    async def run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next pass retries; a lease that ran out is taken again
                log.exception("abandonment sweep failed")
            await asyncio.sleep(self._interval)
