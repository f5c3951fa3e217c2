"""Cart's pure rules: line limits, merging carts, totals in minor units; no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cart_svc import domain
from cart_svc.domain import Line, MergeOutcome, PricedLine
from service_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from service_runtime.values import Money


def full_cart(lines: int = domain.MAX_LINES) -> tuple[Line, ...]:
    return tuple(Line(f"SKU-{index}", 1) for index in range(lines))


def usd(amount_minor: int) -> Money:
    return Money("USD", amount_minor)


# AddItem


def test_adding_a_new_sku_appends_a_line_after_the_existing_ones():
    assert domain.add_item((Line("A", 1),), "B", 2) == (Line("A", 1), Line("B", 2))


def test_adding_a_sku_already_in_the_cart_merges_into_its_line():
    assert domain.add_item((Line("A", 1), Line("B", 2)), "A", 3) == (Line("A", 4), Line("B", 2))


@pytest.mark.parametrize("quantity", [0, -1, 100])
def test_adding_fewer_than_1_or_more_than_99_units_is_invalid(quantity):
    with pytest.raises(InvalidArgument) as raised:
        domain.add_item((), "A", quantity)
    assert [v.field for v in raised.value.violations] == ["quantity"]


def test_a_101st_line_is_refused_with_cart_line_limit():
    with pytest.raises(FailedPrecondition) as raised:
        domain.add_item(full_cart(), "NEW", 1)
    assert raised.value.reason == "CART_LINE_LIMIT"


def test_a_full_cart_still_accepts_more_units_of_a_sku_it_holds():
    lines = domain.add_item(full_cart(), "SKU-0", 5)
    assert lines[0] == Line("SKU-0", 6)
    assert len(lines) == domain.MAX_LINES


def test_a_lowered_line_limit_is_enforced():
    with pytest.raises(FailedPrecondition) as raised:
        domain.add_item(full_cart(3), "NEW", 1, max_lines=3)
    assert raised.value.metadata["maxLines"] == "3"


def test_an_add_that_would_take_a_line_past_99_is_refused_and_says_how_many_more_fit():
    with pytest.raises(FailedPrecondition) as raised:
        domain.add_item((Line("A", 95),), "A", 5)
    assert raised.value.reason == "LINE_QUANTITY_LIMIT"
    assert raised.value.metadata == {"sku": "A", "maxAddable": "4"}


def test_an_add_that_brings_a_line_to_exactly_99_is_accepted():
    assert domain.add_item((Line("A", 95),), "A", 4) == (Line("A", 99),)


def test_a_product_in_another_currency_cannot_join_the_cart():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_currency("USD", "EUR")
    assert raised.value.reason == "CURRENCY_MISMATCH"


def test_an_empty_cart_takes_a_product_in_any_currency():
    domain.check_currency("", "EUR")
    domain.check_currency("EUR", "EUR")


# UpdateItemQuantity


def test_setting_a_quantity_replaces_it_rather_than_adding():
    assert domain.set_quantity((Line("A", 5), Line("B", 1)), "A", 2) == ((Line("A", 2), Line("B", 1)), False)


def test_setting_quantity_zero_removes_the_line():
    assert domain.set_quantity((Line("A", 5), Line("B", 1)), "A", 0) == ((Line("B", 1),), True)


@pytest.mark.parametrize("quantity", [-1, 100])
def test_setting_a_quantity_outside_0_to_99_is_invalid(quantity):
    with pytest.raises(InvalidArgument):
        domain.set_quantity((Line("A", 5),), "A", quantity)


def test_setting_the_quantity_of_a_sku_not_in_the_cart_is_line_not_found():
    with pytest.raises(NotFound) as raised:
        domain.set_quantity((Line("A", 5),), "B", 1)
    assert raised.value.reason == "LINE_NOT_FOUND"


# MergeCarts


def test_merging_adds_new_skus_and_combines_shared_ones():
    merge = domain.merge_lines([Line("A", 2)], "USD", [Line("A", 3), Line("B", 1)], {"A": "USD", "B": "USD"})
    assert merge.lines == (Line("A", 5), Line("B", 1))
    assert [(m.sku, m.resulting_quantity, m.outcome) for m in merge.merged_lines] == [
        ("A", 5, MergeOutcome.COMBINED),
        ("B", 1, MergeOutcome.ADDED),
    ]


def test_merging_caps_a_combined_line_at_99_units():
    merge = domain.merge_lines([Line("A", 90)], "USD", [Line("A", 20)], {"A": "USD"})
    assert merge.lines == (Line("A", 99),)
    assert merge.merged_lines[0].outcome is MergeOutcome.CAPPED
    assert merge.merged_lines[0].resulting_quantity == 99


def test_merging_drops_a_new_line_once_the_target_has_100_lines_but_still_combines_shared_skus():
    merge = domain.merge_lines(full_cart(), "USD", [Line("NEW", 1), Line("SKU-7", 2)], {"NEW": "USD", "SKU-7": "USD"})
    assert [(m.outcome, m.resulting_quantity) for m in merge.merged_lines] == [
        (MergeOutcome.DROPPED_LINE_LIMIT, 0),
        (MergeOutcome.COMBINED, 3),
    ]
    assert len(merge.lines) == domain.MAX_LINES


def test_merging_drops_lines_priced_in_another_currency():
    merge = domain.merge_lines([Line("A", 1)], "USD", [Line("B", 1)], {"B": "EUR"})
    assert merge.lines == (Line("A", 1),)
    assert merge.merged_lines[0].outcome is MergeOutcome.DROPPED_CURRENCY


def test_merging_drops_lines_whose_sku_left_the_catalogue_and_reports_what_the_target_holds():
    merge = domain.merge_lines([Line("A", 4)], "USD", [Line("A", 1), Line("GONE", 1)], {})
    assert [(m.sku, m.outcome, m.resulting_quantity) for m in merge.merged_lines] == [
        ("A", MergeOutcome.DROPPED_UNAVAILABLE, 4),
        ("GONE", MergeOutcome.DROPPED_UNAVAILABLE, 0),
    ]


def test_an_empty_target_takes_the_currency_of_the_first_line_it_receives():
    merge = domain.merge_lines([], "", [Line("A", 1), Line("B", 1)], {"A": "EUR", "B": "USD"})
    assert merge.currency_code == "EUR"
    assert [m.outcome for m in merge.merged_lines] == [MergeOutcome.ADDED, MergeOutcome.DROPPED_CURRENCY]


lines_strategy = st.lists(
    st.builds(Line, st.sampled_from([f"S{i}" for i in range(120)]), st.integers(1, 99)),
    max_size=110,
    unique_by=lambda line: line.sku,
)


@given(target=lines_strategy, source=lines_strategy)
def test_a_merge_never_breaks_the_cart_limits_and_accounts_for_every_source_line(target, source):
    target = target[: domain.MAX_LINES]
    merge = domain.merge_lines(target, "USD", source, {line.sku: "USD" for line in source})

    assert len(merge.lines) <= domain.MAX_LINES
    assert all(1 <= line.quantity <= domain.MAX_LINE_QUANTITY for line in merge.lines)
    assert len({line.sku for line in merge.lines}) == len(merge.lines)
    assert [m.sku for m in merge.merged_lines] == [line.sku for line in source]
    # the target's lines keep their places; new lines follow them
    assert [line.sku for line in merge.lines[: len(target)]] == [line.sku for line in target]


# Totals


def test_totals_multiply_unit_price_by_quantity_in_minor_units():
    totals = domain.cart_totals([PricedLine("A", 3, usd(1999), usd(1999)), PricedLine("B", 2, usd(5), usd(5))])
    assert totals.subtotal == usd(3 * 1999 + 2 * 5)
    assert totals.item_count == 5
    assert not totals.has_price_changes


def test_unavailable_lines_are_left_out_of_the_subtotal_and_item_count():
    totals = domain.cart_totals(
        [PricedLine("A", 1, usd(100), usd(100)), PricedLine("GONE", 4, usd(700), usd(700), available=False)]
    )
    assert totals.subtotal == usd(100)
    assert totals.item_count == 1
    assert totals.has_unavailable_lines


def test_a_line_whose_price_changed_since_it_was_added_is_flagged_and_priced_at_the_current_price():
    line = PricedLine("A", 2, usd(1200), usd(1000))
    totals = domain.cart_totals([line])
    assert line.price_changed
    assert line.line_total == usd(2400)
    assert totals.has_price_changes


def test_an_empty_cart_totals_zero_with_no_currency():
    assert domain.cart_totals([]).subtotal == Money("", 0)


def test_a_cart_whose_lines_are_all_unavailable_totals_zero_in_its_currency():
    totals = domain.cart_totals([PricedLine("A", 1, usd(100), usd(100), available=False)])
    assert totals.subtotal == usd(0)


def test_totals_refuse_lines_in_several_currencies():
    with pytest.raises(ValueError):
        domain.cart_totals([PricedLine("A", 1, usd(1), usd(1)), PricedLine("B", 1, Money("EUR", 1), Money("EUR", 1))])


def test_the_largest_possible_cart_total_stays_an_exact_64_bit_integer():
    largest = [PricedLine(f"S{i}", 99, usd(100_000_000_000), usd(100_000_000_000)) for i in range(domain.MAX_LINES)]
    subtotal = domain.cart_totals(largest).subtotal.amount_minor
    assert subtotal == 100 * 99 * 100_000_000_000
    assert subtotal < 2**63
