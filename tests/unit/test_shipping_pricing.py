"""Shipping prices and the rate file, without I/O: bracket edges, thresholds, zones, business days,
and a rate file that breaks the format named precisely."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest

from service_runtime.errors import FailedPrecondition
from service_runtime.values import Money
from shipping_svc.pricing import add_business_days, quote, shipping_options
from shipping_svc.rates import DEFAULT_RATES_FILE, Method, RateFileError, load_rate_table, parse_rate_table

TABLE = load_rate_table(DEFAULT_RATES_FILE)
RAW: dict[str, Any] = json.loads(DEFAULT_RATES_FILE.read_text())
MONDAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (MONDAY, 0, MONDAY),
        (MONDAY, 1, date(2026, 12, 1)),
        (MONDAY, 5, date(2026, 12, 7)),  # over the weekend
        (date(2026, 12, 5), 0, date(2026, 12, 7)),  # Saturday dispatches on Monday
        (date(2026, 12, 4), 1, date(2026, 12, 7)),  # Friday + 1 is Monday
    ],
)
def test_business_days_skip_weekends(start, days, expected):
    assert add_business_days(start, days) == expected


@pytest.mark.parametrize(
    ("grams", "expected"), [(1, 499), (500, 499), (501, 799), (2000, 799), (2001, 1299), (30000, 2499)]
)
def test_domestic_standard_brackets(grams, expected):
    assert quote(TABLE, "US", grams, Money("USD", 0), Method.STANDARD, MONDAY).cost == Money("USD", expected)


def test_options_are_cheapest_first_and_heavy_parcels_lose_methods():
    light = shipping_options(TABLE, "US", 400, Money("USD", 100), MONDAY)
    assert [o.method for o in light.options] == [Method.STANDARD, Method.EXPRESS, Method.OVERNIGHT]
    heavy = shipping_options(TABLE, "US", 10001, Money("USD", 100), MONDAY)
    assert [o.method for o in heavy.options] == [Method.STANDARD]
    with pytest.raises(FailedPrecondition) as refused:
        shipping_options(TABLE, "US", 30001, Money("USD", 100), MONDAY)
    assert refused.value.reason == "DESTINATION_NOT_SERVED"


def test_free_shipping_from_the_threshold_on_and_standard_only():
    below = shipping_options(TABLE, "US", 400, Money("USD", 4999), MONDAY)
    at = shipping_options(TABLE, "US", 400, Money("USD", 5000), MONDAY)
    assert below.options[0].cost.amount_minor == 499 and below.amount_to_free_shipping == Money("USD", 1)
    assert at.options[0].cost.amount_minor == 0 and at.options[0].free_shipping_applied
    assert at.options[0].list_cost.amount_minor == 499 and at.amount_to_free_shipping == Money("USD", 0)
    assert not at.options[1].free_shipping_applied


def test_zones_and_windows():
    eu = TABLE.zone_of("DE")
    assert eu is not None and eu.name == "eu" and TABLE.zone_of("BR") is None
    option = quote(TABLE, "US", 400, Money("USD", 0), Method.EXPRESS, MONDAY)
    assert (option.window.earliest, option.window.latest) == (date(2026, 12, 1), date(2026, 12, 3))
    with pytest.raises(FailedPrecondition) as refused:
        quote(TABLE, "DE", 400, Money("USD", 0), Method.OVERNIGHT, MONDAY)
    assert refused.value.reason == "SHIPPING_METHOD_NOT_AVAILABLE"
    with pytest.raises(FailedPrecondition) as currency:
        shipping_options(TABLE, "US", 400, Money("EUR", 0), MONDAY)
    assert currency.value.reason == "CURRENCY_NOT_SUPPORTED"


def _broken(change) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda raw: raw.update(currency_code="dollars"), "currency_code"),
        (lambda raw: raw.update(extra=1), "unknown keys ['extra']"),
        (lambda raw: raw["zones"][1]["countries"].append("US"), "US is already in zone 'domestic'"),
        (lambda raw: raw["zones"][0].update(name="Domestic"), "zones[0].name"),
        (lambda raw: raw["zones"][0]["methods"].update(drone={}), "'drone' is not standard, express or overnight"),
        (
            lambda raw: raw["zones"][0]["methods"]["express"].update(min_business_days=9),
            "zones[0].methods.express: min_business_days must not exceed max_business_days",
        ),
        (
            lambda raw: raw["zones"][0]["methods"]["standard"]["brackets"][0].update(price_minor=-1),
            "zones[0].methods.standard.brackets[0].price_minor",
        ),
        (lambda raw: raw["zones"][0].update(free_shipping_threshold_minor="50"), "free_shipping_threshold_minor"),
    ],
)
def test_a_rate_file_that_breaks_the_format_is_refused_naming_the_place(change, named):
    with pytest.raises(RateFileError) as refused:
        parse_rate_table(_broken(change))
    assert named in str(refused.value)


def test_the_shipped_rate_file_is_valid():
    assert [zone.name for zone in TABLE.zones] == ["domestic", "north_america", "eu", "rest_of_world"]
