"""The checkout events' relay: the outbox table `checkout.checkout_events` (written in the transaction that
changed the checkout, e.g. CheckoutExpired when a reservation lapsed) to the event bus
(`service_runtime.events`, the Order issue's module: Redis Streams or Kafka), topic
GATEWAY_EVENTS_STREAM (`shop.gateway.v1.events`). At least once: consumers deduplicate by `eventId`.

As in the order service's relay, the bus call happens inside the transaction that holds the rows'
locks (a bus call, not an RPC to a service), before the rows are marked; a failure rolls back and the
next round publishes them again.
"""

from __future__ import annotations

import asyncio
import json
import logging

from gateway.repository import GatewayStatements
from service_runtime.events import BusMessage, EventBus, Publisher
from service_runtime.sql import UnitOfWork

log = logging.getLogger(__name__)


class CheckoutEventRelay:
    def __init__(
        self,
        work: UnitOfWork[GatewayStatements],
        bus: EventBus,
        topic: str,
        *,
        batch_size: int = 100,
        interval_seconds: float = 0.5,
    ) -> None:
        self._work = work
        self._bus = bus
        self._topic = topic
        self._batch_size = batch_size
        self._interval = interval_seconds
        self._publisher: Publisher | None = None

    async def publish_batch(self) -> int:
        if self._publisher is None:
            await self._bus.ensure_topic(self._topic)
            self._publisher = self._bus.publisher()
        async with self._work.transaction() as tx:
            batch = await tx.claim_unpublished_events(self._batch_size)
            if not batch:
                return 0
            await self._publisher.publish(
                self._topic,
                [
                    BusMessage(
                        key=checkout_id,
                        type=event_type,
                        value=json.dumps({"eventId": event_id, "eventType": event_type, **payload}).encode(),
                    )
                    for event_id, checkout_id, event_type, payload in batch
                ],
            )
            await tx.mark_events_published([event_id for event_id, _, _, _ in batch])
            return len(batch)

    async def run(self) -> None:
        try:
            while True:
                try:
                    published = await self.publish_batch()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("publishing checkout events failed; retrying", exc_info=True)
                    published = 0
                if published < self._batch_size:
                    await asyncio.sleep(self._interval)
        finally:
            await self._bus.close()
