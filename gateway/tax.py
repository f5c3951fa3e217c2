"""Tax from a rate table (`tax_rates.json`): a rate in parts per million per country and region, and
whether the jurisdiction taxes shipping. Pure: no I/O after the table is loaded.

Rounding rule: the tax base (subtotal − discount, plus shipping where it is taxed) is multiplied by the
rate once and rounded half up to the currency's minor unit; lines are not rounded one by one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PPM = 1_000_000
TABLE = Path(__file__).with_name("tax_rates.json")


@dataclass(frozen=True)
class TaxRate:
    rate_ppm: int
    shipping_taxed: bool

    @property
    def basis_points(self) -> int:
        """The rate rounded half up to basis points (the contract's deprecated field)."""
        return (self.rate_ppm + 50) // 100


NO_TAX = TaxRate(0, False)


@dataclass(frozen=True)
class TaxTable:
    rates: Mapping[tuple[str, str], TaxRate]

    @classmethod
    def load(cls, path: Path = TABLE) -> TaxTable:
        document = json.loads(path.read_text())
        rates: dict[tuple[str, str], TaxRate] = {}
        for entry in document["jurisdictions"]:
            rate = int(entry["rate_ppm"])
            if not 0 <= rate <= PPM:
                raise ValueError(f"{path}: rate_ppm {rate} is outside 0..{PPM}")
            rates[(str(entry["country"]).upper(), str(entry["region"]).upper())] = TaxRate(
                rate, bool(entry["shipping_taxed"])
            )
        return cls(rates)

    def rate_for(self, country_code: str, region: str) -> TaxRate:
        key = (country_code.upper(), region.upper())
        return self.rates.get(key) or self.rates.get((key[0], "")) or NO_TAX


def tax_minor(rate: TaxRate, *, subtotal_minor: int, discount_minor: int, shipping_minor: int) -> int:
    """Tax in minor units, rounded half up once on the whole base."""
    base = subtotal_minor - discount_minor + (shipping_minor if rate.shipping_taxed else 0)
    if base < 0:
        raise ValueError("the tax base is negative")
    return (base * rate.rate_ppm + PPM // 2) // PPM
