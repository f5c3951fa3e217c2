"""The rate table: zones by destination country, prices by method and total weight, free-shipping
thresholds. Read from a JSON data file once at start and validated; a bad file stops the service.

File format (`shipping_svc/data/rates.json` is the default; `SHIPPING_RATES_FILE` names another):

    {
      "currency_code": "USD",                  the currency of every price and threshold (ISO 4217)
      "zones": [                               a country belongs to at most one zone; unlisted
        {                                      countries are not served (DESTINATION_NOT_SERVED)
          "name": "domestic",                  [a-z_]{1,40}, unique
          "countries": ["US"],                 ISO 3166-1 alpha-2 codes
          "free_shipping_threshold_minor": 5000,   standard shipping is free from this merchandise
                                                   subtotal on (minor units); null: never free
          "methods": {                         "standard", "express" and/or "overnight"
            "standard": {
              "display_name": "Standard (3-7 business days)",
              "min_business_days": 3, "max_business_days": 7,   0..60, min <= max
              "brackets": [                    ascending up_to_grams, price_minor >= 0; a parcel
                {"up_to_grams": 500, "price_minor": 499},       costs the first bracket whose
                {"up_to_grams": 2000, "price_minor": 799}       up_to_grams >= its weight; heavier
              ]                                than the last bracket: the method is not offered
            }
          }
        }
      ]
    }
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipping_svc.domain import COUNTRY_CODES

DEFAULT_RATES_FILE = Path(__file__).with_name("data") / "rates.json"


class Method(enum.Enum):
    STANDARD = "standard"
    EXPRESS = "express"
    OVERNIGHT = "overnight"


@dataclass(frozen=True)
class Bracket:
    up_to_grams: int
    price_minor: int


@dataclass(frozen=True)
class MethodRate:
    method: Method
    display_name: str
    min_business_days: int
    max_business_days: int
    brackets: tuple[Bracket, ...]

    def price_minor(self, weight_grams: int) -> int | None:
        """The price of a parcel of this weight; None when it is heavier than the last bracket."""
        for bracket in self.brackets:
            if weight_grams <= bracket.up_to_grams:
                return bracket.price_minor
        return None


@dataclass(frozen=True)
class Zone:
    name: str
    countries: frozenset[str]
    free_shipping_threshold_minor: int | None
    methods: Mapping[Method, MethodRate]


@dataclass(frozen=True)
class RateTable:
    currency_code: str
    zones: tuple[Zone, ...]

    def zone_of(self, country_code: str) -> Zone | None:
        return next((zone for zone in self.zones if country_code in zone.countries), None)


class RateFileError(ValueError):
    """The rate file is unreadable or breaks the format; the message names the place."""


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise RateFileError(f"{where}: {problem}")


def _int(value: Any, where: str, minimum: int, maximum: int) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), where, "must be an integer")
    _require(minimum <= value <= maximum, where, f"must be between {minimum} and {maximum}")
    return int(value)


def _method(name: str, raw: Any, where: str) -> MethodRate:
    _require(isinstance(raw, dict), where, "must be an object")
    unknown = set(raw) - {"display_name", "min_business_days", "max_business_days", "brackets"}
    _require(not unknown, where, f"unknown keys {sorted(unknown)}")
    display_name = raw.get("display_name")
    _require(isinstance(display_name, str) and 0 < len(display_name) <= 100, f"{where}.display_name", "1..100 chars")
    low = _int(raw.get("min_business_days"), f"{where}.min_business_days", 0, 60)
    high = _int(raw.get("max_business_days"), f"{where}.max_business_days", 0, 60)
    _require(low <= high, where, "min_business_days must not exceed max_business_days")
    brackets_raw = raw.get("brackets")
    _require(isinstance(brackets_raw, list) and len(brackets_raw) > 0, f"{where}.brackets", "must be a non-empty list")
    brackets = []
    for index, bracket in enumerate(brackets_raw):
        at = f"{where}.brackets[{index}]"
        _require(
            isinstance(bracket, dict) and set(bracket) == {"up_to_grams", "price_minor"},
            at,
            "must be {up_to_grams, price_minor}",
        )
        brackets.append(
            Bracket(
                _int(bracket["up_to_grams"], f"{at}.up_to_grams", 1, 10_000_000_000),
                _int(bracket["price_minor"], f"{at}.price_minor", 0, 100_000_000),
            )
        )
        if index:
            _require(brackets[-1].up_to_grams > brackets[-2].up_to_grams, f"{at}.up_to_grams", "must ascend")
    return MethodRate(Method(name), display_name, low, high, tuple(brackets))


def parse_rate_table(raw: Any) -> RateTable:
    _require(isinstance(raw, dict), "rates", "must be a JSON object")
    unknown = set(raw) - {"currency_code", "zones"}
    _require(not unknown, "rates", f"unknown keys {sorted(unknown)}")
    currency = raw.get("currency_code")
    _require(
        isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency) is not None,
        "currency_code",
        "must be a 3-letter ISO 4217 code",
    )
    zones_raw = raw.get("zones")
    _require(isinstance(zones_raw, list) and len(zones_raw) > 0, "zones", "must be a non-empty list")
    zones: list[Zone] = []
    seen_countries: dict[str, str] = {}
    for index, zone in enumerate(zones_raw):
        where = f"zones[{index}]"
        _require(isinstance(zone, dict), where, "must be an object")
        unknown = set(zone) - {"name", "countries", "free_shipping_threshold_minor", "methods"}
        _require(not unknown, where, f"unknown keys {sorted(unknown)}")
        name = zone.get("name")
        _require(
            isinstance(name, str) and re.fullmatch(r"[a-z_]{1,40}", name) is not None,
            f"{where}.name",
            "must be 1..40 characters of [a-z_]",
        )
        _require(all(existing.name != name for existing in zones), f"{where}.name", f"{name!r} is used twice")
        countries = zone.get("countries")
        _require(isinstance(countries, list) and len(countries) > 0, f"{where}.countries", "must be a non-empty list")
        for country in countries:
            _require(country in COUNTRY_CODES, f"{where}.countries", f"{country!r} is not an ISO 3166-1 alpha-2 code")
            _require(
                country not in seen_countries,
                f"{where}.countries",
                f"{country} is already in zone {seen_countries.get(country)!r}",
            )
            seen_countries[country] = str(name)
        threshold = zone.get("free_shipping_threshold_minor")
        if threshold is not None:
            threshold = _int(threshold, f"{where}.free_shipping_threshold_minor", 0, 100_000_000_000)
        methods_raw = zone.get("methods")
        _require(
            isinstance(methods_raw, dict) and len(methods_raw) > 0, f"{where}.methods", "must be a non-empty object"
        )
        methods: dict[Method, MethodRate] = {}
        for method_name, method in methods_raw.items():
            _require(
                method_name in {m.value for m in Method},
                f"{where}.methods",
                f"{method_name!r} is not standard, express or overnight",
            )
            rate = _method(method_name, method, f"{where}.methods.{method_name}")
            methods[rate.method] = rate
        zones.append(Zone(str(name), frozenset(countries), threshold, methods))
    return RateTable(currency, tuple(zones))


def load_rate_table(path: Path) -> RateTable:
    """Reads and validates the file; RateFileError names the file and the problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RateFileError(f"{path}: cannot be read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise RateFileError(f"{path}: not JSON (line {error.lineno}: {error.msg})") from None
    try:
        return parse_rate_table(raw)
    except RateFileError as error:
        raise RateFileError(f"{path}: {error}") from None
