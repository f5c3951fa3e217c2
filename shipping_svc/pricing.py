"""Shipping prices and delivery windows, free of I/O: the same inputs give the same figures, so
QuoteShipping returns exactly what GetShippingOptions showed for a method.

A parcel's weight is the sum of unit weight × quantity. A method is offered when the destination's
zone has it and the weight is within its last bracket. Standard shipping is free when the merchandise
subtotal reaches the zone's threshold. Delivery windows count business days (Monday..Friday) from the
dispatch date: the quote's date when it is a business day, else the next business day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from service_runtime.errors import FailedPrecondition
from service_runtime.values import Money
from shipping_svc.rates import Method, MethodRate, RateTable, Zone


@dataclass(frozen=True)
class Window:
    min_business_days: int
    max_business_days: int
    earliest: date
    latest: date


@dataclass(frozen=True)
class Option:
    method: Method
    display_name: str
    cost: Money
    list_cost: Money
    free_shipping_applied: bool
    window: Window


@dataclass(frozen=True)
class Options:
    zone: Zone
    weight_grams: int
    options: tuple[Option, ...]
    #: Unset when the zone has no threshold.
    free_shipping_threshold: Money | None
    amount_to_free_shipping: Money | None


def add_business_days(start: date, days: int) -> date:
    current = start
    while current.weekday() >= 5:
        current += timedelta(days=1)
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def window(rate: MethodRate, today: date) -> Window:
    return Window(
        rate.min_business_days,
        rate.max_business_days,
        add_business_days(today, rate.min_business_days),
        add_business_days(today, rate.max_business_days),
    )


def destination_not_served(country_code: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"no shipping method serves {country_code}",
        reason="DESTINATION_NOT_SERVED",
        metadata={"countryCode": country_code},
    )


def method_not_available(method: Method, zone: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{method.value} shipping is not available to zone {zone} for these items",
        reason="SHIPPING_METHOD_NOT_AVAILABLE",
        metadata={"shippingMethod": f"SHIPPING_METHOD_{method.name}", "zone": zone},
    )


def currency_not_supported(currency_code: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"shipping is not priced in {currency_code}",
        reason="CURRENCY_NOT_SUPPORTED",
        metadata={"currencyCode": currency_code},
    )


def shipping_options(table: RateTable, country_code: str, weight_grams: int, subtotal: Money, today: date) -> Options:
    """Every method that serves the destination for this weight, cheapest first (ties in method order).

    Refuses DESTINATION_NOT_SERVED when none does, CURRENCY_NOT_SUPPORTED for a subtotal in another
    currency than the table's.
    """
    if subtotal.currency_code != table.currency_code:
        raise currency_not_supported(subtotal.currency_code)
    zone = table.zone_of(country_code)
    if zone is None:
        raise destination_not_served(country_code)
    threshold = zone.free_shipping_threshold_minor
    free = threshold is not None and subtotal.amount_minor >= threshold
    options = []
    for method in Method:
        rate = zone.methods.get(method)
        price = rate.price_minor(weight_grams) if rate else None
        if rate is None or price is None:
            continue
        applied = free and method is Method.STANDARD
        options.append(
            Option(
                method=method,
                display_name=rate.display_name,
                cost=Money(table.currency_code, 0 if applied else price),
                list_cost=Money(table.currency_code, price),
                free_shipping_applied=applied,
                window=window(rate, today),
            )
        )
    if not options:
        raise destination_not_served(country_code)
    order = list(Method)
    options.sort(key=lambda option: (option.cost.amount_minor, order.index(option.method)))
    return Options(
        zone=zone,
        weight_grams=weight_grams,
        options=tuple(options),
        free_shipping_threshold=Money(table.currency_code, threshold) if threshold is not None else None,
        amount_to_free_shipping=(
            Money(table.currency_code, max(0, threshold - subtotal.amount_minor)) if threshold is not None else None
        ),
    )


def quote(
    table: RateTable, country_code: str, weight_grams: int, subtotal: Money, method: Method, today: date
) -> Option:
    """The option GetShippingOptions shows for `method`, or SHIPPING_METHOD_NOT_AVAILABLE."""
    offered = shipping_options(table, country_code, weight_grams, subtotal, today)
    for option in offered.options:
        if option.method is method:
            return option
    raise method_not_available(method, offered.zone.name)
