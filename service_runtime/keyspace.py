"""Redis client construction and key naming.

Every key a service writes goes through a `KeySpace`, so one Redis can hold many environments (or many
isolated test runs) side by side: `KeySpace("shop:").child("inventory").key("product", sku)` is
`shop:inventory:product:<sku>`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis


def create_redis(redis_url: str) -> redis.Redis:
    """A lazily connecting client; nothing touches the network until the first command."""
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        health_check_interval=30,
        retry_on_timeout=False,
    )


@dataclass(frozen=True)
class KeySpace:
    prefix: str

    def child(self, name: str) -> KeySpace:
        return KeySpace(f"{self.prefix}{name}:")

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)
