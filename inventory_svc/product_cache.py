"""Read-through cache of products in Redis, for GetProduct and BatchGetProducts only.

Entries live `ttl_seconds`. They are deleted after a catalogue change (upsert) or a stock adjustment, so
a new price is seen at once (within the TTL at worst, if a reader stored the old row just after the
delete); stock figures changed by reservations, sales and returns may show up to the TTL late, as the
contract says. Reservations and availability checks never read this cache. Redis being down only costs
speed: every operation here degrades to "miss" and is logged (inventory declares Redis OPTIONAL, so
its health stays SERVING).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory_svc.domain.model import Product
from service_runtime.keyspace import KeySpace
from service_runtime.values import Money

log = logging.getLogger(__name__)


def _encode(product: Product) -> str:
    return json.dumps(
        {
            "sku": product.sku,
            "name": product.name,
            "currency_code": product.price.currency_code,
            "amount_minor": product.price.amount_minor,
            "weight_grams": product.weight_grams,
            "stock_on_hand": product.stock_on_hand,
            "reserved": product.reserved,
            "updated_at": product.updated_at.isoformat(),
            "discontinued_at": product.discontinued_at.isoformat() if product.discontinued_at else None,
        },
        separators=(",", ":"),
    )


def _decode(raw: str | bytes) -> Product:
    data = json.loads(raw)
    return Product(
        sku=data["sku"],
        name=data["name"],
        price=Money(data["currency_code"], int(data["amount_minor"])),
        weight_grams=data["weight_grams"],
        stock_on_hand=data["stock_on_hand"],
        reserved=data["reserved"],
        updated_at=datetime.fromisoformat(data["updated_at"]),
        discontinued_at=datetime.fromisoformat(data["discontinued_at"]) if data.get("discontinued_at") else None,
    )


class ProductCache:
    def __init__(self, redis: Redis, keys: KeySpace, ttl_seconds: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    def _key(self, sku: str) -> str:
        return self._keys.key("product", sku)

    async def get_many(self, skus: Sequence[str]) -> dict[str, Product]:
        try:
            values = await self._redis.mget([self._key(sku) for sku in skus])
        except RedisError as error:
            log.warning("product cache read failed: %s", error)
            return {}
        found = {}
        for sku, raw in zip(skus, values, strict=True):
            if raw is not None:
                found[sku] = _decode(raw)
        return found

    async def put_many(self, products: Iterable[Product]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for product in products:
                    pipe.set(self._key(product.sku), _encode(product), px=self._ttl_ms)
                await pipe.execute()
        except RedisError as error:
            log.warning("product cache write failed: %s", error)

    async def invalidate(self, skus: Iterable[str]) -> None:
        keys = [self._key(sku) for sku in set(skus)]
        if not keys:
            return
        try:
            await self._redis.delete(*keys)
        except RedisError as error:
            log.warning("product cache invalidation failed (entries expire within the TTL): %s", error)
