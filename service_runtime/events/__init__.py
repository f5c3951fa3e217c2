"""One small publisher/consumer interface over two event buses: Redis Streams (the default) and Kafka.

    bus = open_bus(BusConfig(kind="redis", ...), redis, keys)
    await bus.ensure_topic("shop.order.v1.events")
    publisher = bus.publisher()
    await publisher.publish("shop.order.v1.events", [BusMessage(key=order_id, type="OrderConfirmed", value=b"...")])
    consumer = bus.consumer("shop.order.v1.events", group="notification", name="notification-1")
    for delivery in await consumer.fetch(max_messages=100, timeout_seconds=1.0):
        ...handle delivery.message, durably...
    await consumer.ack(deliveries)

Delivery is at least once on both: a message is redelivered until acknowledged, so consumers deduplicate
(an inbox keyed by the event's id). A message's `key` keeps order: one Redis stream is totally ordered;
on Kafka the key picks the partition, and a partition is ordered.

What a dead consumer leaves behind is recovered by each bus's own mechanism: on Redis, entries pending
longer than `reclaim_idle_seconds` in the group are taken over with XAUTOCLAIM by any live consumer of the
group; on Kafka, the group rebalances the dead member's partitions and the new owner resumes from the
last committed offset.
"""

from service_runtime.events.bus import BusConfig, BusMessage, Consumer, Delivery, EventBus, Publisher, open_bus

__all__ = ["BusConfig", "BusMessage", "Consumer", "Delivery", "EventBus", "Publisher", "open_bus"]
