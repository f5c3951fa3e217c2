"""Fixtures for order tests: a running order service, stubs as the gateway (trusted) and as customers,
request builders and direct reads of the outbox."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest

from order_svc.__main__ import SPEC
from service_runtime.server import RunningService
from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2, money_pb2
from tests.identity import as_customer, as_service

TRUSTED = as_service("gateway")
_counter = itertools.count(1)


def usd(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount_minor)


def create_request(user_id: str = "u1", checkout_id: str | None = None, **overrides: Any) -> pb.CreateOrderRequest:
    """A CreateOrderRequest whose amounts add up: 2 × 1999 + 1 × 500 = 4498, + 599 shipping + 371 tax."""
    request = pb.CreateOrderRequest(
        checkout_id=f"co-{next(_counter)}" if checkout_id is None else checkout_id,
        user_id=user_id,
        customer_email=f"{user_id}@example.com",
        payment_id=f"pay-{next(_counter)}",
        lines=[
            pb.OrderLine(sku="SKU-A", product_name="Mug", quantity=2, unit_price=usd(1999), line_total=usd(3998)),
            pb.OrderLine(sku="SKU-B", product_name="Tea", quantity=1, unit_price=usd(500), line_total=usd(500)),
        ],
        subtotal=usd(4498),
        shipping_cost=usd(599),
        tax=usd(371),
        total=usd(5468),
        shipping_address=address_pb2.Address(
            recipient_name="Ada Lovelace", line1="1 Main St", city="Springfield", postal_code="12345", country_code="US"
        ),
        shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
    )
    for field, value in overrides.items():
        if isinstance(value, list):
            del getattr(request, field)[:]
            getattr(request, field).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(request, field).CopyFrom(value)
        else:
            setattr(request, field, value)
    return request


@pytest.fixture
async def order_service(start_service) -> RunningService:
    # Payment and inventory are nowhere (port 1 refuses): cancellations stay PENDING for the worker.
    return await start_service(
        SPEC, ORDER_COMPENSATION_BACKOFF_MAX_SECONDS="0.2", PAYMENT_TARGET="127.0.0.1:1", INVENTORY_TARGET="127.0.0.1:1"
    )


@pytest.fixture
async def orders(order_service: RunningService) -> AsyncIterator[pb_grpc.OrderServiceAsyncStub]:
    async with grpc.aio.insecure_channel(order_service.address) as channel:
        yield pb_grpc.OrderServiceStub(channel)


async def place(orders: pb_grpc.OrderServiceAsyncStub, user_id: str = "u1", *, confirm: bool = True) -> pb.Order:
    order = (await orders.CreateOrder(create_request(user_id), metadata=TRUSTED)).order
    if confirm:
        order = (await orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order.order_id), metadata=TRUSTED)).order
    return order


async def cancel(
    orders: pb_grpc.OrderServiceAsyncStub, order_id: str, *, user_id: str = "u1", key: str | None = None
) -> pb.CancelOrderResponse:
    return await orders.CancelOrder(
        pb.CancelOrderRequest(
            order_id=order_id,
            reason=pb.CANCEL_REASON_CUSTOMER_REQUEST,
            idempotency_key=key or f"cancel-{order_id}",
        ),
        metadata=as_customer(user_id),
    )


async def scalar(database_url: str, statement: str, *params: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(statement, params)
        row = await cursor.fetchone()
        return row[0] if row else None


async def outbox(database_url: str, order_id: str | None = None) -> list[tuple[str, int, str, bool]]:
    """(order_id, sequence, event_type, published) of every outbox row, in publication order."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT order_id, sequence, event_type, published_at IS NOT NULL FROM orders.order_events"
            " WHERE %s::text IS NULL OR order_id = %s ORDER BY position",
            (order_id, order_id),
        )
        return [(row[0], row[1], row[2], row[3]) for row in await cursor.fetchall()]
