"""The cart's hot path remembers parsed and rendered lines: what it returns must be exactly what it would
build from scratch, and must follow every change to a line, its price or its name."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from cart_svc.domain import CartStatus, CatalogueEntry, PricedCart, StoredCart, StoredLine, price_lines
from cart_svc.servicer import CartServicer, _stamp
from cart_svc.store import LineMemo, _lines
from service_runtime.values import Money
from service_runtime.wire import timestamp_out

NOW = datetime(2026, 12, 1, 5, 30, 1, 123456, tzinfo=UTC)


def _cart(lines: tuple[StoredLine, ...]) -> StoredCart:
    return StoredCart("c1", "alice", "", CartStatus.ACTIVE, lines, NOW, NOW, NOW)


def _line(sku: str, quantity: int = 2) -> StoredLine:
    return StoredLine(sku, quantity, Money("USD", 1000), f"Product {sku}", NOW, NOW)


def _priced(lines: tuple[StoredLine, ...], price: int = 1000, name: str = "Product A") -> PricedCart:
    catalogue = {line.sku: CatalogueEntry(line.sku, name, Money("USD", price)) for line in lines}
    return PricedCart(_cart(lines), price_lines(lines, catalogue), {line.sku: name for line in lines})


def test_stamp_is_exactly_what_timestamp_out_gives():
    for moment in (NOW, datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)):
        stamp = timestamp_pb2.Timestamp()
        _stamp(stamp, moment)
        assert stamp == timestamp_out(moment)


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
    memo: LineMemo = {}
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
