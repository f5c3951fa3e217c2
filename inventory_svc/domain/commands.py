"""One command per use case, built by the servicer from a request and validated before any I/O."""

from __future__ import annotations

from dataclasses import dataclass

from inventory_svc.domain.model import AdjustmentReason
from service_runtime.values import LineItem, Money


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
    lines: tuple[LineItem, ...]
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
    lines: tuple[LineItem, ...]
    reason: str
