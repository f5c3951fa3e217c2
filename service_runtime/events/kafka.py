"""The event bus on Kafka (aiokafka): one topic per topic name, messages keyed (the key picks the
partition, so one key's messages stay in order), the type in a header, consumer groups with manual
offset commits. A dead member's partitions are rebalanced to the live ones, which resume from the last
committed offset: that is Kafka's reclaim.

Tested against Tansu (a Kafka-protocol broker) started by the test harness: that proves the Kafka
protocol path of this adapter, not Apache Kafka's own behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service_runtime.events.bus import BusConfig, BusMessage, Delivery


class KafkaBus:
    def __init__(self, config: BusConfig) -> None:
        self._config = config
        self._known_topics: set[str] = set()

    async def ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self._config.kafka_bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            if topic not in existing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(topic, num_partitions=self._config.kafka_partitions, replication_factor=1)]
                    )
        finally:
            await admin.close()
        self._known_topics.add(topic)

    def publisher(self) -> KafkaPublisher:
        return KafkaPublisher(self._config)

    def consumer(self, topic: str, *, group: str, name: str) -> KafkaConsumer:
        return KafkaConsumer(self._config, topic, group, name)

    async def close(self) -> None:
        pass


class KafkaPublisher:
    def __init__(self, config: BusConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self._config.kafka_bootstrap_servers, acks="all", linger_ms=0)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        producer = await self._started()
        futures = [
            await producer.send(
                topic,
                value=message.value,
                key=message.key.encode(),
                headers=[("type", message.type.encode()), *((k, v.encode()) for k, v in message.headers)],
            )
            for message in messages
        ]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class KafkaConsumer:
    def __init__(self, config: BusConfig, topic: str, group: str, name: str) -> None:
        self._config = config
        self._topic = topic
        self._group = group
        self._name = name
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                self._topic,
                bootstrap_servers=self._config.kafka_bootstrap_servers,
                group_id=self._group,
                client_id=self._name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=6000,
                heartbeat_interval_ms=500,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def fetch(self, max_messages: int, timeout_seconds: float) -> list[Delivery]:
        consumer = await self._started()
        batches = await consumer.getmany(timeout_ms=int(timeout_seconds * 1000), max_records=max_messages)
        deliveries: list[Delivery] = []
        for partition, records in batches.items():
            for record in records:
                headers = [(name, bytes(value).decode()) for name, value in record.headers or ()]
                message = BusMessage(
                    key=(record.key or b"").decode(),
                    type=next((value for name, value in headers if name == "type"), ""),
                    value=bytes(record.value or b""),
                    headers=tuple((name, value) for name, value in headers if name != "type"),
                )
                deliveries.append(
                    Delivery(
                        message=message,
                        id=f"{partition.partition}-{record.offset}",
                        topic=self._topic,
                        handle=(partition, record.offset),
                    )
                )
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Commits, per partition, past the highest acknowledged offset (Kafka acknowledges a prefix)."""
        if not deliveries or self._consumer is None:
            return
        offsets: dict[TopicPartition, int] = {}
        for delivery in deliveries:
            partition, offset = cast(tuple[TopicPartition, int], delivery.handle)
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        await self._consumer.commit(offsets)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
