"""gRPC face of the inventory service: proto → command → handler → proto, nothing else.

Errors leave as domain exceptions; the runtime's interceptor turns them into status codes with details.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from inventory_svc import domain
from inventory_svc.domain import Availability, Line, Product, Reservation, ReservationStatus
from inventory_svc.handlers import InventoryHandlers
from service_runtime.errors import with_details
from service_runtime.money import Money
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from shop.type.v1 import line_item_pb2, money_pb2

_STATUS = {
    ReservationStatus.ACTIVE: pb.RESERVATION_STATUS_ACTIVE,
    ReservationStatus.CONFIRMED: pb.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.RELEASED: pb.RESERVATION_STATUS_RELEASED,
    ReservationStatus.EXPIRED: pb.RESERVATION_STATUS_EXPIRED,
}

_REASONS = {
    pb.STOCK_ADJUSTMENT_REASON_RECEIVED: domain.AdjustmentReason.RECEIVED,
    pb.STOCK_ADJUSTMENT_REASON_RECOUNT: domain.AdjustmentReason.RECOUNT,
    pb.STOCK_ADJUSTMENT_REASON_DAMAGED: domain.AdjustmentReason.DAMAGED,
    pb.STOCK_ADJUSTMENT_REASON_LOST: domain.AdjustmentReason.LOST,
    pb.STOCK_ADJUSTMENT_REASON_OTHER: domain.AdjustmentReason.OTHER,
}

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name


class InventoryServicer(pb_grpc.InventoryServiceServicer):
    def __init__(self, handlers: InventoryHandlers) -> None:
        self._handlers = handlers

    async def UpsertProduct(
        self, request: pb.UpsertProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertProductResponse:
        product, created = await self._handlers.upsert_product(
            domain.UpsertProduct(
                sku=request.sku,
                name=request.name,
                price=_money_in(request.price) if request.HasField("price") else None,
                weight_grams=request.weight_grams,
            )
        )
        return pb.UpsertProductResponse(product=_product_out(product), created=created)

    async def GetProduct(
        self, request: pb.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductResponse:
        return pb.GetProductResponse(product=_product_out(await self._handlers.get_product(request.sku)))

    async def BatchGetProducts(
        self, request: pb.BatchGetProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetProductsResponse:
        products = await self._handlers.batch_get_products(list(request.skus))
        found = {product.sku for product in products}
        return pb.BatchGetProductsResponse(
            products=[_product_out(product) for product in products],
            missing_skus=[sku for sku in request.skus if sku not in found],
        )

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        page = await self._handlers.list_products(request.page_size, request.page_token, request.in_stock_only)
        return pb.ListProductsResponse(
            products=[_product_out(product) for product in page.products], next_page_token=page.next_page_token
        )

    async def AdjustStock(
        self, request: pb.AdjustStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdjustStockResponse:
        adjusted = await self._handlers.adjust_stock(
            domain.AdjustStock(
                sku=request.sku,
                delta=request.delta,
                reason=_REASONS.get(request.reason),
                note=request.note,
                idempotency_key=request.idempotency_key,
            )
        )
        return pb.AdjustStockResponse(
            product=_product_out(adjusted.product), movement_id=str(adjusted.movement_id), replayed=adjusted.replayed
        )

    async def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckAvailabilityResponse:
        items = await self._handlers.check_availability(_lines_in(request.items))
        return pb.CheckAvailabilityResponse(
            items=_availability_out(items), all_available=all(item.sufficient for item in items)
        )

    async def ReserveInventory(
        self, request: pb.ReserveInventoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveInventoryResponse:
        command = domain.ReserveInventory(
            checkout_id=request.checkout_id,
            lines=_lines_in(request.items),
            ttl_seconds=_seconds_in(request.ttl) if request.HasField("ttl") else None,
        )
        try:
            reserved = await self._handlers.reserve(command)
        except domain.InsufficientStock as error:
            raise with_details(error, pb.InsufficientStock(items=_availability_out(error.shortages))) from None
        return pb.ReserveInventoryResponse(
            reservation=_reservation_out(reserved.reservation), replayed=reserved.replayed
        )

    async def ConfirmReservation(
        self, request: pb.ConfirmReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmReservationResponse:
        reservation = await self._handlers.confirm(
            domain.ConfirmReservation(checkout_id=request.checkout_id, order_id=request.order_id)
        )
        return pb.ConfirmReservationResponse(reservation=_reservation_out(reservation))

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseReservationResponse:
        released = await self._handlers.release(
            domain.ReleaseReservation(checkout_id=request.checkout_id, reason=request.reason)
        )
        return pb.ReleaseReservationResponse(
            reservation=_reservation_out(released.reservation), released_line_count=released.released_line_count
        )

    async def ExtendReservation(
        self, request: pb.ExtendReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendReservationResponse:
        reservation = await self._handlers.extend(
            domain.ExtendReservation(
                checkout_id=request.checkout_id,
                ttl_seconds=_seconds_in(request.ttl) if request.HasField("ttl") else None,
            )
        )
        return pb.ExtendReservationResponse(reservation=_reservation_out(reservation))

    async def GetReservation(
        self, request: pb.GetReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReservationResponse:
        return pb.GetReservationResponse(
            reservation=_reservation_out(await self._handlers.get_reservation(request.checkout_id))
        )

    async def ReturnStock(
        self, request: pb.ReturnStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReturnStockResponse:
        returned = await self._handlers.return_stock(
            domain.ReturnStock(order_id=request.order_id, lines=_lines_in(request.items), reason=request.reason)
        )
        return pb.ReturnStockResponse(
            order_id=returned.order_id,
            items=_lines_out(returned.lines),
            replayed=returned.replayed,
            return_time=_timestamp(returned.returned_at),
        )


def _money_in(money: money_pb2.Money) -> Money:
    return Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def _lines_in(items: Iterable[line_item_pb2.LineItem]) -> tuple[Line, ...]:
    return tuple(Line(item.sku, item.quantity) for item in items)


def _seconds_in(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _product_out(product: Product) -> pb.Product:
    return pb.Product(
        sku=product.sku,
        name=product.name,
        price=money_pb2.Money(currency_code=product.price.currency_code, amount_minor=product.price.amount_minor),
        weight_grams=product.weight_grams,
        stock_on_hand=product.stock_on_hand,
        reserved=product.reserved,
        available=product.available,
        update_time=_timestamp(product.updated_at),
    )


def _lines_out(lines: Iterable[Line]) -> list[line_item_pb2.LineItem]:
    return [line_item_pb2.LineItem(sku=line.sku, quantity=line.quantity) for line in lines]


def _availability_out(items: Iterable[Availability]) -> list[pb.ItemAvailability]:
    return [
        pb.ItemAvailability(
            sku=item.sku, requested=item.requested, available=item.available, sufficient=item.sufficient
        )
        for item in items
    ]


def _reservation_out(reservation: Reservation) -> pb.Reservation:
    return pb.Reservation(
        checkout_id=reservation.checkout_id,
        status=_STATUS[reservation.status],
        items=_lines_out(reservation.lines),
        expire_time=_timestamp(reservation.expires_at),
        create_time=_timestamp(reservation.created_at),
        confirm_time=_timestamp(reservation.confirmed_at),
        release_time=_timestamp(reservation.released_at),
        order_id=reservation.order_id or "",
        release_reason=reservation.release_reason,
    )
