"""Active carts in Redis: every change is one Lua script, so it is atomic and one round trip.

Keys (under the service's key space, e.g. `shop:cart:`):

    cart:{<id>}          hash   owner, user_id, session_id, status, created_ms, updated_ms, expire_ms,
                                currency, seq (last line position), k:<idempotency key> → "<sku>|<qty>"
    cart:{<id>}:items    hash   <sku> → "<qty>|<position>|<added price minor>|<added ms>|<updated ms>|<name>"
    owner:<owner>        string the owner's ACTIVE cart id ("user:<sub>" or "session:<sid>")
    expiry               zset   cart id → expire_ms: the expiry index the abandonment sweeper reads

The braces make a cart's two keys one Redis Cluster hash slot; the scripts also touch `owner:` and
`expiry`, so the store needs a single Redis (or a cluster with one shard), as the service has today.

**Two clocks.** `expire_ms` is the contract's `expire_time` (last call that named the cart + TTL): from
then on the cart counts as ABANDONED and no script changes it. Redis keeps the keys `grace` longer
(the keys' own PEXPIRE), so the sweeper always finds an expired cart and writes it to PostgreSQL before
Redis drops it; keyspace notifications (lossy) are not used.

**Atomicity.** Each script checks owner, status and expiry, applies the rule that must hold under
concurrency (line limit, the 99-unit cap, one currency, idempotency keys), writes both hashes, and
slides the TTL of every key of the cart, all inside Redis' single-threaded execution: concurrent
AddItems never lose an update and the two hashes never disagree. Rules that need no atomicity
(request validation, pricing) stay in Python.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from cart_svc.domain import MAX_LINE_QUANTITY, CartStatus, StoredCart, StoredLine
from cart_svc.memo import CART_LINES, LINES, Memo
from cart_svc.scripting import Script, ScriptRunner
from service_runtime.keyspace import KeySpace
from service_runtime.values import Money

# Shared head of every script that acts on one cart. KEYS[1] cart hash, KEYS[2] items hash,
# KEYS[3] expiry zset. ARGV[1] now (ms), ARGV[2] ttl (ms), ARGV[3] key lifetime (ms, ttl + grace),
# ARGV[4] owner the caller may act for ('' = a trusted caller: any owner), ARGV[5] key prefix.
_HEAD = """
local cart, items, expiry = KEYS[1], KEYS[2], KEYS[3]
local now, ttl, keep, owner, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local head = redis.call('HMGET', cart, 'owner', 'status', 'expire_ms', 'currency', 'cart_id')
if not head[1] or (owner ~= '' and head[1] ~= owner) then return {'missing'} end
if head[2] ~= 'active' then return {'status', head[2]} end
if tonumber(head[3]) <= now then return {'expired'} end
local function touch()
  local expire = now + ttl
  redis.call('HSET', cart, 'expire_ms', expire)
  redis.call('PEXPIRE', cart, keep)
  redis.call('PEXPIRE', items, keep)
  redis.call('PEXPIRE', prefix .. 'owner:' .. head[1], keep)
  redis.call('ZADD', expiry, expire, head[5])
end
local function state(outcome, extra)
  local fields = redis.call('HMGET', cart, 'user_id', 'session_id', 'status', 'created_ms', 'updated_ms',
    'expire_ms', 'currency')
  return {outcome, extra or '', fields, redis.call('HGETALL', items)}
end
local function changed()
  redis.call('HSET', cart, 'updated_ms', now)
end
"""

_READ = (
    _HEAD
    + """
touch()
return state('ok')
"""
)

# ARGV[6] sku, [7] quantity, [8] max lines, [9] price minor, [10] currency, [11] name, [12] idempotency key.
_ADD = (
    _HEAD
    + """
local sku, quantity, max_lines = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local fingerprint = sku .. '|' .. quantity
local key_field = 'k:' .. ARGV[12]
local earlier = redis.call('HGET', cart, key_field)
if earlier then
  if earlier ~= fingerprint then return {'key_reused'} end
  touch()
  return state('replayed')
end
local line = redis.call('HGET', items, sku)
if line then
  local held = tonumber(string.match(line, '^(%d+)|'))
  if held + quantity > """
    + str(MAX_LINE_QUANTITY)
    + """ then return {'line_quantity', tostring("""
    + str(MAX_LINE_QUANTITY)
    + """ - held)} end
  local position, added_price, added_ms, name = string.match(line, '^%d+|(%d+)|(%d+)|(%d+)|%d+|(.*)$')
  redis.call('HSET', items, sku, (held + quantity) .. '|' .. position .. '|' .. added_price .. '|' .. added_ms
    .. '|' .. now .. '|' .. name)
else
  local currency = head[4]
  if currency ~= '' and currency ~= ARGV[10] then return {'currency', currency} end
  if redis.call('HLEN', items) >= max_lines then return {'line_limit'} end
  local position = redis.call('HINCRBY', cart, 'seq', 1)
  redis.call('HSET', items, sku, quantity .. '|' .. position .. '|' .. ARGV[9] .. '|' .. now .. '|' .. now
    .. '|' .. ARGV[11])
  if currency == '' then redis.call('HSET', cart, 'currency', ARGV[10]) end
end
redis.call('HSET', cart, key_field, fingerprint)
changed()
touch()
return state('ok')
"""
)

# ARGV[6] sku, [7] quantity (0 removes), [8] 'set' or 'remove' (remove: a missing line is not an error).
_SET = (
    _HEAD
    + """
local sku, quantity, mode = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local line = redis.call('HGET', items, sku)
if not line then
  if mode == 'set' then return {'no_line'} end
  touch()
  return state('ok', '0')
end
local removed = '0'
if quantity == 0 then
  redis.call('HDEL', items, sku)
  removed = '1'
  if redis.call('HLEN', items) == 0 then redis.call('HSET', cart, 'currency', '') end
else
  local position, added_price, added_ms, name = string.match(line, '^%d+|(%d+)|(%d+)|(%d+)|%d+|(.*)$')
  redis.call('HSET', items, sku, quantity .. '|' .. position .. '|' .. added_price .. '|' .. added_ms .. '|'
    .. now .. '|' .. name)
end
changed()
touch()
return state('ok', removed)
"""
)

_CLEAR = (
    _HEAD
    + """
local count = redis.call('HLEN', items)
if count > 0 then
  redis.call('DEL', items)
  redis.call('HSET', cart, 'currency', '')
  changed()
end
touch()
return state('ok', tostring(count))
"""
)

# KEYS[1] cart, KEYS[2] items, KEYS[3] expiry, KEYS[4] owner index. ARGV[1] now, [2] ttl, [3] keep,
# [4] new cart id, [5] owner, [6] user id, [7] session id.
_CREATE = """
local cart_prefix, expiry, owner_key = KEYS[1], KEYS[3], KEYS[4]
local now, ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local existing = redis.call('GET', owner_key)
if existing then
  local cart = cart_prefix .. '{' .. existing .. '}'
  local head = redis.call('HMGET', cart, 'status', 'expire_ms')
  if head[1] == 'active' and tonumber(head[2]) > now then return {'existing', existing} end
end
local id = ARGV[4]
local cart = cart_prefix .. '{' .. id .. '}'
redis.call('HSET', cart, 'cart_id', id, 'owner', ARGV[5], 'user_id', ARGV[6], 'session_id', ARGV[7],
  'status', 'active', 'created_ms', now, 'updated_ms', now, 'expire_ms', now + ttl, 'currency', '', 'seq', 0)
redis.call('PEXPIRE', cart, keep)
redis.call('SET', owner_key, id, 'PX', keep)
redis.call('ZADD', expiry, now + ttl, id)
return {'created', id}
"""

# Claims a cart for leaving ACTIVE (conversion, merge source, abandonment). ARGV[6] the new status
# ('converting:<checkout>', 'merging:user:<id>', 'abandoning'), ARGV[7] which carts: 'any', 'live'
# (not expired) or 'expired' (the sweeper). A cart already claimed the same way is returned again (a
# retry after a crash or a lost reply).
_CLAIM = """
local cart, items, expiry = KEYS[1], KEYS[2], KEYS[3]
local now, keep, owner, claim, which = tonumber(ARGV[1]), tonumber(ARGV[3]), ARGV[4], ARGV[6], ARGV[7]
local head = redis.call('HMGET', cart, 'owner', 'status', 'expire_ms')
if not head[1] or (owner ~= '' and head[1] ~= owner) then return {'missing'} end
if head[2] ~= 'active' and head[2] ~= claim then return {'status', head[2]} end
if head[2] == 'active' then
  local expired = tonumber(head[3]) <= now
  if expired and which == 'live' then return {'expired'} end
  if not expired and which == 'expired' then return {'live'} end
  redis.call('HSET', cart, 'status', claim)
