"""Inventory's pure rules: validation and state decisions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inventory_svc.domain import commands, refusals, rules
from inventory_svc.domain.model import Availability, Reservation, ReservationStatus
from inventory_svc.domain.rules import Transition
from service_runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from service_runtime.values import LineItem as Line
from service_runtime.values import Money

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ONE_LINE = (Line("A", 1),)


def reservation(status: ReservationStatus, *, lines=ONE_LINE, order_id=None, past_expiry=False) -> Reservation:
    return Reservation(
        checkout_id="c1",
        status=status,
        lines=tuple(lines),
        expires_at=NOW,
        created_at=NOW,
        confirmed_at=NOW if status is ReservationStatus.CONFIRMED else None,
        released_at=NOW if status in (ReservationStatus.RELEASED, ReservationStatus.EXPIRED) else None,
        order_id=order_id,
        release_reason="",
        past_expiry=past_expiry,
    )


def violations_of(call) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        call()
    return {v.field: v.description for v in raised.value.violations}


def test_reserve_validation_names_every_bad_field_at_once():
    command = commands.ReserveInventory(
        checkout_id="", lines=(Line("A", 0), Line("A", 2), Line("b c", 1)), ttl_seconds=0.5
    )

    fields = violations_of(lambda: rules.validate_reserve(command))

    assert set(fields) == {"checkout_id", "items[0].quantity", "items[1].sku", "items[2].sku", "ttl"}


def test_lines_are_compared_in_sku_order_so_replays_match_whatever_order_they_come_in():
    existing = reservation(ReservationStatus.ACTIVE, lines=rules.normalised([Line("B", 1), Line("A", 2)]))

    rules.check_replay(existing, [Line("A", 2), Line("B", 1)])
    with pytest.raises(AlreadyExists):
        rules.check_replay(existing, [Line("A", 3), Line("B", 1)])


def test_a_release_marker_refuses_a_late_reserve():
    marker = reservation(ReservationStatus.RELEASED, lines=())

    with pytest.raises(FailedPrecondition) as raised:
        rules.check_replay(marker, [Line("A", 1)])

    assert raised.value.reason == "RESERVATION_RELEASED"


@pytest.mark.parametrize(
    ("status", "order_id", "past_expiry", "expected"),
    [
        (ReservationStatus.ACTIVE, None, False, Transition.PROCEED),
        (ReservationStatus.ACTIVE, None, True, Transition.EXPIRE_FIRST),
        (ReservationStatus.CONFIRMED, "o1", False, Transition.ALREADY_DONE),
        (ReservationStatus.CONFIRMED, "o2", False, "RESERVATION_CONFIRMED_FOR_OTHER_ORDER"),
        (ReservationStatus.RELEASED, None, False, "RESERVATION_RELEASED"),
        (ReservationStatus.EXPIRED, None, False, "RESERVATION_EXPIRED"),
    ],
)
def test_confirm_decision_follows_the_reservation_state(status, order_id, past_expiry, expected):
    subject = reservation(status, order_id=order_id, past_expiry=past_expiry)
    if isinstance(expected, Transition):
        assert rules.decide_confirm(subject, "o1") is expected
    else:
        with pytest.raises(FailedPrecondition) as raised:
            rules.decide_confirm(subject, "o1")
        assert raised.value.reason == expected


def test_release_of_an_ended_reservation_is_already_done_but_of_a_sold_one_is_refused():
    assert rules.decide_release(reservation(ReservationStatus.EXPIRED)) is Transition.ALREADY_DONE
    assert rules.decide_release(reservation(ReservationStatus.ACTIVE)) is Transition.PROCEED
    with pytest.raises(FailedPrecondition):
        rules.decide_release(reservation(ReservationStatus.CONFIRMED, order_id="o1"))


def test_return_may_not_exceed_what_the_order_bought():
    command = commands.ReturnStock(order_id="o1", lines=(Line("A", 2), Line("B", 1)), reason="x")

    rules.check_return(commands.ReturnStock("o1", (Line("A", 2),), "x"), [Line("A", 2), Line("B", 1)])
    with pytest.raises(FailedPrecondition) as raised:
        rules.check_return(command, [Line("A", 1), Line("B", 1)])

    assert raised.value.metadata["skus"] == "A"


def test_insufficient_stock_lists_short_skus_in_sku_order():
    error = refusals.InsufficientStock([Availability("B", 3, 1), Availability("A", 2, 0)])

    assert [s.sku for s in error.shortages] == ["A", "B"]
    assert error.reason == "INSUFFICIENT_STOCK"
    assert "B (requested 3, available 1)" in error.message


def test_upsert_accepts_only_the_shop_currency_and_bounded_values():
    fields = violations_of(
        lambda: rules.validate_upsert(
            commands.UpsertProduct(sku="A", name="", price=Money("EUR", -5), weight_grams=-1), shop_currency="USD"
        )
    )

    assert set(fields) == {"name", "price.currency_code", "price.amount_minor", "weight_grams"}
