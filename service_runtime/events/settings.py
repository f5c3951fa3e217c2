"""The event bus settings every service that publishes or consumes events reads the same way."""

from __future__ import annotations

from service_runtime.events.bus import BUS_KINDS, BusConfig
from service_runtime.settings import EnvReader


def bus_config(env: EnvReader) -> BusConfig:
    """EVENT_BUS ("redis", the default, or "kafka"), KAFKA_BOOTSTRAP_SERVERS, EVENT_BUS_RECLAIM_IDLE_SECONDS
    (Redis: how long an entry stays pending with a member before another takes it over)."""
    return BusConfig(
        kind=env.choice("EVENT_BUS", "REDIS", tuple(kind.upper() for kind in BUS_KINDS)).lower(),
        kafka_bootstrap_servers=env.text(
            "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", pattern=r"[A-Za-z0-9.:_-]+(,[A-Za-z0-9.:_-]+)*"
        ),
        reclaim_idle_seconds=env.seconds("EVENT_BUS_RECLAIM_IDLE_SECONDS", 30.0, minimum=0.05, maximum=3600.0),
    )
