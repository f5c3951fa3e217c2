"""The cart's hot path remembers parsed and rendered lines: what it returns must be exactly what it would
build from scratch, and must follow every change to a line, its price or its name."""

from __future__ import annotations

from datetime import UTC, datetime

from cart_svc.domain import CartStatus, CatalogueEntry, PricedCart, StoredCart, StoredLine, price_lines
from cart_svc.memo import Memo
from cart_svc.servicer import CartServicer
from cart_svc.store import CartLinesMemo, LineMemo, _cart_lines, _lines
from service_runtime.values import Money

NOW = datetime(2026, 12, 1, 5, 30, 1, 123456, tzinfo=UTC)


def _cart(lines: tuple[StoredLine, ...]) -> StoredCart:
    return StoredCart("c1", "alice", "", CartStatus.ACTIVE, lines, NOW, NOW, NOW)


def _line(sku: str, quantity: int = 2) -> StoredLine:
    return StoredLine(sku, quantity, Money("USD", 1000), f"Product {sku}", NOW, NOW)


def _priced(lines: tuple[StoredLine, ...], price: int = 1000, name: str = "Product A") -> PricedCart:
    catalogue = {line.sku: CatalogueEntry(line.sku, name, Money("USD", price)) for line in lines}
    return PricedCart(_cart(lines), price_lines(lines, catalogue), {line.sku: name for line in lines})


def test_a_rendered_line_follows_its_quantity_price_and_name():
    servicer = CartServicer(None, ttl_seconds=60)  # type: ignore[arg-type]  # rendering needs no handlers
    lines = (_line("A"),)
    first = servicer._cart_out(_priced(lines))
    assert servicer._cart_out(_priced(lines)) == first  # remembered, same answer
    assert first.lines[0].line_total.amount_minor == 2000 and not first.lines[0].price_changed
    repriced = servicer._cart_out(_priced(lines, price=1500)).lines[0]
    assert (repriced.unit_price.amount_minor, repriced.line_total.amount_minor, repriced.price_changed) == (
        1500,
        3000,
        True,
    )
    assert servicer._cart_out(_priced(lines, name="Renamed")).lines[0].product_name == "Renamed"
    more = servicer._cart_out(_priced((_line("A", 5),)))
    assert more.lines[0].quantity == 5 and more.subtotal.amount_minor == 5000 and more.etag != first.etag


def test_parsed_lines_follow_their_records_and_keep_positions():
    memo: LineMemo = Memo(100)
    flat = [b"B", b"1|2|500|1000|2000|Bee", b"A", b"3|1|700|1000|1000|Ay"]
    lines = _lines(flat, "USD", memo)
    assert [(line.sku, line.quantity, line.added_unit_price) for line in lines] == [
        ("A", 3, Money("USD", 700)),
        ("B", 1, Money("USD", 500)),
    ]
    assert _lines(flat, "USD", memo) == lines
    changed = _lines([b"B", b"4|2|500|1000|3000|Bee", b"A", b"3|1|700|1000|1000|Ay"], "USD", memo)
    assert changed[1].quantity == 4 and changed[1].update_time == datetime.fromtimestamp(3, tz=UTC)
    assert _lines(flat, "EUR", memo)[0].added_unit_price == Money("EUR", 700)


def test_a_carts_parsed_lines_are_the_same_tuple_while_its_items_are_unchanged():
    memo: LineMemo = Memo(100)
    carts: CartLinesMemo = Memo(100)
    flat = [b"A", b"3|1|700|1000|1000|Ay", b"B", b"1|2|500|1000|2000|Bee"]
    first = _cart_lines("c1", list(flat), "USD", memo, carts)
    assert _cart_lines("c1", list(flat), "USD", memo, carts) is first  # a fresh reply with the same items
    other = _cart_lines("c2", list(flat), "USD", memo, carts)
    assert other == first  # another cart with equal items: equal lines
    changed = _cart_lines("c1", [b"A", b"4|1|700|1000|3000|Ay", *flat[2:]], "USD", memo, carts)
    assert changed is not first and changed[0].quantity == 4 and changed[1] is first[1]  # B parsed once
    assert _cart_lines("c1", list(flat), "EUR", memo, carts)[0].added_unit_price == Money("EUR", 700)


def test_a_carts_rendering_follows_every_change_of_the_same_cart():
    servicer = CartServicer(None, ttl_seconds=60)  # type: ignore[arg-type]  # rendering needs no handlers
    a, b = _line("A"), _line("B", 3)
    both = _priced((a, b))
    first = servicer._cart_out(both)
    assert servicer._cart_out(both) == first  # the same priced lines: remembered
    assert [line.sku for line in first.lines] == ["A", "B"] and first.subtotal.amount_minor == 5000
    fewer = servicer._cart_out(_priced((a,)))
    assert [line.sku for line in fewer.lines] == ["A"] and fewer.etag != first.etag and fewer.item_count == 2
    renamed = servicer._cart_out(_priced((a, b), name="Renamed"))
    assert {line.product_name for line in renamed.lines} == {"Renamed"} and renamed.etag == first.etag
    cheaper = servicer._cart_out(_priced((a, b), price=900))
    assert cheaper.subtotal.amount_minor == 4500 and cheaper.has_price_changes and not first.has_price_changes
