"""The cart's etag, pricing from the catalogue, and the lines a merge writes, without I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cart_svc.domain import CatalogueEntry, Line, StoredLine, etag, merge_lines, merged_stored_lines, price_lines
from service_runtime.values import Money

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _line(sku: str, quantity: int, price: int = 1000) -> StoredLine:
    return StoredLine(sku, quantity, Money("USD", price), f"name {sku}", T0, T0)


def test_the_etag_changes_with_every_change_to_the_lines_and_only_then():
    lines = (_line("A", 1), _line("B", 2))
    base = etag("c1", lines)
    assert etag("c1", lines) == base
    assert etag("c1", (_line("A", 1), _line("B", 3))) != base  # quantity
    assert etag("c1", (_line("A", 1),)) != base  # removed
    assert etag("c1", (_line("A", 1), _line("B", 2, 999))) != base  # price when added
    assert etag("c2", lines) != base  # another cart
    later = tuple(replace(line, update_time=T0 + timedelta(hours=1)) for line in lines)
    assert etag("c1", later) == base  # touching a cart is not a change to its lines


def test_lines_are_priced_from_the_catalogue_and_a_missing_sku_is_unavailable_at_its_last_price():
    priced = price_lines(
        (_line("A", 2, 1000), _line("GONE", 1, 500)), {"A": CatalogueEntry("A", "A", Money("USD", 1200))}
    )
    assert [(p.sku, p.unit_price.amount_minor, p.available, p.price_changed) for p in priced] == [
        ("A", 1200, True, True),
        ("GONE", 500, False, False),
    ]


def test_a_merge_keeps_the_targets_lines_and_prices_new_ones_now():
    target = (_line("A", 50), _line("B", 1))
    catalogue = {sku: CatalogueEntry(sku, f"new {sku}", Money("USD", 700)) for sku in ("A", "B", "C")}
    plan = merge_lines([Line("A", 50), Line("B", 1)], "USD", [Line("A", 60), Line("C", 2)], {"A": "USD", "C": "USD"})
    now = T0 + timedelta(minutes=5)
    lines = merged_stored_lines(target, plan, catalogue, now)
    assert [(line.sku, line.quantity, line.added_unit_price.amount_minor) for line in lines] == [
        ("A", 99, 1000),  # capped; keeps the price it had when first added
        ("B", 1, 1000),
        ("C", 2, 700),  # new: priced now
    ]
    assert lines[0].update_time == now and lines[0].add_time == T0
    assert lines[1].update_time == T0  # unchanged line keeps its times
