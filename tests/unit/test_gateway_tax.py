"""The tax table and its rounding rule: parts per million, shipping taxed per jurisdiction, half up once."""

from __future__ import annotations

import pytest

from gateway.tax import NO_TAX, TaxRate, TaxTable, tax_minor


def test_new_york_s_rate_of_8_875_percent_is_exact():
    rate = TaxTable.load().rate_for("US", "ny")
    assert rate == TaxRate(88_750, shipping_taxed=True)


def test_a_region_without_an_entry_falls_back_to_its_country_and_an_unknown_country_pays_none():
    table = TaxTable.load()
    assert table.rate_for("US", "OR") == table.rate_for("US", "")
    assert table.rate_for("ZZ", "") == NO_TAX


@pytest.mark.parametrize(
    ("rate", "subtotal", "shipping", "expected"),
    [
        (TaxRate(88_750, True), 4498, 500, 444),  # (4498 + 500) × 0.08875 = 443.5725 → 444
        (TaxRate(88_750, False), 4498, 500, 399),  # 4498 × 0.08875 = 399.1975 → 399
        (TaxRate(72_500, False), 200, 999, 15),  # 200 × 0.0725 = 14.5 → 15 (half up)
        (TaxRate(200_000, True), 0, 0, 0),
        (NO_TAX, 123_456, 789, 0),
    ],
)
def test_tax_is_rounded_half_up_once_on_the_whole_base(rate, subtotal, shipping, expected):
    assert tax_minor(rate, subtotal_minor=subtotal, discount_minor=0, shipping_minor=shipping) == expected


def test_a_discount_comes_off_the_base():
    assert tax_minor(TaxRate(100_000, False), subtotal_minor=1000, discount_minor=200, shipping_minor=0) == 80


def test_basis_points_are_the_rate_rounded():
    assert TaxRate(88_750, True).basis_points == 888
