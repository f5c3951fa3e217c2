"""Order settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.events import BusConfig
from service_runtime.events.settings import bus_config
from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50054
STREAM_NAME_PATTERN = r"[A-Za-z0-9._:-]{1,128}"


@dataclass(frozen=True)
class OrderSettings:
    common: CommonSettings
    #: INVENTORY_TARGET: the inventory service, to give stock back when an order is cancelled.
    inventory_target: str
    #: PAYMENT_TARGET: the payment service, to refund or void when an order is cancelled.
    payment_target: str
    #: ORDER_EVENTS_STREAM: the topic (Redis stream under REDIS_KEY_PREFIX, or Kafka topic) of OrderEvents.
    events_stream: str
    #: EVENT_BUS ("redis" or "kafka"), KAFKA_BOOTSTRAP_SERVERS: where the relay publishes.
    bus: BusConfig
    #: ORDER_OUTBOX_RETENTION_SECONDS: published outbox rows are deleted after this long.
    outbox_retention_seconds: float
    #: ORDER_RELAY_BATCH_SIZE: outbox rows published per transaction.
    relay_batch_size: int
    #: ORDER_RELAY_ENABLED: "true" (the default) runs the outbox relay in this process; "false" leaves it to
    #: other replicas (or, in tests, to a relay the test drives).
    relay_enabled: bool
    #: ORDER_COMPENSATION_LEASE_SECONDS: how long a claimed cancellation is the claimer's before another
    #: worker may take it (a worker killed mid-call is replaced after this).
    compensation_lease_seconds: float
    #: ORDER_COMPENSATION_BACKOFF_MAX_SECONDS: the longest pause between compensation attempts.
    compensation_backoff_max_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OrderSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="order", default_port=DEFAULT_PORT),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
            payment_target=env.target("PAYMENT_TARGET", "127.0.0.1:50053"),
            events_stream=env.text("ORDER_EVENTS_STREAM", "shop.order.v1.events", pattern=STREAM_NAME_PATTERN),
            bus=bus_config(env),
            outbox_retention_seconds=env.seconds(
                "ORDER_OUTBOX_RETENTION_SECONDS", 86_400.0, minimum=0.0, maximum=90 * 86_400.0
            ),
            relay_batch_size=env.integer("ORDER_RELAY_BATCH_SIZE", 500, minimum=1, maximum=10_000),
            relay_enabled=env.choice("ORDER_RELAY_ENABLED", "TRUE", ("TRUE", "FALSE")) == "TRUE",
            compensation_lease_seconds=env.seconds(
                "ORDER_COMPENSATION_LEASE_SECONDS", 30.0, minimum=0.1, maximum=3600.0
            ),
            compensation_backoff_max_seconds=env.seconds(
                "ORDER_COMPENSATION_BACKOFF_MAX_SECONDS", 60.0, minimum=0.1, maximum=3600.0
            ),
        )
