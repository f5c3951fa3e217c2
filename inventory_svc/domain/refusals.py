"""The errors inventory answers with. Each has a stable ErrorInfo reason (listed in the contract) and
lowerCamelCase metadata; a status in metadata is the contract's enum value name."""

from __future__ import annotations

from collections.abc import Sequence

from inventory_svc.domain.model import MAX_STOCK, Availability, Product, Reservation, ReservationStatus
from service_runtime.errors import AlreadyExists, FailedPrecondition, NotFound, PreconditionViolation
from service_runtime.values import LineItem


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


def product_not_found(sku: str) -> NotFound:
    return NotFound(f"no product with SKU {sku}", reason="PRODUCT_NOT_FOUND", metadata={"sku": sku})


def reservation_not_found(checkout_id: str) -> NotFound:
    return NotFound(
        f"checkout {checkout_id} has no reservation",
        reason="RESERVATION_NOT_FOUND",
        metadata={"checkoutId": checkout_id},
    )


def released_before_reserve(checkout_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"checkout {checkout_id} was released before this reservation arrived",
        reason="RESERVATION_RELEASED",
        metadata={"checkoutId": checkout_id, "status": ReservationStatus.RELEASED.contract_name},
    )


def checkout_already_reserved(checkout_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"checkout {checkout_id} already holds a reservation with different lines",
        reason="CHECKOUT_ALREADY_RESERVED",
        metadata={"checkoutId": checkout_id},
    )


def reservation_ended(reservation: Reservation) -> FailedPrecondition:
    """The reservation is RELEASED or EXPIRED: it can no longer be confirmed or extended."""
    reason = "RESERVATION_EXPIRED" if reservation.status is ReservationStatus.EXPIRED else "RESERVATION_RELEASED"
    return FailedPrecondition(
        f"the reservation of checkout {reservation.checkout_id} is {reservation.status.value}",
        reason=reason,
        metadata={"checkoutId": reservation.checkout_id, "status": reservation.status.contract_name},
    )


def reservation_expired(checkout_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the reservation of checkout {checkout_id} expired",
        reason="RESERVATION_EXPIRED",
        metadata={"checkoutId": checkout_id, "status": ReservationStatus.EXPIRED.contract_name},
    )


def confirmed_for_other_order(reservation: Reservation) -> FailedPrecondition:
    return FailedPrecondition(
        f"the reservation of checkout {reservation.checkout_id} was confirmed for another order",
        reason="RESERVATION_CONFIRMED_FOR_OTHER_ORDER",
        metadata={"checkoutId": reservation.checkout_id, "orderId": reservation.order_id or ""},
    )


def already_sold(reservation: Reservation) -> FailedPrecondition:
    """A sold reservation cannot be released (its stock comes back through ReturnStock)."""
    return FailedPrecondition(
        f"the reservation of checkout {reservation.checkout_id} was sold to order {reservation.order_id}; "
        "use ReturnStock",
        reason="RESERVATION_CONFIRMED",
        metadata={"checkoutId": reservation.checkout_id, "orderId": reservation.order_id or ""},
    )


def already_confirmed(reservation: Reservation) -> FailedPrecondition:
    return FailedPrecondition(
        f"the reservation of checkout {reservation.checkout_id} is already confirmed",
        reason="RESERVATION_CONFIRMED",
        metadata={"checkoutId": reservation.checkout_id, "status": ReservationStatus.CONFIRMED.contract_name},
    )


def idempotency_key_reused(key: str) -> AlreadyExists:
    return AlreadyExists(
        "idempotency_key was already used for a different stock adjustment",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"idempotencyKey": key},
    )


def stock_limit_exceeded(sku: str, stock_on_hand: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"stock of {sku} would exceed {MAX_STOCK} units",
        reason="STOCK_LIMIT_EXCEEDED",
        metadata={"sku": sku, "stockOnHand": str(stock_on_hand)},
    )


def adjustment_refused(product: Product, delta: int) -> FailedPrecondition:
    after = product.stock_on_hand + delta
    if after > MAX_STOCK:
        return stock_limit_exceeded(product.sku, product.stock_on_hand)
    return FailedPrecondition(
        f"stock of {product.sku} would drop to {after}, below the {product.reserved} units reserved",
        reason="STOCK_BELOW_RESERVED",
        metadata={"sku": product.sku, "stockOnHand": str(product.stock_on_hand), "reserved": str(product.reserved)},
    )


def return_exceeds_sold(order_id: str, excess: Sequence[LineItem], bought: dict[str, int]) -> FailedPrecondition:
    return FailedPrecondition(
        f"the return exceeds what order {order_id} bought: "
        + ", ".join(f"{line.sku} (returning {line.quantity}, sold {bought.get(line.sku, 0)})" for line in excess),
        reason="RETURN_EXCEEDS_SOLD",
        metadata={"orderId": order_id, "skus": ",".join(line.sku for line in excess)},
        violations=[
            PreconditionViolation(
                "RETURN", f"sku:{line.sku}", f"returning {line.quantity}, sold {bought.get(line.sku, 0)}"
            )
            for line in excess
        ],
    )


def order_already_returned(order_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"order {order_id} was already returned with different lines",
        reason="ORDER_ALREADY_RETURNED",
        metadata={"orderId": order_id},
    )


def order_not_confirmed(order_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"no reservation was confirmed for order {order_id}",
        reason="ORDER_NOT_CONFIRMED",
        metadata={"orderId": order_id},
    )


def order_id_in_use(order_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"order {order_id} already confirmed another checkout's reservation",
        reason="ORDER_ID_IN_USE",
        metadata={"orderId": order_id},
    )
