"""Value types every service's domain shares: the twins of `shop.type.v1` (Money, LineItem, Address).

Money is an integer amount of a currency's minor unit, never a float anywhere between the wire and the
database. `service_runtime.wire` converts these to and from their protobuf messages.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Money:
    #: ISO 4217 alphabetic code, e.g. "USD".
    currency_code: str
    #: Amount in the currency's minor unit (cents for USD, yen for JPY).
    amount_minor: int


@dataclass(frozen=True, order=True)
class LineItem:
    """Units of one SKU. Ordered by SKU: the order rows are locked in and lines are compared in."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class Address:
    """A postal address; an absent field is "" as in proto3 (validation says which are required)."""

    recipient_name: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""
    phone: str = ""
