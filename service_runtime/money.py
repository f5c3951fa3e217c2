"""Money as every service's domain sees it: an integer amount of a currency's minor unit.

The twin of `shop.type.v1.Money` on the wire; never a float anywhere in between.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Money:
    #: ISO 4217 alphabetic code, e.g. "USD".
    currency_code: str
    #: Amount in the currency's minor unit (cents for USD, yen for JPY).
    amount_minor: int
