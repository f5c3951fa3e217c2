"""Current names and prices from the inventory service, never from the client.

`Catalogue` asks inventory (one BatchGetProducts per call, however many lines). `PriceCache` in front of
it keeps each answer for `ttl_seconds` in this replica: a price, or the fact that a SKU is not sold
(unknown or discontinued). An entry is stamped with the time its request was sent, so a price a cart
shows is at most `ttl_seconds` older than inventory's answer (which its own product cache lets be up to
PRODUCT_CACHE_TTL_SECONDS old). The gateway re-reads prices from inventory at checkout, so a cart's price
is never what an order is charged. Concurrent misses for the same SKUs share one BatchGetProducts
(single flight), and the cache holds at most `max_entries` SKUs (the oldest go first).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from cart_svc.domain import CatalogueEntry
from service_runtime.channels import Channels, HasDeadline, outbound_timeout
from service_runtime.wire import money_in
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc

#: Longest a price lookup may take, whatever the caller's deadline.
LOOKUP_CAP_SECONDS = 2.0
#: BatchGetProducts takes at most this many SKUs (a cart has at most 100 lines).
BATCH_LIMIT = 100

#: A fetch's answer for each SKU it asked for: the entry, or None when the SKU is not sold.
Fetched = dict[str, CatalogueEntry | None]


class Catalogue:
    def __init__(self, channels: Channels, target: str) -> None:
        self._channels = channels
        self._target = target

    async def entries(self, skus: Iterable[str], deadline: HasDeadline | None) -> dict[str, CatalogueEntry]:
        """The catalogue entries of the SKUs that are sold; a SKU missing from the result is not in the
        catalogue (unknown or discontinued). A failed call escapes as grpc.aio.AioRpcError, which the
        runtime passes on."""
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return {}
        stub = inventory_grpc.InventoryServiceStub(self._channels.get(self._target))
        found: dict[str, CatalogueEntry] = {}
        for start in range(0, len(wanted), BATCH_LIMIT):
            response = await stub.BatchGetProducts(
                inventory_pb.BatchGetProductsRequest(skus=wanted[start : start + BATCH_LIMIT]),
                timeout=outbound_timeout(deadline, cap=LOOKUP_CAP_SECONDS),
            )
            for product in response.products:
                if not product.discontinued:  # it left the catalogue: its lines are unavailable
                    found[product.sku] = CatalogueEntry(product.sku, product.name, money_in(product.price))
        return found


class PriceCache:
    """`Catalogue.entries` with a short-lived, bounded, single-flight cache in front (see the module)."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalogue = catalogue
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        #: SKU → (valid until, entry or None when not sold), oldest first.
        self._entries: OrderedDict[str, tuple[float, CatalogueEntry | None]] = OrderedDict()
        #: SKU → the fetch under way that will answer for it.
        self._inflight: dict[str, asyncio.Task[Fetched]] = {}

    async def entries(self, skus: Iterable[str], deadline: HasDeadline | None) -> dict[str, CatalogueEntry]:
        """As `Catalogue.entries`: the entries of the SKUs that are sold, at most `ttl_seconds` old."""
        now = self._clock()
        found: dict[str, CatalogueEntry] = {}
        missing: list[str] = []
        waits: dict[asyncio.Task[Fetched], list[str]] = {}
        cached = self._entries
        for sku in skus:
            hit = cached.get(sku)
            if hit is not None and hit[0] > now:
                if hit[1] is not None:
                    found[sku] = hit[1]
                continue
            pending = self._inflight.get(sku)
            if pending is not None:
                waits.setdefault(pending, []).append(sku)
            elif sku not in missing:
                missing.append(sku)
        if missing:
            fetch = asyncio.ensure_future(self._fetch(missing, deadline))
            fetch.add_done_callback(_retrieve)
            for sku in missing:
                self._inflight[sku] = fetch
            waits[fetch] = missing
        for task, wanted in waits.items():
            # shielded: a caller that gives up does not cancel the fetch others are waiting for
            answer = await asyncio.shield(task)
            for sku in wanted:
                entry = answer.get(sku)
                if entry is not None:
                    found[sku] = entry
        return found

    async def _fetch(self, skus: list[str], deadline: HasDeadline | None) -> Fetched:
        sent = self._clock()
        try:
            sold = await self._catalogue.entries(skus, deadline)
        finally:
            for sku in skus:
                self._inflight.pop(sku, None)
        answer: Fetched = {sku: sold.get(sku) for sku in skus}
        valid_until = sent + self._ttl
        cached = self._entries
        for sku, entry in answer.items():
            cached[sku] = (valid_until, entry)
            cached.move_to_end(sku)  # the order is the eviction order
        while len(cached) > self._max_entries:
            cached.popitem(last=False)
        return answer

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve(task: asyncio.Task[Fetched]) -> None:
    """Marks a failed fetch's error as seen: every waiter got it already, or none was left to."""
    if not task.cancelled():
        task.exception()
