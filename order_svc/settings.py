"""Order settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    #: ORDER_EVENTS_STREAM: the Redis stream (under REDIS_KEY_PREFIX) the outbox relay publishes OrderEvents to.
    events_stream: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OrderSettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="order", default_port=DEFAULT_PORT),
            inventory_target=env.target("INVENTORY_TARGET", "127.0.0.1:50052"),
            payment_target=env.target("PAYMENT_TARGET", "127.0.0.1:50053"),
            events_stream=env.text("ORDER_EVENTS_STREAM", "shop.order.v1.events", pattern=STREAM_NAME_PATTERN),
        )
