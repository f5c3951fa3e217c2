"""Notification settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50056
STREAM_NAME_PATTERN = r"[A-Za-z0-9._:-]{1,128}"


@dataclass(frozen=True)
class NotificationSettings:
    common: CommonSettings
    #: ORDER_EVENTS_STREAM: the Redis stream (under REDIS_KEY_PREFIX) of OrderEvents to consume.
    events_stream: str
    #: NOTIFICATION_CONSUMER_GROUP: the consumer group this service reads the stream with.
    consumer_group: str
    #: DEAD_LETTER_STREAM: where an event goes after its last failed send attempt.
    dead_letter_stream: str
    #: NOTIFICATION_MAX_ATTEMPTS: send attempts per notification before it is dead-lettered.
    max_attempts: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> NotificationSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="notification", default_port=DEFAULT_PORT),
            events_stream=env.text("ORDER_EVENTS_STREAM", "shop.order.v1.events", pattern=STREAM_NAME_PATTERN),
            consumer_group=env.text("NOTIFICATION_CONSUMER_GROUP", "notification", pattern=STREAM_NAME_PATTERN),
            dead_letter_stream=env.text("DEAD_LETTER_STREAM", "shop.order.v1.events.dead", pattern=STREAM_NAME_PATTERN),
            max_attempts=env.integer("NOTIFICATION_MAX_ATTEMPTS", 5, minimum=1, maximum=20),
        )
