"""The outbox relay: publishes OrderEvents from the outbox table to the event bus, at least once, in
each order's sequence, and prunes what was published long enough ago.

Safe in every replica at once. One statement (`publish_batch` in queries.sql) claims a batch with
`FOR UPDATE SKIP LOCKED` and stamps it published; the transaction stays open while the batch is
published and commits after the bus holds it, so replicas do not publish the same rows in normal
operation. A relay that dies (or a publish that fails) before the commit leaves the rows unpublished:
they are published again (consumers deduplicate on event_id).

Per-order order: of an order's events, a batch publishes only the run that starts at the order's lowest
unpublished sequence and has no gap; a row another replica holds (skipped by SKIP LOCKED) holds back the
later events of its order until it is published.

One batch costs three round trips to PostgreSQL (BEGIN, the statement, COMMIT) and one to the bus.
"""

from __future__ import annotations

import asyncio
import logging
import time

from order_svc.repository import OrderStatements
from service_runtime import metrics
from service_runtime.events import BusMessage, EventBus, Publisher
from service_runtime.sql import UnitOfWork
from shop.order.v1 import events_pb2 as events

log = logging.getLogger(__name__)


def record_lag(topic: str, published: list[events.OrderEvent]) -> None:
    """The outbox lag: the age of the oldest event found unpublished at this poll (0 when none was)."""
    if metrics.enabled():
        oldest = min((event.occur_time.ToMilliseconds() for event in published), default=None)
        lag = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        metrics.instruments().outbox_lag.set(lag, {"messaging.destination.name": topic})


class OutboxRelay:
    def __init__(
        self,
        work: UnitOfWork[OrderStatements],
        bus: EventBus,
        topic: str,
        *,
        batch_size: int = 500,
        idle_seconds: float = 0.05,
        retention_seconds: float = 86_400.0,
        prune_interval_seconds: float = 60.0,
        helpers: int = 1,
    ) -> None:
        self._work = work
        self._bus = bus
        self._topic = topic
        self._batch_size = batch_size
        self._idle = idle_seconds
        self._retention = retention_seconds
        self._prune_interval = prune_interval_seconds
        self._publisher: Publisher | None = None
        self._next_prune = 0.0
        #: Extra publishing loops while a backlog lasts (see `run`).
        self._helpers = helpers

    async def publish_batch(self) -> int:
        """Publishes one batch and marks it published; returns how many events went out."""
        if self._publisher is None:
            await self._bus.ensure_topic(self._topic)
            self._publisher = self._bus.publisher()
        publisher = self._publisher

        # Publishing happens inside the transaction that holds the rows' locks and stamps: a bus call, not an
        # RPC to a service, and the stamps must not commit before the bus holds the events. Not retried as
        # a unit: a failure rolls back and the next round publishes the rows again.
        async with self._work.transaction() as tx:
            ready = await tx.publish_batch(self._batch_size)
            if not ready:
                record_lag(self._topic, [])
                return 0
            stored = [events.OrderEvent.FromString(e.payload) for e in ready]
            record_lag(self._topic, stored)
            await publisher.publish(
                self._topic,
                [
                    # The trace context stored with the event: its publish span joins the request's trace.
                    BusMessage(
                        key=e.order_id,
                        type=e.event_type,
                        value=e.payload,
                        headers=(("traceparent", event.traceparent), ("tracestate", event.tracestate)),
                    )
                    for e, event in zip(ready, stored, strict=True)
                ],
            )
            return len(ready)

    async def _drain(self, backlog: asyncio.Event) -> None:
        while True:
            await backlog.wait()
            backlog.clear()
            try:
                while await self.publish_batch() == self._batch_size:
                    pass
            except Exception:  # the main loop meets the same failure and handles it; wait for the next backlog
                log.warning("an outbox relay helper's batch failed", exc_info=True)

    async def prune(self) -> int:
        """Deletes events published longer ago than the retention, a batch per statement."""
        total = 0
        while True:
            deleted = await self._work.run(lambda tx: tx.prune_published(self._retention, 5000))
            total += deleted
            if deleted < 5000:
                return total

    async def run(self) -> None:
        # While a backlog lasts (full batches), `helpers` more loops publish alongside this one: the next
        # batch is claimed and decoded while the last is on its way to the bus and committing. They are
        # replicas in one process (SKIP LOCKED keeps them apart, the run rule keeps each order in sequence).
        backlog = asyncio.Event()
        helpers = [asyncio.create_task(self._drain(backlog)) for _ in range(self._helpers)]
        try:
            while True:
                published = await self.publish_batch()
                if published == self._batch_size:
                    backlog.set()
                now = time.monotonic()
                if now >= self._next_prune:
                    pruned = await self.prune()
                    if pruned:
                        log.info("pruned %d published outbox event(s)", pruned)
                    self._next_prune = now + self._prune_interval
                if published < self._batch_size:
                    await asyncio.sleep(self._idle)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self._publisher is not None:
                await self._publisher.close()
                self._publisher = None
