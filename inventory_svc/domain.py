"""Inventory's business rules, free of I/O: what a valid request is and what each state allows.

Stock figures: `stock_on_hand` counts units in the warehouse (sold units excluded), `reserved` counts
units held by active reservations, and `available = stock_on_hand - reserved` is what a new
reservation may take. A reservation belongs to one checkout and moves once out of ACTIVE:

    ACTIVE ──confirm──▶ CONFIRMED        (stock_on_hand and reserved both drop)
       │──release──▶ RELEASED            (reserved drops)
       └──expiry───▶ EXPIRED             (reserved drops; by the sweeper or by the next call that sees it)
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from service_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    Violations,
)
from service_runtime.money import Money

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
MAX_ADJUSTMENT = 1_000_000
MAX_PRICE_MINOR = 100_000_000_000
MAX_STOCK = 1_000_000_000  # also a CHECK on inventory.products
MAX_WEIGHT_GRAMS = 1_000_000
MIN_TTL_SECONDS = 1.0
MAX_TTL_SECONDS = 24 * 3600.0
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


class ReservationStatus(enum.Enum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class AdjustmentReason(enum.Enum):
    RECEIVED = "received"
    RECOUNT = "recount"
    DAMAGED = "damaged"
    LOST = "lost"
    OTHER = "other"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Money
    weight_grams: int
    stock_on_hand: int
    reserved: int
    updated_at: datetime

    @property
    def available(self) -> int:
        return self.stock_on_hand - self.reserved


@dataclass(frozen=True, order=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Reservation:
    checkout_id: str
    status: ReservationStatus
    lines: tuple[Line, ...]
    expires_at: datetime
    created_at: datetime
    confirmed_at: datetime | None
    released_at: datetime | None
    order_id: str | None
    release_reason: str
    past_expiry: bool = False

    @property
    def is_release_marker(self) -> bool:
        """A release recorded before any reservation arrived: it holds nothing and blocks a late reserve."""
        return self.status is ReservationStatus.RELEASED and not self.lines


@dataclass(frozen=True)
class Availability:
    sku: str
    requested: int
    available: int

    @property
    def sufficient(self) -> bool:
        return self.available >= self.requested


# Commands: one per use case, validated before any I/O.


@dataclass(frozen=True)
class UpsertProduct:
    sku: str
    name: str
    price: Money | None
    weight_grams: int


@dataclass(frozen=True)
class AdjustStock:
    sku: str
    delta: int
    reason: AdjustmentReason | None
    note: str
    idempotency_key: str


@dataclass(frozen=True)
class ReserveInventory:
    checkout_id: str
    lines: tuple[Line, ...]
    ttl_seconds: float | None


@dataclass(frozen=True)
class ConfirmReservation:
    checkout_id: str
    order_id: str


@dataclass(frozen=True)
class ReleaseReservation:
    checkout_id: str
    reason: str


@dataclass(frozen=True)
class ExtendReservation:
    checkout_id: str
    ttl_seconds: float | None


@dataclass(frozen=True)
class ReturnStock:
    order_id: str
    lines: tuple[Line, ...]
    reason: str


# Validation


def check_id(violations: Violations, value: str, field: str) -> None:
    if not value:
        violations.add(field, "is required")
    elif not ID_PATTERN.fullmatch(value):
        violations.add(field, "must be 1..64 characters of [A-Za-z0-9._-]")


def check_text(violations: Violations, value: str, field: str, *, maximum: int, required: bool) -> None:
    if required and not value.strip():
        violations.add(field, "is required")
    elif len(value) > maximum:
        violations.add(field, f"must be at most {maximum} characters")
    elif "\x00" in value:
        violations.add(field, "must not contain NUL characters")


def check_lines(
    violations: Violations, lines: Sequence[Line], field: str, *, max_quantity: int = MAX_LINE_QUANTITY
) -> None:
    if not lines:
        violations.add(field, "must have at least one line")
        return
    if len(lines) > MAX_LINES:
        violations.add(field, f"must have at most {MAX_LINES} lines")
        return
    seen: set[str] = set()
    for index, line in enumerate(lines):
        check_id(violations, line.sku, f"{field}[{index}].sku")
        if line.sku in seen:
            violations.add(f"{field}[{index}].sku", f"duplicates an earlier line for {line.sku}")
        seen.add(line.sku)
        if not 1 <= line.quantity <= max_quantity:
            violations.add(f"{field}[{index}].quantity", f"must be between 1 and {max_quantity}")


def check_ttl(violations: Violations, ttl_seconds: float | None, field: str, *, required: bool) -> None:
    if ttl_seconds is None:
        if required:
            violations.add(field, "is required")
        return
    if not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        violations.add(field, f"must be between {MIN_TTL_SECONDS:g} s and {MAX_TTL_SECONDS:g} s")


def validate_upsert(command: UpsertProduct, *, shop_currency: str) -> Money:
    """Raises INVALID_ARGUMENT for a bad product; returns its price."""
    v = Violations()
    check_id(v, command.sku, "sku")
    check_text(v, command.name, "name", maximum=200, required=True)
    if command.price is None:
        v.add("price", "is required")
    else:
        if command.price.currency_code != shop_currency:
            v.add("price.currency_code", f"must be {shop_currency}, the currency this shop sells in")
        if not 0 <= command.price.amount_minor <= MAX_PRICE_MINOR:
            v.add("price.amount_minor", f"must be between 0 and {MAX_PRICE_MINOR}")
    if not 0 <= command.weight_grams <= MAX_WEIGHT_GRAMS:
        v.add("weight_grams", f"must be between 0 and {MAX_WEIGHT_GRAMS}")
    v.raise_if_any()
    assert command.price is not None  # checked above
    return command.price


def validate_skus(skus: Sequence[str], field: str) -> None:
    v = Violations()
    if not skus:
        v.add(field, "must name at least one SKU")
    elif len(skus) > MAX_LINES:
        v.add(field, f"must name at most {MAX_LINES} SKUs")
    else:
        seen: set[str] = set()
        for index, sku in enumerate(skus):
            check_id(v, sku, f"{field}[{index}]")
            if sku in seen:
                v.add(f"{field}[{index}]", f"duplicates an earlier entry {sku}")
            seen.add(sku)
    v.raise_if_any()


#: The sign each adjustment reason allows (None: either).
_REASON_SIGNS = {
    AdjustmentReason.RECEIVED: 1,
    AdjustmentReason.DAMAGED: -1,
    AdjustmentReason.LOST: -1,
    AdjustmentReason.RECOUNT: None,
    AdjustmentReason.OTHER: None,
}


def validate_adjustment(command: AdjustStock) -> AdjustmentReason:
    """Raises INVALID_ARGUMENT for a bad adjustment; returns its reason."""
    v = Violations()
    check_id(v, command.sku, "sku")
    if command.delta == 0 or abs(command.delta) > MAX_ADJUSTMENT:
        v.add("delta", f"must be non-zero and between -{MAX_ADJUSTMENT} and {MAX_ADJUSTMENT}")
    if command.reason is None:
        v.add("reason", "is required")
    elif (sign := _REASON_SIGNS[command.reason]) is not None and command.delta * sign < 0:
        v.add("reason", f"{command.reason.value} needs a {'positive' if sign > 0 else 'negative'} delta")
    check_text(v, command.note, "note", maximum=500, required=False)
    check_text(v, command.idempotency_key, "idempotency_key", maximum=128, required=True)
    v.raise_if_any()
    assert command.reason is not None  # checked above
    return command.reason


def validate_reserve(command: ReserveInventory) -> None:
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    check_lines(v, command.lines, "items")
    check_ttl(v, command.ttl_seconds, "ttl", required=False)
    v.raise_if_any()


def validate_confirm(command: ConfirmReservation) -> None:
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    check_id(v, command.order_id, "order_id")
    v.raise_if_any()


def validate_release(command: ReleaseReservation) -> None:
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    check_text(v, command.reason, "reason", maximum=200, required=True)
    v.raise_if_any()


def validate_extend(command: ExtendReservation) -> float:
    """Raises INVALID_ARGUMENT for a bad extension; returns its TTL in seconds."""
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    check_ttl(v, command.ttl_seconds, "ttl", required=True)
    v.raise_if_any()
    assert command.ttl_seconds is not None  # checked above
    return command.ttl_seconds


def validate_checkout_id(checkout_id: str) -> None:
    v = Violations()
    check_id(v, checkout_id, "checkout_id")
    v.raise_if_any()


def validate_return(command: ReturnStock) -> None:
    v = Violations()
    check_id(v, command.order_id, "order_id")
    check_lines(v, command.lines, "items")
    check_text(v, command.reason, "reason", maximum=200, required=True)
    v.raise_if_any()


def validate_availability_check(lines: Sequence[Line]) -> None:
    v = Violations()
    check_lines(v, lines, "items")
    v.raise_if_any()


def unknown_skus(lines: Sequence[Line], known: set[str], field: str = "items") -> None:
    """Raises INVALID_ARGUMENT naming every line whose SKU is not in the catalogue."""
    v = Violations()
    for index, line in enumerate(lines):
        if line.sku not in known:
            v.add(f"{field}[{index}].sku", f"unknown SKU {line.sku}")
    v.raise_if_any()


def checked_page_size(requested: int) -> int:
    v = Violations()
    v.check(0 <= requested <= MAX_PAGE_SIZE, "page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
    v.raise_if_any()
    return requested or DEFAULT_PAGE_SIZE


# Decisions


def normalised(lines: Sequence[Line]) -> tuple[Line, ...]:
    """Lines in SKU order: the fixed lock order, and the form in which two requests are compared."""
    return tuple(sorted(lines))


def check_replay(existing: Reservation, requested: Sequence[Line]) -> None:
    """A reserve for a checkout that already has a reservation is a replay only if the lines match.

    A released or expired reservation replays as it is now (the caller sees its status); a release
    recorded before any reserve refuses the reserve instead."""
    if existing.is_release_marker:
        raise FailedPrecondition(
            f"checkout {existing.checkout_id} was released before this reservation arrived",
            reason="RESERVATION_RELEASED",
            metadata={"checkout_id": existing.checkout_id},
        )
    if normalised(existing.lines) != normalised(requested):
        raise AlreadyExists(
            f"checkout {existing.checkout_id} already holds a reservation with different lines",
            reason="CHECKOUT_ALREADY_RESERVED",
            metadata={"checkout_id": existing.checkout_id},
        )


class InsufficientStock(FailedPrecondition):
    """Some lines cannot be reserved in full; `shortages` names each with requested and available units."""

    def __init__(self, shortages: Sequence[Availability]) -> None:
        self.shortages = tuple(sorted(shortages, key=lambda a: a.sku))
        super().__init__(
            "not enough stock: "
            + ", ".join(f"{a.sku} (requested {a.requested}, available {a.available})" for a in self.shortages),
            reason="INSUFFICIENT_STOCK",
            metadata={"skus": ",".join(a.sku for a in self.shortages)},
            violations=[
                PreconditionViolation("STOCK", f"sku:{a.sku}", f"requested {a.requested}, available {a.available}")
                for a in self.shortages
            ],
        )


def shortages(lines: Sequence[Line], available: Mapping[str, int]) -> list[Availability]:
    """The lines that `available` units per SKU cannot cover."""
    return [
        Availability(line.sku, line.quantity, max(available[line.sku], 0))
        for line in lines
        if available[line.sku] < line.quantity
    ]


class Transition(enum.Enum):
    """What a call on an existing reservation should do, decided from its state alone."""

    PROCEED = "proceed"
    ALREADY_DONE = "already_done"
    EXPIRE_FIRST = "expire_first"


def not_found(checkout_id: str) -> NotFound:
    return NotFound(
        f"checkout {checkout_id} has no reservation",
        reason="RESERVATION_NOT_FOUND",
        metadata={"checkout_id": checkout_id},
    )


def _ended(reservation: Reservation) -> FailedPrecondition:
    reason = "RESERVATION_EXPIRED" if reservation.status is ReservationStatus.EXPIRED else "RESERVATION_RELEASED"
    return FailedPrecondition(
        f"the reservation of checkout {reservation.checkout_id} is {reservation.status.value}",
        reason=reason,
        metadata={"checkout_id": reservation.checkout_id, "status": reservation.status.value},
    )


def decide_confirm(reservation: Reservation, order_id: str) -> Transition:
    if reservation.status is ReservationStatus.CONFIRMED:
        if reservation.order_id == order_id:
            return Transition.ALREADY_DONE
        raise FailedPrecondition(
            f"the reservation of checkout {reservation.checkout_id} was confirmed for another order",
            reason="RESERVATION_CONFIRMED_FOR_OTHER_ORDER",
            metadata={"checkout_id": reservation.checkout_id, "order_id": reservation.order_id or ""},
        )
    if reservation.status is not ReservationStatus.ACTIVE:
        raise _ended(reservation)
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def decide_release(reservation: Reservation) -> Transition:
    """RELEASED/EXPIRED: nothing to do. ACTIVE past its expiry: it expired (EXPIRE_FIRST), whoever asks."""
    if reservation.status is ReservationStatus.CONFIRMED:
        raise FailedPrecondition(
            f"the reservation of checkout {reservation.checkout_id} was sold to order {reservation.order_id}; "
            "use ReturnStock",
            reason="RESERVATION_CONFIRMED",
            metadata={"checkout_id": reservation.checkout_id, "order_id": reservation.order_id or ""},
        )
    if reservation.status is not ReservationStatus.ACTIVE:
        return Transition.ALREADY_DONE
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def decide_extend(reservation: Reservation) -> Transition:
    if reservation.status is ReservationStatus.CONFIRMED:
        raise FailedPrecondition(
            f"the reservation of checkout {reservation.checkout_id} is already confirmed",
            reason="RESERVATION_CONFIRMED",
            metadata={"checkout_id": reservation.checkout_id},
        )
    if reservation.status is not ReservationStatus.ACTIVE:
        raise _ended(reservation)
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def expired_error(checkout_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the reservation of checkout {checkout_id} expired",
        reason="RESERVATION_EXPIRED",
        metadata={"checkout_id": checkout_id, "status": ReservationStatus.EXPIRED.value},
    )


def check_adjustment_replay(command: AdjustStock, sku: str, delta: int, reason: str, note: str) -> None:
    if (command.sku, command.delta, command.reason.value if command.reason else "", command.note) != (
        sku,
        delta,
        reason,
        note,
    ):
        raise AlreadyExists(
            "idempotency_key was already used for a different stock adjustment",
            reason="IDEMPOTENCY_KEY_REUSED",
            metadata={"idempotency_key": command.idempotency_key},
        )


def stock_limit_exceeded(sku: str, stock_on_hand: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"stock of {sku} would exceed {MAX_STOCK} units",
        reason="STOCK_LIMIT_EXCEEDED",
        metadata={"sku": sku, "stock_on_hand": str(stock_on_hand)},
    )


def adjustment_refused(product: Product, delta: int) -> FailedPrecondition:
    after = product.stock_on_hand + delta
    if after > MAX_STOCK:
        return stock_limit_exceeded(product.sku, product.stock_on_hand)
    return FailedPrecondition(
        f"stock of {product.sku} would drop to {after}, below the {product.reserved} units reserved",
        reason="STOCK_BELOW_RESERVED",
        metadata={"sku": product.sku, "stock_on_hand": str(product.stock_on_hand), "reserved": str(product.reserved)},
    )


def product_not_found(sku: str) -> NotFound:
    return NotFound(f"no product with SKU {sku}", reason="PRODUCT_NOT_FOUND", metadata={"sku": sku})


def check_return(command: ReturnStock, sold: Sequence[Line]) -> None:
    """A return may bring back at most what the order bought, SKU by SKU."""
    bought = {line.sku: line.quantity for line in sold}
    excess = [line for line in command.lines if line.quantity > bought.get(line.sku, 0)]
    if excess:
        raise FailedPrecondition(
            "the return exceeds what order "
            + command.order_id
            + " bought: "
            + ", ".join(f"{line.sku} (returning {line.quantity}, sold {bought.get(line.sku, 0)})" for line in excess),
            reason="RETURN_EXCEEDS_SOLD",
            metadata={"order_id": command.order_id, "skus": ",".join(line.sku for line in excess)},
            violations=[
                PreconditionViolation(
                    "RETURN", f"sku:{line.sku}", f"returning {line.quantity}, sold {bought.get(line.sku, 0)}"
                )
                for line in excess
            ],
        )


def check_return_replay(command: ReturnStock, recorded: Sequence[Line]) -> None:
    if normalised(command.lines) != normalised(recorded):
        raise AlreadyExists(
            f"order {command.order_id} was already returned with different lines",
            reason="ORDER_ALREADY_RETURNED",
            metadata={"order_id": command.order_id},
        )


def order_not_confirmed(order_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"no reservation was confirmed for order {order_id}",
        reason="ORDER_NOT_CONFIRMED",
        metadata={"order_id": order_id},
    )


def order_already_confirmed(order_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"order {order_id} already confirmed another checkout's reservation",
        reason="ORDER_ID_IN_USE",
        metadata={"order_id": order_id},
    )


def encode_page_token(last_sku: str, in_stock_only: bool) -> str:
    """An opaque ListProducts token: where the page ended, and for which filter."""
    return base64.urlsafe_b64encode(f"v1|{int(in_stock_only)}|{last_sku}".encode()).decode().rstrip("=")


def decode_page_token(token: str, in_stock_only: bool) -> str:
    """The SKU after which the next page starts ("" for the first page)."""
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, flag, last_sku = raw.split("|", 2)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    if version != "v1" or not ID_PATTERN.fullmatch(last_sku):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
    if flag != str(int(in_stock_only)):
        raise InvalidArgument([FieldViolation("page_token", "was issued for a different query")])
    return last_sku