end
redis.call('PEXPIRE', cart, keep)
redis.call('PEXPIRE', items, keep)
local fields = redis.call('HMGET', cart, 'user_id', 'session_id', 'status', 'created_ms', 'updated_ms',
  'expire_ms', 'currency')
return {'ok', head[2], fields, redis.call('HGETALL', items)}
"""

# Removes a cart that PostgreSQL now holds. KEYS as _CREATE; ARGV[1] cart id.
_DROP = """
local cart = KEYS[1] .. '{' .. ARGV[1] .. '}'
local owner = redis.call('HGET', cart, 'owner')
if owner and redis.call('GET', KEYS[4] .. owner) == ARGV[1] then redis.call('DEL', KEYS[4] .. owner) end
redis.call('DEL', cart, cart .. ':items')
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# The sweeper's lease: the ids of up to ARGV[2] carts expired at ARGV[1], each pushed ARGV[3] ms into
# the future so another replica skips it until then (taken again if this replica dies mid-write).
_LEASE_EXPIRED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), id) end
return ids
"""

# Replaces every line of an ACTIVE cart with the result of a merge computed in Python, if its lines are
# still the ones the caller read (`updated_ms` unchanged) and this source was not merged into it yet.
# ARGV[6] expected updated_ms, [7] currency, [8] source cart id, [9..] sku, line record pairs.
_REPLACE_LINES = (
    _HEAD
    + """
local marker = 'm:' .. ARGV[8]
if redis.call('HEXISTS', cart, marker) == 1 then return {'replayed'} end
if redis.call('HGET', cart, 'updated_ms') ~= ARGV[6] then return {'moved'} end
redis.call('DEL', items)
local count = 0
for index = 9, #ARGV, 2 do
  redis.call('HSET', items, ARGV[index], ARGV[index + 1])
  count = count + 1
