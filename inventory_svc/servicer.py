"""gRPC face of the inventory service: proto → command → use case or view → proto, nothing else.

Errors leave as domain exceptions; the runtime (service_runtime.inbound) turns them into status codes with details.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from inventory_svc.domain import commands
from inventory_svc.domain.model import AdjustmentReason, Availability, Product, Reservation, ReservationStatus
from inventory_svc.domain.refusals import InsufficientStock
from inventory_svc.handlers import InventoryHandlers
from inventory_svc.views import InventoryViews
from service_runtime.errors import with_details
from service_runtime.wire import (
    line_items_in,
    line_items_out,
    money_out,
    optional_money_in,
    optional_seconds_in,
    timestamp_out,
)
from shop.inventory.v1 import inventory_service_pb2 as pb
from shop.inventory.v1 import inventory_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS = {
    ReservationStatus.ACTIVE: pb.RESERVATION_STATUS_ACTIVE,
    ReservationStatus.CONFIRMED: pb.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.RELEASED: pb.RESERVATION_STATUS_RELEASED,
    ReservationStatus.EXPIRED: pb.RESERVATION_STATUS_EXPIRED,
}

_REASONS = {
    pb.STOCK_ADJUSTMENT_REASON_RECEIVED: AdjustmentReason.RECEIVED,
    pb.STOCK_ADJUSTMENT_REASON_RECOUNT: AdjustmentReason.RECOUNT,
    pb.STOCK_ADJUSTMENT_REASON_DAMAGED: AdjustmentReason.DAMAGED,
    pb.STOCK_ADJUSTMENT_REASON_LOST: AdjustmentReason.LOST,
    pb.STOCK_ADJUSTMENT_REASON_OTHER: AdjustmentReason.OTHER,
}

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name


class InventoryServicer(pb_grpc.InventoryServiceServicer):
    def __init__(self, handlers: InventoryHandlers, views: InventoryViews) -> None:
        self._handlers = handlers
        self._views = views

    async def UpsertProduct(self, request: pb.UpsertProductRequest, context: Context) -> pb.UpsertProductResponse:
        upserted = await self._handlers.upsert_product(
            commands.UpsertProduct(
                sku=request.sku,
                name=request.name,
                price=optional_money_in(request, "price"),
                weight_grams=request.weight_grams,
            )
        )
        return pb.UpsertProductResponse(product=_product_out(upserted.product), created=upserted.created)

    async def DiscontinueProduct(
        self, request: pb.DiscontinueProductRequest, context: Context
    ) -> pb.DiscontinueProductResponse:
        discontinued = await self._handlers.discontinue_product(request.sku)
        return pb.DiscontinueProductResponse(product=_product_out(discontinued.product), changed=discontinued.created)

    async def GetProduct(self, request: pb.GetProductRequest, context: Context) -> pb.GetProductResponse:
        return pb.GetProductResponse(product=_product_out(await self._views.get_product(request.sku)))

    async def BatchGetProducts(
        self, request: pb.BatchGetProductsRequest, context: Context
    ) -> pb.BatchGetProductsResponse:
        products = await self._views.batch_get_products(list(request.skus))
        found = {product.sku for product in products}
        return pb.BatchGetProductsResponse(
            products=[_product_out(product) for product in products],
            missing_skus=[sku for sku in request.skus if sku not in found],
        )

    async def ListProducts(self, request: pb.ListProductsRequest, context: Context) -> pb.ListProductsResponse:
        page = await self._views.list_products(request.page_size, request.page_token, request.in_stock_only)
        return pb.ListProductsResponse(
            products=[_product_out(product) for product in page.products], next_page_token=page.next_page_token
        )

    async def AdjustStock(self, request: pb.AdjustStockRequest, context: Context) -> pb.AdjustStockResponse:
        adjusted = await self._handlers.adjust_stock(
            commands.AdjustStock(
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
        self, request: pb.CheckAvailabilityRequest, context: Context
    ) -> pb.CheckAvailabilityResponse:
        items = await self._views.check_availability(line_items_in(request.items))
        return pb.CheckAvailabilityResponse(
            items=_availability_out(items), all_available=all(item.sufficient for item in items)
        )

    async def ReserveInventory(
        self, request: pb.ReserveInventoryRequest, context: Context
    ) -> pb.ReserveInventoryResponse:
        command = commands.ReserveInventory(
            checkout_id=request.checkout_id,
            lines=line_items_in(request.items),
            ttl_seconds=optional_seconds_in(request, "ttl"),
        )
        try:
            reserved = await self._handlers.reserve(command)
        except InsufficientStock as error:
            raise with_details(error, pb.InsufficientStock(items=_availability_out(error.shortages))) from None
        return pb.ReserveInventoryResponse(
            reservation=_reservation_out(reserved.reservation), replayed=reserved.replayed
        )

    async def ConfirmReservation(
        self, request: pb.ConfirmReservationRequest, context: Context
    ) -> pb.ConfirmReservationResponse:
        reservation = await self._handlers.confirm(
            commands.ConfirmReservation(checkout_id=request.checkout_id, order_id=request.order_id)
        )
        return pb.ConfirmReservationResponse(reservation=_reservation_out(reservation))

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Context
    ) -> pb.ReleaseReservationResponse:
        released = await self._handlers.release(
            commands.ReleaseReservation(checkout_id=request.checkout_id, reason=request.reason)
        )
        return pb.ReleaseReservationResponse(
            reservation=_reservation_out(released.reservation), released_line_count=released.released_line_count
        )

    async def ExtendReservation(
        self, request: pb.ExtendReservationRequest, context: Context
    ) -> pb.ExtendReservationResponse:
        reservation = await self._handlers.extend(
            commands.ExtendReservation(
                checkout_id=request.checkout_id,
                ttl_seconds=optional_seconds_in(request, "ttl"),
            )
        )
        return pb.ExtendReservationResponse(reservation=_reservation_out(reservation))

    async def GetReservation(self, request: pb.GetReservationRequest, context: Context) -> pb.GetReservationResponse:
        return pb.GetReservationResponse(
            reservation=_reservation_out(await self._views.get_reservation(request.checkout_id))
        )

    async def ReturnStock(self, request: pb.ReturnStockRequest, context: Context) -> pb.ReturnStockResponse:
        returned = await self._handlers.return_stock(
            commands.ReturnStock(order_id=request.order_id, lines=line_items_in(request.items), reason=request.reason)
        )
        return pb.ReturnStockResponse(
            order_id=returned.order_id,
            items=line_items_out(returned.lines),
            replayed=returned.replayed,
            return_time=timestamp_out(returned.returned_at),
        )


def _product_out(product: Product) -> pb.Product:
    return pb.Product(
        sku=product.sku,
        name=product.name,
        price=money_out(product.price),
        weight_grams=product.weight_grams,
        stock_on_hand=product.stock_on_hand,
        reserved=product.reserved,
        available=product.available,
        update_time=timestamp_out(product.updated_at),
        discontinued=product.discontinued_at is not None,
        discontinue_time=timestamp_out(product.discontinued_at),
    )


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
        items=line_items_out(reservation.lines),
        expire_time=timestamp_out(reservation.expires_at),
        create_time=timestamp_out(reservation.created_at),
        confirm_time=timestamp_out(reservation.confirmed_at),
        release_time=timestamp_out(reservation.released_at),
        order_id=reservation.order_id or "",
        release_reason=reservation.release_reason,
    )
