"""Notification settings, read from the environment once at start."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.events import BusConfig
from service_runtime.events.settings import bus_config
from service_runtime.settings import CommonSettings, EnvReader
from service_runtime.validation import EMAIL_PATTERN

DEFAULT_PORT = 50056
STREAM_NAME_PATTERN = r"[A-Za-z0-9._:-]{1,128}"


@dataclass(frozen=True)
class NotificationSettings:
    common: CommonSettings
    #: ORDER_EVENTS_STREAM: the topic (Redis stream under REDIS_KEY_PREFIX, or Kafka topic) of OrderEvents.
    events_stream: str
    #: GATEWAY_EVENTS_STREAM: the topic of the gateway's checkout events (CheckoutExpired).
    checkout_events_stream: str
    #: NOTIFICATION_CONSUMER_GROUP: the consumer group this service reads the topics with.
    consumer_group: str
    #: NOTIFICATION_CONSUMER_NAME: this replica's name in the group (default: host name and process id).
    consumer_name: str
    #: DEAD_LETTER_STREAM: where an event goes after its last failed send attempt, or a poison message at once.
    dead_letter_stream: str
    #: NOTIFICATION_MAX_ATTEMPTS: send attempts per notification before it is dead-lettered.
    max_attempts: int
    #: NOTIFICATION_RETRY_BASE_SECONDS, NOTIFICATION_RETRY_MAX_SECONDS: backoff between attempts (doubling).
    retry_base_seconds: float
    retry_max_seconds: float
    #: NOTIFICATION_SEND_LEASE_SECONDS: how long a recorded notification may wait for its first send before the
    #: retry worker of any replica takes it as abandoned (its consumer died) and sends it.
    lease_seconds: float
    #: EVENT_BUS ("redis" or "kafka"), KAFKA_BOOTSTRAP_SERVERS, EVENT_BUS_RECLAIM_IDLE_SECONDS.
    bus: BusConfig
    #: NOTIFICATION_SENDER: how EMAIL notifications go out: "log" (the default) or "smtp".
    sender: str
    #: SMTP_HOST, SMTP_PORT, SMTP_FROM: the SMTP server and sender address (NOTIFICATION_SENDER=smtp).
    smtp_host: str
    smtp_port: int
    smtp_from: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NotificationSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="notification", default_port=DEFAULT_PORT),
            events_stream=env.text("ORDER_EVENTS_STREAM", "shop.order.v1.events", pattern=STREAM_NAME_PATTERN),
            checkout_events_stream=env.text(
                "GATEWAY_EVENTS_STREAM", "shop.gateway.v1.events", pattern=STREAM_NAME_PATTERN
            ),
            consumer_group=env.text("NOTIFICATION_CONSUMER_GROUP", "notification", pattern=STREAM_NAME_PATTERN),
            consumer_name=env.text(
                "NOTIFICATION_CONSUMER_NAME", f"{socket.gethostname()}-{os.getpid()}"[:128], pattern=r".{1,128}"
            ),
            dead_letter_stream=env.text("DEAD_LETTER_STREAM", "shop.order.v1.events.dead", pattern=STREAM_NAME_PATTERN),
            max_attempts=env.integer("NOTIFICATION_MAX_ATTEMPTS", 5, minimum=1, maximum=20),
            retry_base_seconds=env.seconds("NOTIFICATION_RETRY_BASE_SECONDS", 1.0, minimum=0.01, maximum=3600.0),
            retry_max_seconds=env.seconds("NOTIFICATION_RETRY_MAX_SECONDS", 300.0, minimum=0.01, maximum=86_400.0),
            lease_seconds=env.seconds("NOTIFICATION_SEND_LEASE_SECONDS", 30.0, minimum=0.5, maximum=3600.0),
            bus=bus_config(env),
            sender=env.choice("NOTIFICATION_SENDER", "LOG", ("LOG", "SMTP")).lower(),
            smtp_host=env.text("SMTP_HOST", "127.0.0.1", pattern=r"[A-Za-z0-9.:_-]{1,253}"),
            smtp_port=env.integer("SMTP_PORT", 25, minimum=1, maximum=65535),
            smtp_from=env.text("SMTP_FROM", "orders@shop.example", pattern=EMAIL_PATTERN.pattern),
        )
