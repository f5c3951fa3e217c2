"""Shipments and their lifecycle, free of I/O.

    BOOKED ──scan IN_TRANSIT──▶ IN_TRANSIT ──scan DELIVERED──▶ DELIVERED
       │  └────────────scan DELIVERED─────────────────────────▲
       └──CancelShipment──▶ CANCELLED

A scan never moves a shipment back (an IN_TRANSIT scan that arrives after DELIVERED is recorded and
changes nothing); a cancelled shipment takes no scans; only a BOOKED one can be cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from service_runtime.errors import AlreadyExists, FailedPrecondition, NotFound
from service_runtime.values import Address, LineItem
from shipping_svc.rates import Method


class ShipmentStatus(enum.Enum):
    BOOKED = "booked"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class ScanKind(enum.Enum):
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"


_RANK = {ShipmentStatus.BOOKED: 0, ShipmentStatus.IN_TRANSIT: 1, ShipmentStatus.DELIVERED: 2}


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    order_id: str
    tracking_number: str
    carrier: str
    method: Method
    address: Address
    items: tuple[LineItem, ...]
    total_weight_grams: int
    status: ShipmentStatus
    min_business_days: int
    max_business_days: int
    earliest_delivery: date
    latest_delivery: date
    created_at: datetime
    updated_at: datetime


def status_after_scan(current: ShipmentStatus, scan: ScanKind) -> ShipmentStatus:
    """The status a scan leads to (never backwards)."""
    target = ShipmentStatus.IN_TRANSIT if scan is ScanKind.IN_TRANSIT else ShipmentStatus.DELIVERED
    return target if _RANK[target] > _RANK[current] else current


def status_name(status: ShipmentStatus) -> str:
    return f"SHIPMENT_STATUS_{status.name}"


def shipment_not_found(shipment_id: str) -> NotFound:
    return NotFound(
        f"shipment {shipment_id} was not found", reason="SHIPMENT_NOT_FOUND", metadata={"shipmentId": shipment_id}
    )


def not_cancellable(shipment: Shipment) -> FailedPrecondition:
    return FailedPrecondition(
        f"shipment {shipment.shipment_id} is {shipment.status.value}; only a booked shipment can be cancelled",
        reason="SHIPMENT_NOT_CANCELLABLE",
        metadata={"shipmentId": shipment.shipment_id, "status": status_name(shipment.status)},
    )


def shipment_cancelled(shipment_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"shipment {shipment_id} was cancelled", reason="SHIPMENT_CANCELLED", metadata={"shipmentId": shipment_id}
    )


def shipment_already_exists(shipment: Shipment) -> AlreadyExists:
    return AlreadyExists(
        f"order {shipment.order_id} already has shipment {shipment.shipment_id} with other details",
        reason="SHIPMENT_ALREADY_EXISTS",
        metadata={"shipmentId": shipment.shipment_id, "orderId": shipment.order_id},
    )


def event_id_reused(event_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"carrier event {event_id} was recorded for another shipment or scan",
        reason="EVENT_ID_REUSED",
        metadata={"eventId": event_id},
    )
