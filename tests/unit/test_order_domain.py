"""Order's pure rules: the lifecycle and the amounts' arithmetic; no I/O."""

from __future__ import annotations

import itertools

import pytest

from order_svc import domain
from order_svc.domain import OrderStatus, PricedLine, Transition
from service_runtime.errors import FailedPrecondition, InvalidArgument
from service_runtime.values import Money

PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED = (
    OrderStatus.PENDING,
    OrderStatus.CONFIRMED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.CANCELLED,
)


def refusal(current: OrderStatus, target: OrderStatus) -> FailedPrecondition:
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_transition(current, target)
    return raised.value


# Lifecycle


@pytest.mark.parametrize(
    ("current", "target"),
    [(PENDING, CONFIRMED), (CONFIRMED, SHIPPED), (SHIPPED, DELIVERED), (PENDING, CANCELLED), (CONFIRMED, CANCELLED)],
)
def test_an_order_moves_forward_along_the_lifecycle(current, target):
    assert domain.check_transition(current, target) is Transition.PROCEED


def test_only_the_lifecycle_edges_proceed_and_every_other_pair_is_a_replay_or_refused():
    for current, target in itertools.product(OrderStatus, [s for s in OrderStatus if s is not PENDING]):
        try:
            outcome = domain.check_transition(current, target)
        except FailedPrecondition:
            outcome = None
        assert (outcome is Transition.PROCEED) == (target in domain.TRANSITIONS[current]), (current, target)


def test_order_cannot_ship_before_it_is_confirmed():
    error = refusal(PENDING, SHIPPED)
    assert error.reason == "ORDER_NOT_CONFIRMED"
    assert error.metadata == {"status": "ORDER_STATUS_PENDING"}


@pytest.mark.parametrize("current", [PENDING, CONFIRMED])
def test_order_cannot_be_delivered_before_it_ships(current):
    assert refusal(current, DELIVERED).reason == "ORDER_NOT_SHIPPED"


@pytest.mark.parametrize("current", [SHIPPED, DELIVERED])
def test_a_shipped_or_delivered_order_cannot_be_cancelled(current):
    assert refusal(current, CANCELLED).reason == "ORDER_NOT_CANCELLABLE"


@pytest.mark.parametrize("target", [CONFIRMED, SHIPPED, DELIVERED])
def test_a_cancelled_order_goes_nowhere(target):
    error = refusal(CANCELLED, target)
    assert error.reason == "ORDER_CANCELLED"
    assert error.metadata == {"status": "ORDER_STATUS_CANCELLED"}


@pytest.mark.parametrize("current", [CONFIRMED, SHIPPED, DELIVERED])
def test_confirming_an_order_that_is_confirmed_or_later_is_a_replay(current):
    assert domain.check_transition(current, CONFIRMED) is Transition.ALREADY_DONE


@pytest.mark.parametrize("current", [SHIPPED, DELIVERED])
def test_shipping_an_order_that_already_shipped_is_a_replay(current):
    assert domain.check_transition(current, SHIPPED) is Transition.ALREADY_DONE


def test_delivering_and_cancelling_again_are_replays():
    assert domain.check_transition(DELIVERED, DELIVERED) is Transition.ALREADY_DONE
    assert domain.check_transition(CANCELLED, CANCELLED) is Transition.ALREADY_DONE


def test_no_transition_leads_back_to_pending():
    with pytest.raises(ValueError):
        domain.check_transition(CONFIRMED, PENDING)


def test_a_ship_replay_with_another_shipment_is_refused_and_names_the_recorded_one():
    domain.check_shipment(SHIPPED, "shp-1", "shp-1")
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_shipment(DELIVERED, "shp-1", "shp-2")
    assert raised.value.reason == "ORDER_ALREADY_SHIPPED"
    assert raised.value.metadata == {"status": "ORDER_STATUS_DELIVERED", "shipmentId": "shp-1"}


# Amounts


def usd(amount_minor: int) -> Money:
    return Money("USD", amount_minor)


LINES = (PricedLine("A", 2, usd(1999), usd(3998)), PricedLine("B", 1, usd(500), usd(500)))


CORRECT_AMOUNTS = {"subtotal": usd(4498), "shipping_cost": usd(599), "tax": usd(371), "total": usd(5468)}


def amount_violations(lines=LINES, **amounts) -> dict[str, str]:
    amounts = {**CORRECT_AMOUNTS, **amounts}
    subtotal, shipping_cost, tax, total = (amounts[k] for k in ("subtotal", "shipping_cost", "tax", "total"))
    try:
        domain.check_amounts(lines, subtotal=subtotal, shipping_cost=shipping_cost, tax=tax, total=total)
    except InvalidArgument as error:
        return {v.field: v.description for v in error.violations}
    return {}


def test_amounts_that_add_up_in_one_currency_are_accepted():
    assert amount_violations() == {}


def test_a_line_total_that_is_not_unit_price_times_quantity_is_named():
    lines = (PricedLine("A", 2, usd(1999), usd(3999)), LINES[1])
    assert set(amount_violations(lines, subtotal=usd(4499), total=usd(5469))) == {"lines[0].line_total"}


def test_a_subtotal_that_is_not_the_sum_of_the_lines_is_named():
    assert set(amount_violations(subtotal=usd(4497), total=usd(5467))) == {"subtotal"}


def test_a_total_that_is_not_subtotal_plus_shipping_plus_tax_is_named():
    violations = amount_violations(total=usd(5469))
    assert violations == {"total": "must be subtotal - discount_total + shipping_cost + tax = 5468"}


def test_every_amount_in_another_currency_than_the_subtotal_is_named():
    lines = (PricedLine("A", 2, Money("EUR", 1999), usd(3998)), LINES[1])
    assert set(amount_violations(lines, tax=Money("EUR", 371))) == {
        "lines[0].unit_price.currency_code",
        "tax.currency_code",
    }


def test_negative_shipping_or_tax_is_refused_even_when_the_sum_works_out():
    assert set(amount_violations(shipping_cost=usd(-1), tax=usd(971))) == {"shipping_cost.amount_minor"}


def test_a_discount_comes_off_the_total_and_cannot_exceed_the_subtotal():
    def check(discount: int, total: int) -> dict[str, str]:
        try:
            domain.check_amounts(
                LINES,
                subtotal=usd(4498),
                shipping_cost=usd(599),
                tax=usd(371),
                total=usd(total),
                discount_total=usd(discount),
            )
        except InvalidArgument as error:
            return {v.field: v.description for v in error.violations}
        return {}

    assert check(498, 4970) == {}
    assert set(check(5000, 468)) == {"discount_total"}
