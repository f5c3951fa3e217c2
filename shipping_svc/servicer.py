"""gRPC face of the shipping service: proto → use case → proto, nothing else."""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc
from google.type import date_pb2

from service_runtime.wire import (
    address_in,
    address_out,
    line_items_in,
    line_items_out,
    money_out,
    optional_money_in,
    timestamp_in,
    timestamp_out,
)
from shipping_svc import domain, pricing
from shipping_svc.handlers import ShippingHandlers
from shipping_svc.model import ScanKind, Shipment, ShipmentStatus
from shipping_svc.rates import Method
from shop.shipping.v1 import shipping_service_pb2 as pb
from shop.shipping.v1 import shipping_service_pb2_grpc as pb_grpc
from shop.type.v1 import address_pb2

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ShippingService"].full_name

_METHODS_IN = {
    pb.SHIPPING_METHOD_STANDARD: Method.STANDARD,
    pb.SHIPPING_METHOD_EXPRESS: Method.EXPRESS,
    pb.SHIPPING_METHOD_OVERNIGHT: Method.OVERNIGHT,
}
_METHODS_OUT = {method: value for value, method in _METHODS_IN.items()}
_STATUS = {
    ShipmentStatus.BOOKED: pb.SHIPMENT_STATUS_BOOKED,
    ShipmentStatus.IN_TRANSIT: pb.SHIPMENT_STATUS_IN_TRANSIT,
    ShipmentStatus.DELIVERED: pb.SHIPMENT_STATUS_DELIVERED,
    ShipmentStatus.CANCELLED: pb.SHIPMENT_STATUS_CANCELLED,
}
_SCANS = {pb.CARRIER_SCAN_KIND_IN_TRANSIT: ScanKind.IN_TRANSIT, pb.CARRIER_SCAN_KIND_DELIVERED: ScanKind.DELIVERED}
_VIOLATIONS = {
    kind: pb.AddressViolationType.Value(f"ADDRESS_VIOLATION_TYPE_{kind.name}") for kind in domain.AddressViolationType
}


def _address(holder: Any, field: str) -> Any:
    return address_in(getattr(holder, field)) if holder.HasField(field) else None


class ShippingServicer(pb_grpc.ShippingServiceServicer):
    def __init__(self, handlers: ShippingHandlers) -> None:
        self._handlers = handlers

    async def ValidateAddress(self, request: pb.ValidateAddressRequest, context: Context) -> pb.ValidateAddressResponse:
        checked = self._handlers.validate_address(_address(request, "address"))
        normalized = checked.normalized
        return pb.ValidateAddressResponse(
            valid=checked.valid,
            violations=[
                pb.AddressViolation(field=v.field, type=_VIOLATIONS[v.type], description=v.description)
                for v in checked.violations
            ],
            normalized_address=address_pb2.Address(
                recipient_name=normalized.recipient_name,
                line1=normalized.line1,
                line2=normalized.line2,
                city=normalized.city,
                region=normalized.region,
                postal_code=normalized.postal_code,
                country_code=normalized.country_code,
                phone=normalized.phone,
            ),
            normalized_fields=list(checked.normalized_fields),
            deliverable=checked.deliverable,
            zone=checked.zone,
        )

    async def GetShippingOptions(
        self, request: pb.GetShippingOptionsRequest, context: Context
    ) -> pb.GetShippingOptionsResponse:
        offered = await self._handlers.options(
            _address(request, "shipping_address"),
            line_items_in(request.items),
            optional_money_in(request, "subtotal"),
            context,
        )
        return pb.GetShippingOptionsResponse(
            options=[_option_out(option) for option in offered.options],
            zone=offered.zone.name,
            total_weight_grams=offered.weight_grams,
            free_shipping_threshold=money_out(offered.free_shipping_threshold)
            if offered.free_shipping_threshold
            else None,
            amount_to_free_shipping=money_out(offered.amount_to_free_shipping)
            if offered.amount_to_free_shipping
            else None,
        )

    async def QuoteShipping(self, request: pb.QuoteShippingRequest, context: Context) -> pb.QuoteShippingResponse:
        quoted = await self._handlers.quote(
            _METHODS_IN.get(request.shipping_method),
            _address(request, "shipping_address"),
            line_items_in(request.items),
            optional_money_in(request, "subtotal"),
            context,
        )
        return pb.QuoteShippingResponse(
            option=_option_out(quoted.option),
            zone=quoted.zone,
            total_weight_grams=quoted.weight_grams,
            quote_time=timestamp_out(quoted.quoted_at),
        )

    async def CreateShipment(self, request: pb.CreateShipmentRequest, context: Context) -> pb.CreateShipmentResponse:
        booked = await self._handlers.create_shipment(
            request.order_id,
            _address(request, "shipping_address"),
            _METHODS_IN.get(request.shipping_method),
            line_items_in(request.items),
            context,
        )
        return pb.CreateShipmentResponse(shipment=_shipment_out(booked.shipment), replayed=booked.replayed)

    async def GetShipment(self, request: pb.GetShipmentRequest, context: Context) -> pb.GetShipmentResponse:
        return pb.GetShipmentResponse(shipment=_shipment_out(await self._handlers.get_shipment(request.shipment_id)))

    async def CancelShipment(self, request: pb.CancelShipmentRequest, context: Context) -> pb.CancelShipmentResponse:
        cancelled = await self._handlers.cancel_shipment(request.shipment_id)
        return pb.CancelShipmentResponse(shipment=_shipment_out(cancelled.shipment), replayed=cancelled.replayed)

    async def RecordCarrierScan(
        self, request: pb.RecordCarrierScanRequest, context: Context
    ) -> pb.RecordCarrierScanResponse:
        scanned = await self._handlers.record_scan(
            request.event_id,
            request.shipment_id,
            _SCANS.get(request.kind),
            timestamp_in(request.scan_time, "scan_time") if request.HasField("scan_time") else None,
        )
        return pb.RecordCarrierScanResponse(shipment=_shipment_out(scanned.shipment), replayed=scanned.replayed)


def _date_out(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _estimate_out(min_days: int, max_days: int, earliest: date, latest: date) -> pb.DeliveryEstimate:
    return pb.DeliveryEstimate(
        min_business_days=min_days,
        max_business_days=max_days,
        earliest_delivery_date=_date_out(earliest),
        latest_delivery_date=_date_out(latest),
    )


def _option_out(option: pricing.Option) -> pb.ShippingOption:
    window = option.window
    return pb.ShippingOption(
        shipping_method=_METHODS_OUT[option.method],
        display_name=option.display_name,
        cost=money_out(option.cost),
        list_cost=money_out(option.list_cost),
        free_shipping_applied=option.free_shipping_applied,
        delivery_estimate=_estimate_out(
            window.min_business_days, window.max_business_days, window.earliest, window.latest
        ),
    )


def _shipment_out(shipment: Shipment) -> pb.Shipment:
    return pb.Shipment(
        shipment_id=shipment.shipment_id,
        order_id=shipment.order_id,
        tracking_number=shipment.tracking_number,
        carrier=shipment.carrier,
        shipping_method=_METHODS_OUT[shipment.method],
        shipping_address=address_out(shipment.address),
        items=line_items_out(shipment.items),
        total_weight_grams=shipment.total_weight_grams,
        status=_STATUS[shipment.status],
        delivery_estimate=_estimate_out(
            shipment.min_business_days, shipment.max_business_days, shipment.earliest_delivery, shipment.latest_delivery
        ),
        create_time=timestamp_out(shipment.created_at),
        update_time=timestamp_out(shipment.updated_at),
    )