end
redis.call('HSET', cart, 'currency', ARGV[7], 'seq', count, marker, '1')
changed()
touch()
return state('ok')
"""
)


class Outcome(enum.Enum):
    OK = "ok"
    REPLAYED = "replayed"
    MISSING = "missing"
    STATUS = "status"
    EXPIRED = "expired"
    KEY_REUSED = "key_reused"
    LINE_QUANTITY = "line_quantity"
    CURRENCY = "currency"
    LINE_LIMIT = "line_limit"
    NO_LINE = "no_line"
    MOVED = "moved"
    LIVE = "live"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    #: Outcome detail: max addable units, cart currency, "1" when a line was removed, a status, a count.
    detail: str = ""
    cart: StoredCart | None = None


def _ms(value: bytes | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC) if value else None


def _text(value: bytes | str | None) -> str:
    if isinstance(value, str):
        return value
    return value.decode() if value else ""


def encode_line(line: StoredLine, position: int) -> str:
    return (
        f"{line.quantity}|{position}|{line.added_unit_price.amount_minor}|"
        f"{round(line.add_time.timestamp() * 1000)}|{round(line.update_time.timestamp() * 1000)}|{line.product_name}"
    )


#: A parsed line, by its SKU, its stored record and the cart's currency (see `_lines`).
LineMemo = Memo[tuple[bytes, bytes, str], tuple[int, StoredLine]]
#: Each cart's last parsed lines, by cart id: with its currency and its items hash exactly as Redis returned
#: it (see `_cart_lines`).
CartLinesMemo = Memo[str, tuple[str, tuple[bytes, ...], tuple[StoredLine, ...]]]


def _parsed_weight(entry: tuple[str, tuple[bytes, ...], tuple[StoredLine, ...]]) -> int:
    return 1 + len(entry[2])


def _parse_line(sku: bytes, record: bytes, currency: str) -> tuple[int, StoredLine]:
    quantity, position, price, added, updated, name = record.decode().split("|", 5)
    return int(position), StoredLine(
        sku=sku.decode(),
        quantity=int(quantity),
        added_unit_price=Money(currency, int(price)),
        product_name=name,
        add_time=datetime.fromtimestamp(int(added) / 1000, tz=UTC),
        update_time=datetime.fromtimestamp(int(updated) / 1000, tz=UTC),
    )


def _lines(flat: Sequence[bytes], currency: str, memo: LineMemo) -> tuple[StoredLine, ...]:
    """The lines in position order. A line's record is parsed once and remembered while it is unchanged
    (bounded: the oldest go first), so reading a 20-line cart parses only what changed."""
    decoded: list[tuple[int, StoredLine]] = []
    for index in range(0, len(flat), 2):
        key = (flat[index], flat[index + 1], currency)
        parsed = memo.get(key)
        if parsed is None:
            parsed = _parse_line(*key)
            memo.put(key, parsed)
        decoded.append(parsed)
    decoded.sort(key=_position)
    return tuple(line for _, line in decoded)


def _position(pair: tuple[int, StoredLine]) -> int:
    return pair[0]


def _cart_lines(
    cart_id: str, flat: Sequence[bytes], currency: str, memo: LineMemo, carts: CartLinesMemo
) -> tuple[StoredLine, ...]:
    """As `_lines`, and while a cart's items are unchanged (the same fields and values in the same order)
    the very same tuple: one comparison instead of one lookup per line, and what is computed from a cart's
    lines later (prices, totals, the rendered lines) can be remembered by that tuple (bounded: the carts
    seen first go first)."""
    items = tuple(flat)
    last = carts.get(cart_id)
    if last is not None and last[0] == currency and last[1] == items:
        return last[2]
    lines = _lines(flat, currency, memo)
    carts.put(cart_id, (currency, items, lines))
    return lines


def _cart(
    cart_id: str, fields: Sequence[bytes | None], flat: Sequence[bytes], memo: LineMemo, carts: CartLinesMemo
) -> StoredCart:
    user_id, session_id, _status, created, updated, expire, currency = fields
    return StoredCart(
        cart_id=cart_id,
        user_id=_text(user_id),
        session_id=_text(session_id),
        # a claimed cart (being converted, merged or abandoned) is still ACTIVE until PostgreSQL has it.
        status=CartStatus.ACTIVE,
        lines=_cart_lines(cart_id, flat, _text(currency), memo, carts),
        create_time=_ms(created) or datetime.now(UTC),
        update_time=_ms(updated) or datetime.now(UTC),
        expire_time=_ms(expire),
        currency_code=_text(currency),
    )


class CartStore:
    """The Redis half of the cart service: one method per script, each one round trip (the scripts run over
    `ScriptRunner`'s multiplexed connection; `owner_of` uses the runtime's client)."""

    def __init__(
        self, redis: Redis, scripts: ScriptRunner, keys: KeySpace, *, ttl_seconds: float, grace_seconds: float
    ) -> None:
        self._redis = redis
        self._runner = scripts
        self._keys = keys
        self._ttl_ms = int(ttl_seconds * 1000)
        self._keep_ms = int((ttl_seconds + grace_seconds) * 1000)
        self._parsed: LineMemo = Memo(LINES)
        self._parsed_carts: CartLinesMemo = Memo(CART_LINES, _parsed_weight)
        self._scripts: dict[str, Script] = {
            name: Script(body)
            for name, body in {
                "read": _READ,
                "add": _ADD,
                "set": _SET,
                "clear": _CLEAR,
                "create": _CREATE,
                "claim": _CLAIM,
                "drop": _DROP,
                "lease": _LEASE_EXPIRED,
                "replace": _REPLACE_LINES,
            }.items()
        }

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    def _cart_keys(self, cart_id: str) -> list[str]:
        cart = self._keys.key(f"cart:{{{cart_id}}}")
        return [cart, cart + ":items", self._keys.key("expiry")]

    def _index_keys(self) -> list[str]:
        prefix = self._keys.prefix
        return [prefix + "cart:", prefix + "cart:", self._keys.key("expiry"), prefix + "owner:"]

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    async def _run(self, name: str, cart_id: str, owner: str, *args: Any) -> Result:
        raw = await self._runner.run(
            self._scripts[name],
            self._cart_keys(cart_id),
            [self._now_ms(), self._ttl_ms, self._keep_ms, owner, self._keys.prefix, *args],
        )
        return self._result(cart_id, raw)

    def _result(self, cart_id: str, raw: list[Any]) -> Result:
        outcome = Outcome(raw[0].decode())
        detail = raw[1].decode() if len(raw) > 1 and isinstance(raw[1], bytes) else ""
        cart = _cart(cart_id, raw[2], raw[3], self._parsed, self._parsed_carts) if len(raw) > 3 else None
        return Result(outcome, detail, cart)

    async def create(self, cart_id: str, owner: str, user_id: str, session_id: str) -> tuple[str, bool]:
        """The owner's ACTIVE cart id, creating `cart_id` when it has none; and whether it was created."""
        raw = await self._runner.run(
            self._scripts["create"],
            [*self._index_keys()[:3], self._keys.prefix + "owner:" + owner],
            [self._now_ms(), self._ttl_ms, self._keep_ms, cart_id, owner, user_id, session_id],
        )
        return raw[1].decode(), raw[0] == b"created"

    async def read(self, cart_id: str, owner: str) -> Result:
        return await self._run("read", cart_id, owner)

    async def add(
        self, cart_id: str, owner: str, *, sku: str, quantity: int, max_lines: int, price: Money, name: str, key: str
    ) -> Result:
        return await self._run(
            "add", cart_id, owner, sku, quantity, max_lines, price.amount_minor, price.currency_code, name, key
        )

    async def set_quantity(self, cart_id: str, owner: str, sku: str, quantity: int) -> Result:
        return await self._run("set", cart_id, owner, sku, quantity, "set")

    async def remove(self, cart_id: str, owner: str, sku: str) -> Result:
        return await self._run("set", cart_id, owner, sku, 0, "remove")

    async def clear(self, cart_id: str, owner: str) -> Result:
        return await self._run("clear", cart_id, owner)

    async def claim(self, cart_id: str, owner: str, claim: str, *, which: str) -> Result:
        """Moves an ACTIVE cart to `claim` (no script changes it after), or finds it so claimed already.
        `which`: "any", "live" (not expired) or "expired"."""
        raw = await self._runner.run(
            self._scripts["claim"],
            self._cart_keys(cart_id),
            [self._now_ms(), self._ttl_ms, self._keep_ms, owner, self._keys.prefix, claim, which],
        )
        return self._result(cart_id, raw)

    async def replace_lines(
        self,
        cart_id: str,
        owner: str,
        expected_update: datetime,
        currency: str,
        lines: Sequence[StoredLine],
        source: str,
    ) -> Result:
        """Writes a merge's result (`lines`, in order) into the target cart; MOVED when its lines changed
        since `expected_update`, REPLAYED when `source` was already merged into it."""
        pairs: list[str] = []
        for position, line in enumerate(lines, start=1):
            pairs += [line.sku, encode_line(line, position)]
        expected = str(round(expected_update.timestamp() * 1000))
        return await self._run("replace", cart_id, owner, expected, currency, source, *pairs)

    async def drop(self, cart_id: str) -> None:
        await self._runner.run(self._scripts["drop"], self._index_keys(), [cart_id])

    async def lease_expired(self, limit: int, lease_seconds: float) -> list[str]:
        ids = await self._runner.run(
            self._scripts["lease"], [self._keys.key("expiry")], [self._now_ms(), limit, int(lease_seconds * 1000)]
        )
        return [raw.decode() for raw in ids]

    async def owner_of(self, cart_id: str) -> str:
        """The owner recorded on a cart still in Redis ("" when gone)."""
        return _text(await self._redis.hget(self._cart_keys(cart_id)[0], "owner"))
