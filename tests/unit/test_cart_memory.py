"""The cart's memos hold a bounded amount of memory whatever carts pass through them (cart_svc/memo.py):
measured with tracemalloc, past the bound, for the two extremes of cart shape."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime

import pytest

from cart_svc.domain import CartStatus, CatalogueEntry, PricedCart, StoredCart, price_lines
from cart_svc.memo import CART_LINES, LINES, Memo
from cart_svc.servicer import CartServicer
from cart_svc.store import CartLinesMemo, LineMemo, _cart_lines, _parsed_weight
from service_runtime.values import Money

NOW = datetime(2026, 12, 1, tzinfo=UTC)
#: What the store's and the servicer's memos may hold together, full (the pod's limit is 256 MiB).
BUDGET_MIB = 64


def _fill(carts: int, lines_per_cart: int) -> tuple[float, int]:
    parsed: LineMemo = Memo(LINES)
    parsed_carts: CartLinesMemo = Memo(CART_LINES, _parsed_weight)
    servicer = CartServicer(None, ttl_seconds=60)  # type: ignore[arg-type]  # rendering needs no handlers
    gc.collect()
    tracemalloc.start()
    try:
        for c in range(carts):
            flat = []
            for i in range(lines_per_cart):
                flat += [f"SKU-{c}-{i}".encode(), f"2|{i}|1999|1764547200000|1764547200000|Product {c}-{i}".encode()]
            lines = _cart_lines(f"cart-{c}", flat, "USD", parsed, parsed_carts)
            entries = {line.sku: CatalogueEntry(line.sku, line.product_name, Money("USD", 1999)) for line in lines}
            cart = StoredCart(f"cart-{c}", "u", "", CartStatus.ACTIVE, lines, NOW, NOW, NOW)
            names = {line.sku: line.product_name for line in lines}
            servicer._cart_out(PricedCart(cart, price_lines(lines, entries), names))
        gc.collect()
        retained, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return retained / 2**20, parsed_carts.weight


@pytest.mark.parametrize(("carts", "lines_per_cart"), [(300, 100), (25_000, 1)])
def test_full_memos_stay_within_their_memory_budget(carts, lines_per_cart):
    retained_mib, weight = _fill(carts, lines_per_cart)
    assert weight <= CART_LINES  # past the bound: the oldest carts were forgotten
    assert carts * (1 + lines_per_cart) > CART_LINES
    assert retained_mib < BUDGET_MIB, f"{retained_mib:.1f} MiB"
