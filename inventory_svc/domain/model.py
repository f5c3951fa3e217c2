"""The catalogue, stock figures, reservations and the stock ledger, and the limits on each."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from service_runtime.values import LineItem, Money

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
MAX_ADJUSTMENT = 1_000_000
MAX_PRICE_MINOR = 100_000_000_000
#: No product holds more units than this (the queries enforce it with this value; migration 0001's
#: CHECK on inventory.products is the database's own backstop and a test keeps the two equal).
MAX_STOCK = 1_000_000_000
MAX_WEIGHT_GRAMS = 1_000_000
MIN_TTL_SECONDS = 1.0
MAX_TTL_SECONDS = 24 * 3600.0


class ReservationStatus(enum.Enum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"

    @property
    def contract_name(self) -> str:
        """How the contract names it (and how ErrorInfo metadata writes a status)."""
        return f"RESERVATION_STATUS_{self.name}"


class AdjustmentReason(enum.Enum):
    RECEIVED = "received"
    RECOUNT = "recount"
    DAMAGED = "damaged"
    LOST = "lost"
    OTHER = "other"


class MovementKind(enum.Enum):
    ADJUSTMENT = "adjustment"
    SALE = "sale"
    RETURN = "return"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Money
    weight_grams: int
    stock_on_hand: int
    reserved: int
    updated_at: datetime
    #: When DiscontinueProduct took it out of the catalogue; None while it is sold.
    discontinued_at: datetime | None = None

    @property
    def available(self) -> int:
        return self.stock_on_hand - self.reserved


@dataclass(frozen=True)
class Reservation:
    checkout_id: str
    status: ReservationStatus
    lines: tuple[LineItem, ...]
    expires_at: datetime
    created_at: datetime
    confirmed_at: datetime | None
    released_at: datetime | None
    order_id: str | None
    release_reason: str
    #: Whether its expiry had passed by the database's clock when it was read.
    past_expiry: bool = False

    @property
    def is_release_marker(self) -> bool:
        """A release recorded before any reservation arrived: it holds nothing and blocks a late reserve."""
        return self.status is ReservationStatus.RELEASED and not self.lines

    @property
    def skus(self) -> list[str]:
        return [line.sku for line in self.lines]


@dataclass(frozen=True)
class ReservationRequest:
    """What one ReserveInventory asks the reserve statement for: its lines in SKU order, held `ttl_seconds`."""

    checkout_id: str
    lines: tuple[LineItem, ...]
    ttl_seconds: float


@dataclass(frozen=True)
class Movement:
    """One change to a product's stock on hand in the audit trail (inventory.stock_movements)."""

    movement_id: int
    sku: str
    delta: int
    kind: MovementKind
    reason: str
    note: str
    #: What made the change: an AdjustStock idempotency key, a sale's checkout id, a return's order id.
    request_key: str
    created_at: datetime


@dataclass(frozen=True)
class Availability:
    sku: str
    requested: int
    available: int

    @property
    def sufficient(self) -> bool:
        return self.available >= self.requested


@dataclass(frozen=True)
class StockDiscrepancy:
    """A product whose counters disagree with its reservations or its ledger (never, if all is well)."""

    sku: str
    stock_on_hand: int
    reserved: int
    reserved_by_lines: int
    stock_by_ledger: int
