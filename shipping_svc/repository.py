"""Shipments in PostgreSQL: the only module of the service that runs SQL (statements in queries.sql)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from service_runtime.sql import QueryFile, Statements
from service_runtime.values import Address, LineItem
from shipping_svc.model import ScanKind, Shipment, ShipmentStatus
from shipping_svc.rates import Method


class ShippingStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    async def insert(self, shipment: Shipment) -> bool:
        """Books the shipment; False when its order already has one."""
        row = await self._row(
            "insert_shipment",
            {
                "shipment_id": shipment.shipment_id,
                "order_id": shipment.order_id,
                "tracking_number": shipment.tracking_number,
                "carrier": shipment.carrier,
                "method": shipment.method.value,
                "address": json.dumps(dataclasses.asdict(shipment.address)),
                "total_weight_grams": shipment.total_weight_grams,
                "min_business_days": shipment.min_business_days,
                "max_business_days": shipment.max_business_days,
                "earliest": shipment.earliest_delivery,
                "latest": shipment.latest_delivery,
            },
        )
        if row is None:
            return False
        await self._rows(
            "insert_items",
            {
                "shipment_id": shipment.shipment_id,
                "skus": [item.sku for item in shipment.items],
                "quantities": [item.quantity for item in shipment.items],
            },
        )
        return True

    async def shipment(self, shipment_id: str, *, lock: bool = False) -> Shipment | None:
        row = await self._row("lock_shipment" if lock else "shipment", {"shipment_id": shipment_id})
        return await self._with_items(row) if row else None

    async def shipment_of_order(self, order_id: str) -> Shipment | None:
        row = await self._row("shipment_of_order", {"order_id": order_id})
        return await self._with_items(row) if row else None

    async def set_status(self, shipment_id: str, status: ShipmentStatus) -> None:
        await self._rows("set_status", {"shipment_id": shipment_id, "status": status.value})

    async def record_scan(self, event_id: str, shipment_id: str, kind: ScanKind, scanned_at: datetime) -> bool:
        """Records a scan; False when its event id was already recorded."""
        row = await self._row(
            "insert_scan",
            {"event_id": event_id, "shipment_id": shipment_id, "kind": kind.value, "scanned_at": scanned_at},
        )
        return row is not None

    async def scan(self, event_id: str) -> tuple[str, ScanKind] | None:
        row = await self._row("scan", {"event_id": event_id})
        return (row["shipment_id"], ScanKind(row["kind"])) if row else None

    async def _with_items(self, row: Mapping[str, Any]) -> Shipment:
        items = await self._rows("items", {"shipment_id": row["shipment_id"]})
        address = row["address"] if isinstance(row["address"], dict) else json.loads(row["address"])
        return Shipment(
            shipment_id=row["shipment_id"],
            order_id=row["order_id"],
            tracking_number=row["tracking_number"],
            carrier=row["carrier"],
            method=Method(row["method"]),
            address=Address(**address),
            items=tuple(LineItem(item["sku"], item["quantity"]) for item in items),
            total_weight_grams=row["total_weight_grams"],
            status=ShipmentStatus(row["status"]),
            min_business_days=row["min_business_days"],
            max_business_days=row["max_business_days"],
            earliest_delivery=row["earliest_delivery_date"],
            latest_delivery=row["latest_delivery_date"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
