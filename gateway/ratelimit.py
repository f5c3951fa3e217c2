"""Per-user token buckets in Redis: one Lua script takes a token atomically (refill by elapsed time,
then take), so concurrent replicas share one bucket per user and bucket name without races.

An empty bucket is RESOURCE_EXHAUSTED (RATE_LIMITED, metadata `bucket`) with a RetryInfo saying when
the next token arrives. The clock is Redis's own (`TIME`), so replicas' clocks do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from service_runtime import errors
from service_runtime.keyspace import KeySpace

# KEYS[1] bucket; ARGV: capacity, refill per second. Returns {allowed (0/1), milliseconds until a token}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {allowed, wait_ms}
"""


@dataclass(frozen=True)
class Bucket:
    name: str
    #: Most requests in a burst.
    capacity: int
    #: Tokens added per second.
    refill_per_second: float


class RateLimiter:
    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_TAKE)

    async def take(self, bucket: Bucket, user_id: str) -> None:
        """Takes one token of `bucket` for `user_id`, or raises RESOURCE_EXHAUSTED (RATE_LIMITED)."""
        allowed, wait_ms = await self._script(
            keys=[self._keys.key("ratelimit", bucket.name, user_id)],
            args=[bucket.capacity, bucket.refill_per_second],
        )
        if int(allowed) != 1:
            raise errors.ResourceExhausted(
                f"too many {bucket.name} requests; retry later",
                reason="RATE_LIMITED",
                metadata={"bucket": bucket.name},
                retry_after_seconds=max(0.001, int(wait_ms) / 1000),
            )
