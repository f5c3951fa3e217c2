"""The event bus interface and the factory that picks an implementation from settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from service_runtime.keyspace import KeySpace


@dataclass(frozen=True)
class BusMessage:
    #: Ordering key (the order id): one key's messages are consumed in publication order.
    key: str
    #: The payload's type name (e.g. "OrderConfirmed"), readable without decoding `value`.
    type: str
    value: bytes
    #: Extra (name, value) pairs, e.g. a dead letter's ("reason", "..."): Redis entry fields "h:<name>",
    #: Kafka headers.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Delivery:
    message: BusMessage
    #: Where it was read: the Redis entry id ("1718000000000-0") or Kafka "<partition>-<offset>".
    id: str
    #: The topic it came from.
    topic: str
    #: Bus-specific handle for acknowledging (Redis entry id; Kafka (partition, offset)).
    handle: object = None


class Publisher(Protocol):
    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        """Publishes every message, in order; returns once the bus holds them all (raises otherwise)."""

    async def close(self) -> None: ...


class Consumer(Protocol):
    async def fetch(self, max_messages: int, timeout_seconds: float) -> list[Delivery]:
        """The next messages for this group member (and, on Redis, ones reclaimed from dead members)."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Marks deliveries handled: they will not be delivered to this group again."""

    async def close(self) -> None: ...


class EventBus(Protocol):
    async def ensure_topic(self, topic: str) -> None:
        """Creates the topic (stream) if it does not exist; consumers read only existing topics."""

    def publisher(self) -> Publisher: ...

    def consumer(self, topic: str, *, group: str, name: str) -> Consumer: ...

    async def close(self) -> None: ...


BUS_KINDS = ("redis", "kafka")


@dataclass(frozen=True)
class BusConfig:
    #: EVENT_BUS: "redis" (Redis Streams, the default) or "kafka".
    kind: str = "redis"
    #: KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port…] of the Kafka brokers (kind "kafka").
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    #: Redis: entries pending this long in the group are reclaimed by another member (XAUTOCLAIM).
    reclaim_idle_seconds: float = 30.0
    #: Redis: streams are trimmed to about this many entries (XADD MAXLEN ~).
    redis_max_length: int = 1_000_000
    #: Kafka: partitions of topics this service creates.
    kafka_partitions: int = 3


def open_bus(config: BusConfig, redis: Redis, keys: KeySpace) -> EventBus:
    """The configured bus; its publishers carry the trace context (service_runtime.events.tracing)."""
    from service_runtime.events.tracing import TracedBus

    bus: EventBus
    if config.kind == "redis":
        from service_runtime.events.redis_streams import RedisStreamsBus

        bus = RedisStreamsBus(redis, keys, config)
    elif config.kind == "kafka":
        from service_runtime.events.kafka import KafkaBus

        bus = KafkaBus(config)
    else:
        raise ValueError(f"unknown event bus {config.kind!r}; expected one of {BUS_KINDS}")
    return TracedBus(bus, "redis" if config.kind == "redis" else "kafka")
