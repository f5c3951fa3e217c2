"""gRPC face of the order service: proto → command → use case or view → proto, nothing else.

Errors leave as domain exceptions; the runtime (service_runtime.inbound) turns them into status codes with details.
"""

from __future__ import annotations

from typing import Any

import grpc

from order_svc.domain import CancelOrder, CreateOrder, MarkDelivered, MarkShipped, OrderLine
from order_svc.handlers import OrderHandlers
from order_svc.views import OrderViews
from order_svc.wire import METHOD_IN, REASON_IN, STATUS_IN, order_out
from service_runtime.wire import address_in, money_in, optional_money_in, timestamp_in
from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrderService"].full_name


class OrderServicer(pb_grpc.OrderServiceServicer):
    def __init__(self, handlers: OrderHandlers, views: OrderViews) -> None:
        self._handlers = handlers
        self._views = views

    async def CreateOrder(self, request: pb.CreateOrderRequest, context: Context) -> pb.CreateOrderResponse:
        created = await self._handlers.create(
            CreateOrder(
                checkout_id=request.checkout_id,
                user_id=request.user_id,
                customer_email=request.customer_email,
                payment_id=request.payment_id,
                lines=tuple(
                    OrderLine(
                        sku=line.sku,
                        product_name=line.product_name,
                        quantity=line.quantity,
                        unit_price=money_in(line.unit_price),
                        line_total=money_in(line.line_total),
                    )
                    for line in request.lines
                ),
                subtotal=optional_money_in(request, "subtotal"),
                discount_total=optional_money_in(request, "discount_total"),
                shipping_cost=optional_money_in(request, "shipping_cost"),
                tax=optional_money_in(request, "tax"),
                total=optional_money_in(request, "total"),
                shipping_address=address_in(request.shipping_address) if request.HasField("shipping_address") else None,
                shipping_method=METHOD_IN.get(request.shipping_method),
            )
        )
        return pb.CreateOrderResponse(order=order_out(created.order), replayed=created.replayed)

    async def ConfirmOrder(self, request: pb.ConfirmOrderRequest, context: Context) -> pb.ConfirmOrderResponse:
        confirmed = await self._handlers.confirm(request.order_id)
        return pb.ConfirmOrderResponse(order=order_out(confirmed.order), replayed=confirmed.replayed)

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        return pb.GetOrderResponse(order=order_out(await self._views.get_order(request.order_id)))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Context) -> pb.ListOrdersResponse:
        page = await self._views.list_orders(
            request.user_id,
            [STATUS_IN.get(status) for status in request.statuses],
            request.page_size,
            request.page_token,
        )
        return pb.ListOrdersResponse(
            orders=[order_out(order) for order in page.orders], next_page_token=page.next_page_token
        )

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Context) -> pb.CancelOrderResponse:
        cancelled = await self._handlers.cancel(
            CancelOrder(
                order_id=request.order_id,
                reason=REASON_IN.get(request.reason),
                note=request.note,
                idempotency_key=request.idempotency_key,
            )
        )
        return pb.CancelOrderResponse(
            order=order_out(cancelled.order),
            replayed=cancelled.replayed,
            already_cancelled=cancelled.already_cancelled,
        )

    async def MarkShipped(self, request: pb.MarkShippedRequest, context: Context) -> pb.MarkShippedResponse:
        shipped = await self._handlers.ship(
            MarkShipped(
                order_id=request.order_id,
                shipment_id=request.shipment_id,
                tracking_number=request.tracking_number,
                carrier=request.carrier,
                shipped_at=timestamp_in(request.ship_time, "ship_time") if request.HasField("ship_time") else None,
            )
        )
        return pb.MarkShippedResponse(order=order_out(shipped.order), replayed=shipped.replayed)

    async def MarkDelivered(self, request: pb.MarkDeliveredRequest, context: Context) -> pb.MarkDeliveredResponse:
        delivered = await self._handlers.deliver(
            MarkDelivered(
                order_id=request.order_id,
                delivered_at=timestamp_in(request.deliver_time, "deliver_time")
                if request.HasField("deliver_time")
                else None,
            )
        )
        return pb.MarkDeliveredResponse(order=order_out(delivered.order), replayed=delivered.replayed)
