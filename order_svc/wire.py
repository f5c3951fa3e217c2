"""Order domain ↔ protobuf: the Order message (for the servicer and the events) and OrderEvents for the outbox.

An OrderEvent carries the trace context of the request that caused the change (W3C `traceparent` and
`tracestate`, read from the current OpenTelemetry context), so a consumer's span joins that trace.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.message import Message
from opentelemetry import propagate

from order_svc.domain import (
    CancelReason,
    CompensationStatus,
    Order,
    OrderStatus,
    ShippingMethod,
)
from service_runtime.wire import address_out, money_out, timestamp_out
from shop.order.v1 import events_pb2 as events
from shop.order.v1 import order_service_pb2 as pb
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb

STATUS_OUT = {
    OrderStatus.PENDING: pb.ORDER_STATUS_PENDING,
    OrderStatus.CONFIRMED: pb.ORDER_STATUS_CONFIRMED,
    OrderStatus.SHIPPED: pb.ORDER_STATUS_SHIPPED,
    OrderStatus.DELIVERED: pb.ORDER_STATUS_DELIVERED,
    OrderStatus.CANCELLED: pb.ORDER_STATUS_CANCELLED,
}
STATUS_IN = {value: key for key, value in STATUS_OUT.items()}

REASON_OUT = {reason: pb.CancelReason.Value(f"CANCEL_REASON_{reason.name}") for reason in CancelReason}
REASON_IN = {value: key for key, value in REASON_OUT.items()}

COMPENSATION_OUT = {
    status: pb.CompensationStatus.Value(f"COMPENSATION_STATUS_{status.name}") for status in CompensationStatus
}

METHOD_OUT = {
    ShippingMethod.STANDARD: shipping_pb.SHIPPING_METHOD_STANDARD,
    ShippingMethod.EXPRESS: shipping_pb.SHIPPING_METHOD_EXPRESS,
    ShippingMethod.OVERNIGHT: shipping_pb.SHIPPING_METHOD_OVERNIGHT,
}
METHOD_IN = {value: key for key, value in METHOD_OUT.items()}


def order_out(order: Order) -> pb.Order:
    message = pb.Order(
        order_id=order.order_id,
        checkout_id=order.checkout_id,
        user_id=order.user_id,
        customer_email=order.customer_email,
        payment_id=order.payment_id,
        status=STATUS_OUT[order.status],
        lines=[
            pb.OrderLine(
                sku=line.sku,
                product_name=line.product_name,
                quantity=line.quantity,
                unit_price=money_out(line.unit_price),
                line_total=money_out(line.line_total),
            )
            for line in order.lines
        ],
        subtotal=money_out(order.subtotal),
        discount_total=money_out(order.discount_total),
        shipping_cost=money_out(order.shipping_cost),
        tax=money_out(order.tax),
        total=money_out(order.total),
        shipping_address=address_out(order.shipping_address),
        shipping_method=METHOD_OUT[order.shipping_method],
        shipment_id=order.shipment_id,
        create_time=timestamp_out(order.created_at),
        update_time=timestamp_out(order.updated_at),
        confirm_time=timestamp_out(order.confirmed_at),
        ship_time=timestamp_out(order.shipped_at),
        deliver_time=timestamp_out(order.delivered_at),
    )
    if order.cancellation is not None:
        c = order.cancellation
        message.cancellation.CopyFrom(
            pb.Cancellation(
                reason=REASON_OUT[c.reason],
                note=c.note,
                cancel_time=timestamp_out(c.cancelled_at),
                refund_status=COMPENSATION_OUT[c.refund_status],
                refund_id=c.refund_id,
                refunded_amount=money_out(c.refunded),
                restock_status=COMPENSATION_OUT[c.restock_status],
            )
        )
    return message


#: The OrderEvent oneof field of each payload type (the outbox row's and the bus message's "type").
PAYLOAD_FIELDS = {
    "OrderCreated": "order_created",
    "OrderConfirmed": "order_confirmed",
    "OrderCancelled": "order_cancelled",
    "OrderShipped": "order_shipped",
    "OrderDelivered": "order_delivered",
    "OrderRefunded": "order_refunded",
    "OrderPaymentVoided": "order_payment_voided",
    "OrderRestocked": "order_restocked",
}


def new_event_id() -> str:
    return f"ev_{uuid.uuid4().hex}"


def order_event(event_id: str, order: Order, payload: Message, occurred_at: datetime) -> events.OrderEvent:
    """The OrderEvent of a change that left `order` as it is, with the current trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    event = events.OrderEvent(
        event_id=event_id,
        occur_time=timestamp_out(occurred_at),
        order_id=order.order_id,
        sequence=order.event_count,
        traceparent=carrier.get("traceparent", ""),
        tracestate=carrier.get("tracestate", ""),
        order=order_out(order),
    )
    getattr(event, PAYLOAD_FIELDS[type(payload).__name__]).CopyFrom(payload)
    return event
