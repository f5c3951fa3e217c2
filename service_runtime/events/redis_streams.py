"""The event bus on Redis Streams: one stream per topic (under the deployment's key prefix), consumer
groups, XACK to acknowledge and XAUTOCLAIM to take over what a dead group member left pending."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from service_runtime.events.bus import BusConfig, BusMessage, Delivery
from service_runtime.keyspace import KeySpace

#: The client's socket timeout is 2 s (service_runtime.keyspace): a blocking read must return before it.
MAX_BLOCK_SECONDS = 1.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _delivery(topic: str, entry_id: Any, fields: dict[Any, Any]) -> Delivery:
    headers = tuple((_text(name)[2:], _text(value)) for name, value in fields.items() if _text(name).startswith("h:"))
    message = BusMessage(
        key=_text(fields.get(b"key", b"")),
        type=_text(fields.get(b"type", b"")),
        value=bytes(fields.get(b"event", b"")),
        headers=headers,
    )
    entry = _text(entry_id)
    return Delivery(message=message, id=entry, topic=topic, handle=entry)


class RedisStreamsBus:
    def __init__(self, redis: Redis, keys: KeySpace, config: BusConfig) -> None:
        self._redis = redis
        self._keys = keys
        self._config = config

    def stream(self, topic: str) -> str:
        return self._keys.key(topic)

    async def ensure_topic(self, topic: str) -> None:
        """A stream exists once it has an entry or a group; consumers create their group (MKSTREAM)."""

    def publisher(self) -> RedisStreamsPublisher:
        return RedisStreamsPublisher(self)

    def consumer(self, topic: str, *, group: str, name: str) -> RedisStreamsConsumer:
        return RedisStreamsConsumer(self, topic, group, name)

    async def close(self) -> None:
        """The Redis client belongs to the runtime."""


class RedisStreamsPublisher:
    def __init__(self, bus: RedisStreamsBus) -> None:
        self._bus = bus

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        stream = self._bus.stream(topic)
        async with self._bus._redis.pipeline(transaction=False) as pipe:
            for message in messages:
                fields: dict[Any, Any] = {"event": message.value, "type": message.type, "key": message.key}
                fields.update({f"h:{name}": value for name, value in message.headers})
                pipe.xadd(
                    stream,
                    fields,
                    maxlen=self._bus._config.redis_max_length,
                    approximate=True,
                )
            await pipe.execute()

    async def close(self) -> None:
        pass


class RedisStreamsConsumer:
    def __init__(self, bus: RedisStreamsBus, topic: str, group: str, name: str) -> None:
        self._bus = bus
        self._topic = topic
        self._stream = bus.stream(topic)
        self._group = group
        self._name = name
        self._group_ready = False
        self._next_reclaim = 0.0
        #: Start id of the next XAUTOCLAIM scan ("0-0" starts over).
        self._reclaim_cursor = "0-0"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._bus._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis_errors.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def reclaim(self, max_messages: int) -> list[Delivery]:
        """Entries other members of the group left pending longer than the idle limit (XAUTOCLAIM)."""
        await self._ensure_group()
        idle_ms = int(self._bus._config.reclaim_idle_seconds * 1000)
        result = await self._bus._redis.xautoclaim(
            self._stream,
            self._group,
            self._name,
            min_idle_time=idle_ms,
            start_id=self._reclaim_cursor,
            count=max_messages,
        )
        cursor, entries = cast(tuple[Any, list[tuple[Any, dict[Any, Any]]]], (result[0], result[1]))
        self._reclaim_cursor = _text(cursor)
        return [_delivery(self._topic, entry_id, fields) for entry_id, fields in entries if fields]

    async def fetch(self, max_messages: int, timeout_seconds: float) -> list[Delivery]:
        await self._ensure_group()
        now = time.monotonic()
        if now >= self._next_reclaim:
            reclaimed = await self.reclaim(max_messages)
            if self._reclaim_cursor == "0-0":
                self._next_reclaim = now + max(0.05, self._bus._config.reclaim_idle_seconds / 4)
            if reclaimed:
                return reclaimed
        block_ms = max(1, int(min(timeout_seconds, MAX_BLOCK_SECONDS) * 1000))
        try:
            result = await self._bus._redis.xreadgroup(
                self._group, self._name, {self._stream: ">"}, count=max_messages, block=block_ms
            )
        except redis_errors.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._group_ready = False  # the stream was deleted under us: recreate the group next time
            return []
        deliveries: list[Delivery] = []
        streams = cast(list[tuple[Any, list[tuple[Any, dict[Any, Any]]]]], result or [])
        for _stream, entries in streams:
            deliveries.extend(_delivery(self._topic, entry_id, fields) for entry_id, fields in entries)
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._bus._redis.xack(self._stream, self._group, *[str(d.handle) for d in deliveries])

    async def close(self) -> None:
        pass
