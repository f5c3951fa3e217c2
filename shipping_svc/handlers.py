"""Shipping use cases: address checks and prices (read-only), and shipments (booked, cancelled, scanned).

Prices and windows come from `pricing` over the rate table and the items' weights from inventory (one
BatchGetProducts per call). Shipments are for trusted mesh callers only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from service_runtime.channels import HasDeadline
from service_runtime.errors import FieldViolation, InvalidArgument, Violations
from service_runtime.identity import require_trusted
from service_runtime.sql import UnitOfWork
from service_runtime.validation import check_id, check_line_items, check_money
from service_runtime.values import Address, LineItem, Money
from shipping_svc import domain, model, pricing
from shipping_svc.carrier import Carrier
from shipping_svc.catalogue import Weights
from shipping_svc.model import ScanKind, Shipment, ShipmentStatus
from shipping_svc.rates import Method, RateTable
from shipping_svc.repository import ShippingStatements

MAX_LINES = 100
MAX_QUANTITY = 10_000
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class Checked:
    valid: bool
    violations: tuple[domain.AddressViolation, ...]
    normalized: Address
    normalized_fields: tuple[str, ...]
    deliverable: bool
    zone: str


@dataclass(frozen=True)
class Quoted:
    option: pricing.Option
    zone: str
    weight_grams: int
    quoted_at: datetime


@dataclass(frozen=True)
class Booked:
    shipment: Shipment
    replayed: bool


class ShippingHandlers:
    def __init__(
        self, work: UnitOfWork[ShippingStatements], rates: RateTable, weights: Weights, carrier: Carrier
    ) -> None:
        self._work = work
        self._rates = rates
        self._weights = weights
        self._carrier = carrier

    # ---- read-only ---------------------------------------------------------------------------------

    def validate_address(self, address: Address | None) -> Checked:
        if address is None:
            raise InvalidArgument([FieldViolation("address", "is required")])
        raw = address
        normalized, changed = domain.normalize_address(raw, "address")
        violations = domain.validate_address(raw, "address")
        zone = self._rates.zone_of(normalized.country_code) if not violations else None
        return Checked(
            valid=not violations,
            violations=violations,
            normalized=normalized,
            normalized_fields=changed,
            deliverable=zone is not None,
            zone=zone.name if zone else "",
        )

    async def options(
        self, address: Address | None, items: Sequence[LineItem], subtotal: Money | None, deadline: HasDeadline | None
    ) -> pricing.Options:
        destination, weight = await self._checked_order(address, items, subtotal, None, deadline)
        assert subtotal is not None
        return pricing.shipping_options(self._rates, destination.country_code, weight, subtotal, _today())

    async def quote(
        self,
        method: Method | None,
        address: Address | None,
        items: Sequence[LineItem],
        subtotal: Money | None,
        deadline: HasDeadline | None,
    ) -> Quoted:
        now = datetime.now(UTC)
        destination, weight = await self._checked_order(
            address, items, subtotal, method, deadline, method_required=True
        )
        assert subtotal is not None and method is not None
        option = pricing.quote(self._rates, destination.country_code, weight, subtotal, method, now.date())
        zone = self._rates.zone_of(destination.country_code)
        assert zone is not None
        return Quoted(option, zone.name, weight, now)

    async def get_shipment(self, shipment_id: str) -> Shipment:
        require_trusted()
        _check_shipment_id(shipment_id)
        shipment = await self._work.read(lambda tx: tx.shipment(shipment_id))
        if shipment is None:
            raise model.shipment_not_found(shipment_id)
        return shipment

    # ---- shipments ---------------------------------------------------------------------------------

    async def create_shipment(
        self,
        order_id: str,
        address: Address | None,
        method: Method | None,
        items: Sequence[LineItem],
        deadline: HasDeadline | None,
    ) -> Booked:
        require_trusted()
        destination, weight = await self._checked_order(
            address, items, None, method, deadline, method_required=True, order_id=order_id
        )
        assert method is not None
        lines = tuple(sorted(items))
        existing = await self._work.read(lambda tx: tx.shipment_of_order(order_id))
        if existing is not None:
            return self._replay(existing, destination, method, lines)
        today = _today()
        option = pricing.quote(
            self._rates, destination.country_code, weight, Money(self._rates.currency_code, 0), method, today
        )
        shipment_id = f"shp_{uuid.uuid4().hex}"
        booking = await self._carrier.book(shipment_id, destination, method, weight)
        now = datetime.now(UTC)
        shipment = Shipment(
            shipment_id=shipment_id,
            order_id=order_id,
            tracking_number=booking.tracking_number,
            carrier=booking.carrier,
            method=method,
            address=destination,
            items=lines,
            total_weight_grams=weight,
            status=ShipmentStatus.BOOKED,
            min_business_days=option.window.min_business_days,
            max_business_days=option.window.max_business_days,
            earliest_delivery=option.window.earliest,
            latest_delivery=option.window.latest,
            created_at=now,
            updated_at=now,
        )

        async def work(tx: ShippingStatements) -> Shipment | None:
            if await tx.insert(shipment):
                return None
            return await tx.shipment_of_order(order_id)

        concurrent = await self._work.run(work)
        if concurrent is not None:  # a concurrent request booked the order first
            return self._replay(concurrent, destination, method, lines)
        return Booked(await self.get_shipment(shipment_id), False)

    async def cancel_shipment(self, shipment_id: str) -> Booked:
        require_trusted()
        _check_shipment_id(shipment_id)

        async def work(tx: ShippingStatements) -> bool:
            shipment = await tx.shipment(shipment_id, lock=True)
            if shipment is None:
                raise model.shipment_not_found(shipment_id)
            if shipment.status is ShipmentStatus.CANCELLED:
                return True
            if shipment.status is not ShipmentStatus.BOOKED:
                raise model.not_cancellable(shipment)
            await tx.set_status(shipment_id, ShipmentStatus.CANCELLED)
            return False

        replayed = await self._work.run(work)
        return Booked(await self.get_shipment(shipment_id), replayed)

    async def record_scan(
        self, event_id: str, shipment_id: str, kind: ScanKind | None, scanned_at: datetime | None
    ) -> Booked:
        require_trusted()
        violations = Violations()
        if not event_id:
            violations.add("event_id", "is required")
        elif not EVENT_ID.fullmatch(event_id):
            violations.add("event_id", "must be 1..128 characters of [A-Za-z0-9._:-]")
        check_id(violations, shipment_id, "shipment_id")
        violations.check(kind is not None, "kind", "must be IN_TRANSIT or DELIVERED")
        violations.check(scanned_at is not None, "scan_time", "is required")
        violations.raise_if_any()
        assert kind is not None and scanned_at is not None

        async def work(tx: ShippingStatements) -> bool:
            shipment = await tx.shipment(shipment_id, lock=True)
            if shipment is None:
                raise model.shipment_not_found(shipment_id)
            earlier = await tx.scan(event_id)
            if earlier is not None:
                if earlier != (shipment_id, kind):
                    raise model.event_id_reused(event_id)
                return True
            if shipment.status is ShipmentStatus.CANCELLED:
                raise model.shipment_cancelled(shipment_id)
            await tx.record_scan(event_id, shipment_id, kind, scanned_at)
            after = model.status_after_scan(shipment.status, kind)
            if after is not shipment.status:
                await tx.set_status(shipment_id, after)
            return False

        replayed = await self._work.run(work, retry_duplicates=True)
        return Booked(await self.get_shipment(shipment_id), replayed)

    # ---- helpers -----------------------------------------------------------------------------------

    def _replay(self, existing: Shipment, address: Address, method: Method, lines: tuple[LineItem, ...]) -> Booked:
        if (existing.address, existing.method, existing.items) != (address, method, lines):
            raise model.shipment_already_exists(existing)
        return Booked(existing, True)

    async def _checked_order(
        self,
        address: Address | None,
        items: Sequence[LineItem],
        subtotal: Money | None,
        method: Method | None,
        deadline: HasDeadline | None,
        *,
        method_required: bool = False,
        order_id: str | None = None,
    ) -> tuple[Address, int]:
        """Validates a request about a parcel (every bad field at once) and weighs its items."""
        violations = Violations()
        address_bad = False
        normalized = Address()
        if order_id is not None:
            check_id(violations, order_id, "order_id")
        if method_required and method is None:
            violations.add("shipping_method", "must be STANDARD, EXPRESS or OVERNIGHT")
        if address is None:
            violations.add("shipping_address", "is required")
            address_bad = True
        else:
            raw = address
            normalized, _ = domain.normalize_address(raw, "shipping_address")
            for violation in domain.validate_address(raw, "shipping_address"):
                violations.add(violation.field, violation.description)
                address_bad = True
        check_line_items(violations, items, "items", max_lines=MAX_LINES, max_quantity=MAX_QUANTITY)
        if order_id is None:
            check_money(violations, subtotal, "subtotal", maximum_minor=100_000_000_000)
        if violations.items:
            raise InvalidArgument(violations.items, reason="ADDRESS_INVALID" if address_bad else "INVALID_ARGUMENT")
        weights = await self._weights.of([item.sku for item in items], deadline)
        unknown = Violations()
        for index, item in enumerate(items):
            if item.sku not in weights:
                unknown.add(f"items[{index}].sku", f"{item.sku} is not in the catalogue")
        unknown.raise_if_any()
        return normalized, sum(weights[item.sku] * item.quantity for item in items)


def _check_shipment_id(shipment_id: str) -> None:
    violations = Violations()
    check_id(violations, shipment_id, "shipment_id")
    violations.raise_if_any()


def _today() -> date:
    return datetime.now(UTC).date()
