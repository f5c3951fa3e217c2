"""Converters between the domain's value types and their protobuf twins, for every servicer.

shop.type.v1 (Money, LineItem, Address) ↔ service_runtime.values, and the well-known types
(Timestamp ↔ aware datetime, Duration ↔ seconds). Servicers call these; domains never see protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2

from service_runtime import errors
from service_runtime.values import Address, LineItem, Money
from shop.type.v1 import address_pb2, line_item_pb2, money_pb2


def money_in(message: money_pb2.Money) -> Money:
    return Money(currency_code=message.currency_code, amount_minor=message.amount_minor)


def optional_money_in(holder: object, field: str) -> Money | None:
    """The Money in `holder.<field>`, or None when the field is unset (proto3 message presence)."""
    return money_in(getattr(holder, field)) if holder.HasField(field) else None  # type: ignore[attr-defined]


def money_out(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def line_items_in(items: Iterable[line_item_pb2.LineItem]) -> tuple[LineItem, ...]:
    return tuple(LineItem(item.sku, item.quantity) for item in items)


def line_items_out(lines: Iterable[LineItem]) -> list[line_item_pb2.LineItem]:
    return [line_item_pb2.LineItem(sku=line.sku, quantity=line.quantity) for line in lines]


def address_in(message: address_pb2.Address) -> Address:
    return Address(
        recipient_name=message.recipient_name,
        line1=message.line1,
        line2=message.line2,
        city=message.city,
        region=message.region,
        postal_code=message.postal_code,
        country_code=message.country_code,
        phone=message.phone,
    )


def address_out(address: Address) -> address_pb2.Address:
    return address_pb2.Address(
        recipient_name=address.recipient_name,
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        region=address.region,
        postal_code=address.postal_code,
        country_code=address.country_code,
        phone=address.phone,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_out(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for an aware datetime; None (the field stays unset) for None."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    timestamp_into(stamp, moment)
    return stamp


def timestamp_into(field: timestamp_pb2.Timestamp, moment: datetime | None) -> None:
    """Sets a message's Timestamp field in place (no copy of a new Timestamp) from a datetime, exactly (whole
    microseconds; a naive one is taken as UTC); leaves it unset for None."""
    if moment is None:
        return
    # Integer arithmetic on the timedelta since the epoch: half the CPU of protobuf's pure-Python
    # FromDatetime (a utctimetuple and calendar.timegm), and every response carries several timestamps.
    since_epoch = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)) - _EPOCH
    field.seconds = since_epoch.days * 86_400 + since_epoch.seconds
    field.nanos = since_epoch.microseconds * 1000


def timestamp_in(stamp: timestamp_pb2.Timestamp, field: str = "timestamp") -> datetime:
    """An aware datetime; INVALID_ARGUMENT naming `field` for a Timestamp outside its range (nanos not in
    0..999,999,999, or seconds outside years 1..9999), which the wire format cannot refuse by itself."""
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise errors.InvalidArgument(
            [errors.FieldViolation(field, "must be a valid timestamp between years 1 and 9999")]
        ) from None


def seconds_in(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def optional_seconds_in(holder: object, field: str) -> float | None:
    """The Duration in `holder.<field>` in seconds, or None when the field is unset."""
    return seconds_in(getattr(holder, field)) if holder.HasField(field) else None  # type: ignore[attr-defined]


def duration_out(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration
