"""What a valid inventory command is, and what each reservation state allows. No I/O, no writes."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from inventory_svc.domain import refusals
from inventory_svc.domain.commands import (
    AdjustStock,
    ConfirmReservation,
    ExtendReservation,
    ReleaseReservation,
    ReserveInventory,
    ReturnStock,
    UpsertProduct,
)
from inventory_svc.domain.model import (
    MAX_ADJUSTMENT,
    MAX_LINE_QUANTITY,
    MAX_LINES,
    MAX_PRICE_MINOR,
    MAX_TTL_SECONDS,
    MAX_WEIGHT_GRAMS,
    MIN_TTL_SECONDS,
    AdjustmentReason,
    Availability,
    Movement,
    Reservation,
    ReservationStatus,
)
from service_runtime.errors import FailedPrecondition, Violations
from service_runtime.validation import check_id, check_line_items, check_money, check_text
from service_runtime.values import LineItem, Money

# Validation: each raises one INVALID_ARGUMENT naming every bad field.


def _check_lines(violations: Violations, lines: Sequence[LineItem], field: str) -> None:
    check_line_items(violations, lines, field, max_lines=MAX_LINES, max_quantity=MAX_LINE_QUANTITY)


def _check_ttl(violations: Violations, ttl_seconds: float | None, field: str, *, required: bool) -> None:
    if ttl_seconds is None:
        if required:
            violations.add(field, "is required")
        return
    if not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        violations.add(field, f"must be between {MIN_TTL_SECONDS:g} s and {MAX_TTL_SECONDS:g} s")


def validate_upsert(command: UpsertProduct, *, shop_currency: str) -> Money:
    """Returns the product's price."""
    v = Violations()
    check_id(v, command.sku, "sku")
    check_text(v, command.name, "name", maximum=200, required=True)
    check_money(v, command.price, "price", maximum_minor=MAX_PRICE_MINOR, currency=shop_currency)
    if not 0 <= command.weight_grams <= MAX_WEIGHT_GRAMS:
        v.add("weight_grams", f"must be between 0 and {MAX_WEIGHT_GRAMS}")
    v.raise_if_any()
    assert command.price is not None  # checked above
    return command.price


def validate_sku(sku: str) -> None:
    v = Violations()
    check_id(v, sku, "sku")
    v.raise_if_any()


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
    """Returns the adjustment's reason."""
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
    _check_lines(v, command.lines, "items")
    _check_ttl(v, command.ttl_seconds, "ttl", required=False)
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
    """Returns the extension's TTL in seconds."""
    v = Violations()
    check_id(v, command.checkout_id, "checkout_id")
    _check_ttl(v, command.ttl_seconds, "ttl", required=True)
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
    _check_lines(v, command.lines, "items")
    check_text(v, command.reason, "reason", maximum=200, required=True)
    v.raise_if_any()


def validate_availability_check(lines: Sequence[LineItem]) -> None:
    v = Violations()
    _check_lines(v, lines, "items")
    v.raise_if_any()


def check_known_skus(lines: Sequence[LineItem], known: set[str], field: str = "items") -> None:
    """INVALID_ARGUMENT naming every line whose SKU is not in the catalogue."""
    v = Violations()
    for index, line in enumerate(lines):
        if line.sku not in known:
            v.add(f"{field}[{index}].sku", f"unknown SKU {line.sku}")
    v.raise_if_any()


def check_not_discontinued(lines: Sequence[LineItem], discontinued: set[str]) -> None:
    """FAILED_PRECONDITION PRODUCT_DISCONTINUED naming the first line whose product left the catalogue."""
    for line in lines:
        if line.sku in discontinued:
            raise FailedPrecondition(
                f"product {line.sku} is discontinued and can no longer be reserved",
                reason="PRODUCT_DISCONTINUED",
                metadata={"sku": line.sku},
            )


# Decisions


def normalised(lines: Sequence[LineItem]) -> tuple[LineItem, ...]:
    """Lines in SKU order: the fixed lock order, and the form in which two requests are compared."""
    return tuple(sorted(lines))


def check_replay(existing: Reservation, requested: Sequence[LineItem]) -> None:
    """A reserve for a checkout that already has a reservation is a replay only if the lines match.

    A released or expired reservation replays as it is now (the caller sees its status); a release
    recorded before any reserve refuses the reserve instead."""
    if existing.is_release_marker:
        raise refusals.released_before_reserve(existing.checkout_id)
    if normalised(existing.lines) != normalised(requested):
        raise refusals.checkout_already_reserved(existing.checkout_id)


def shortages(lines: Sequence[LineItem], available: Mapping[str, int]) -> list[Availability]:
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


def decide_confirm(reservation: Reservation, order_id: str) -> Transition:
    if reservation.status is ReservationStatus.CONFIRMED:
        if reservation.order_id == order_id:
            return Transition.ALREADY_DONE
        raise refusals.confirmed_for_other_order(reservation)
    if reservation.status is not ReservationStatus.ACTIVE:
        raise refusals.reservation_ended(reservation)
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def decide_release(reservation: Reservation) -> Transition:
    """RELEASED/EXPIRED: nothing to do. ACTIVE past its expiry: it expired (EXPIRE_FIRST), whoever asks."""
    if reservation.status is ReservationStatus.CONFIRMED:
        raise refusals.already_sold(reservation)
    if reservation.status is not ReservationStatus.ACTIVE:
        return Transition.ALREADY_DONE
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def decide_extend(reservation: Reservation) -> Transition:
    if reservation.status is ReservationStatus.CONFIRMED:
        raise refusals.already_confirmed(reservation)
    if reservation.status is not ReservationStatus.ACTIVE:
        raise refusals.reservation_ended(reservation)
    return Transition.EXPIRE_FIRST if reservation.past_expiry else Transition.PROCEED


def check_adjustment_replay(command: AdjustStock, recorded: Movement) -> None:
    """The same key twice is a replay only with the same adjustment."""
    asked = (command.sku, command.delta, command.reason.value if command.reason else "", command.note)
    if asked != (recorded.sku, recorded.delta, recorded.reason, recorded.note):
        raise refusals.idempotency_key_reused(command.idempotency_key)


def check_return(command: ReturnStock, sold: Sequence[LineItem]) -> None:
    """A return may bring back at most what the order bought, SKU by SKU."""
    bought = {line.sku: line.quantity for line in sold}
    excess = [line for line in command.lines if line.quantity > bought.get(line.sku, 0)]
    if excess:
        raise refusals.return_exceeds_sold(command.order_id, excess, bought)


def check_return_replay(command: ReturnStock, recorded: Sequence[Movement]) -> None:
    if normalised(command.lines) != normalised([LineItem(m.sku, m.delta) for m in recorded]):
        raise refusals.order_already_returned(command.order_id)
