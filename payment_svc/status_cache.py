"""Redis write-through cache of payments in a final state (VOIDED, REFUNDED, FAILED, EXPIRED), for GetPayment.

A payment in a final state never changes again, so an entry can never be stale; a payment that can still
change is never cached and is always read from PostgreSQL, the truth. Entries are the serialized
`shop.payment.v1.Payment` the RPCs answer with, written when an RPC returns a final payment. Redis being
down only costs speed: every operation degrades to a miss and is logged (payment declares Redis OPTIONAL).
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service_runtime.keyspace import KeySpace

log = logging.getLogger(__name__)


class PaymentStatusCache:
    def __init__(self, redis: Redis, keys: KeySpace, ttl_seconds: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    def _key(self, payment_id: str) -> str:
        return self._keys.key("payment", payment_id)

    async def get(self, payment_id: str) -> bytes | None:
        try:
            raw = await self._redis.get(self._key(payment_id))
        except RedisError as error:
            log.warning("payment cache read failed: %s", error)
            return None
        if raw is None:
            return None
        return raw.encode() if isinstance(raw, str) else bytes(raw)

    async def put(self, payment_id: str, serialized: bytes) -> None:
        try:
            await self._redis.set(self._key(payment_id), serialized, px=self._ttl_ms)
        except RedisError as error:
            log.warning("payment cache write failed: %s", error)
