"""Cancelling a placed order gives money and stock back exactly once, with real Payment (and its sandbox
PSP as a process) and Inventory services, even when Payment is down when the cancel arrives, and even
when a worker dies holding a claimed cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import psycopg
import pytest

from inventory_svc.__main__ import SPEC as INVENTORY
from order_svc.__main__ import SPEC as ORDER
from order_svc.compensation import refund_request
from order_svc.domain import Order
from order_svc.repository import OrderStatements
from payment_svc.__main__ import SPEC as PAYMENT
from service_runtime.database import Database
from service_runtime.server import RunningService
from service_runtime.sql import UnitOfWork
from shop.inventory.v1 import inventory_service_pb2 as inventory_pb
from shop.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc
from shop.payment.v1 import payment_service_pb2 as payment_pb
from shop.payment.v1 import payment_service_pb2_grpc as payment_grpc
from shop.type.v1 import line_item_pb2
from tests.identity import trusted_channel
from tests.integration.events.conftest import free_port
from tests.integration.order.conftest import TRUSTED, cancel, create_request, outbox, scalar, usd
from tests.psp import Psp, start_psp

PAYMENT_FAST = {"PSP_TIMEOUT_SECONDS": "0.5", "RECONCILE_INTERVAL_SECONDS": "0.1", "RECONCILE_AFTER_SECONDS": "1"}


@dataclass
class Mesh:
    psp: Psp
    payment_address: str
    payment: RunningService
    inventory: inventory_grpc.InventoryServiceAsyncStub
    orders: pb_grpc.OrderServiceAsyncStub
    payments: payment_grpc.PaymentServiceAsyncStub
    start_payment: Callable[[], Awaitable[RunningService]]


@pytest.fixture
async def mesh(start_service, database_url: str) -> AsyncIterator[Mesh]:
    psp = await start_psp(database_url)
    payment_address = f"127.0.0.1:{free_port()}"  # fixed for this test, so Payment can come back on it

    async def start_payment() -> RunningService:
        return await start_service(
            PAYMENT, PSP_BASE_URL=psp.base_url, GRPC_LISTEN_ADDRESS=payment_address, **PAYMENT_FAST
        )

    payment = await start_payment()
    inventory_service = await start_service(INVENTORY)
    order_service = await start_service(
        ORDER,
        PAYMENT_TARGET=payment_address,
        INVENTORY_TARGET=inventory_service.address,
        ORDER_COMPENSATION_BACKOFF_MAX_SECONDS="0.3",
    )
    async with (
        trusted_channel(inventory_service.address) as inventory_channel,
        grpc.aio.insecure_channel(order_service.address) as order_channel,
        grpc.aio.insecure_channel(payment_address) as payment_channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(inventory_channel)
        for sku in ("SKU-A", "SKU-B"):
            await inventory.UpsertProduct(
                inventory_pb.UpsertProductRequest(sku=sku, name=sku, price=usd(1999), weight_grams=100),
                metadata=TRUSTED,
            )
            await inventory.AdjustStock(
                inventory_pb.AdjustStockRequest(
                    sku=sku, delta=10, reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key=f"i-{sku}"
                ),
                metadata=TRUSTED,
            )
        yield Mesh(
            psp,
            payment_address,
            payment,
            inventory,
            pb_grpc.OrderServiceStub(order_channel),
            payment_grpc.PaymentServiceStub(payment_channel),
            start_payment,
        )
    await psp.stop()


async def checkout(mesh: Mesh, *, confirm: bool) -> pb.Order:
    """The gateway's saga by hand: reserve, authorize, create the order, then (confirm) capture, sell, confirm."""
    request = create_request("u1")
    await mesh.inventory.ReserveInventory(
        inventory_pb.ReserveInventoryRequest(
            checkout_id=request.checkout_id,
            items=[line_item_pb2.LineItem(sku="SKU-A", quantity=2), line_item_pb2.LineItem(sku="SKU-B", quantity=1)],
        ),
        metadata=TRUSTED,
    )
    authorized = await mesh.payments.AuthorizePayment(
        payment_pb.AuthorizePaymentRequest(
            checkout_id=request.checkout_id, amount=usd(5468), payment_token="tok_visa", idempotency_key="auth-1"
        ),
        metadata=TRUSTED,
    )
    request.payment_id = authorized.payment.payment_id
    order = (await mesh.orders.CreateOrder(request, metadata=TRUSTED)).order
    if not confirm:
        return order
    await mesh.payments.CapturePayment(
        payment_pb.CapturePaymentRequest(payment_id=order.payment_id, order_id=order.order_id, idempotency_key="cap-1"),
        metadata=TRUSTED,
    )
    await mesh.inventory.ConfirmReservation(
        inventory_pb.ConfirmReservationRequest(checkout_id=order.checkout_id, order_id=order.order_id),
        metadata=TRUSTED,
    )
    return (await mesh.orders.ConfirmOrder(pb.ConfirmOrderRequest(order_id=order.order_id), metadata=TRUSTED)).order


async def stock(database_url: str, sku: str) -> tuple[int, int]:
    """(stock_on_hand, reserved) from inventory's tables (GetProduct may answer from its cache)."""
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        cursor = await connection.execute(
            "SELECT stock_on_hand, reserved FROM inventory.products WHERE sku = %s", (sku,)
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


async def settled(mesh: Mesh, order_id: str, timeout: float = 30.0) -> pb.Order:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        order = (await mesh.orders.GetOrder(pb.GetOrderRequest(order_id=order_id), metadata=TRUSTED)).order
        pending = pb.COMPENSATION_STATUS_PENDING
        if pending not in (order.cancellation.refund_status, order.cancellation.restock_status):
            return order
        assert asyncio.get_running_loop().time() < deadline, order.cancellation
        await asyncio.sleep(0.1)


async def test_cancelling_a_paid_order_while_payment_is_down_refunds_once_when_it_returns(mesh, database_url):
    order = await checkout(mesh, confirm=True)
    assert await stock(database_url, "SKU-A") == (8, 0)
    await mesh.payment.stop()

    cancelled = await cancel(mesh.orders, order.order_id)
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED, "CANCELLED at once, whatever Payment's state"
    assert cancelled.order.cancellation.refund_status == pb.COMPENSATION_STATUS_PENDING
    await asyncio.sleep(1.0)  # the worker retries against the dead Payment meanwhile
    assert await scalar(database_url, "SELECT compensation_attempts FROM orders.orders") >= 1

    # A worker claims the cancellation and is SIGKILLed mid-call: its claim is a lease that runs out.
    await scalar(
        database_url,
        "UPDATE orders.orders SET compensation_due_at = now() + interval '2 seconds' RETURNING order_id",
    )
    mesh.payment = await mesh.start_payment()
    # No assertion that the claim stays untouched here: an attempt that began before the UPDATE above
    # may legitimately finish once Payment is back (channels reconnect within 2 s). What must hold is
    # below: one refund, stock back once.

    done = await settled(mesh, order.order_id)
    assert done.cancellation.refund_status == pb.COMPENSATION_STATUS_SUCCEEDED
    assert done.cancellation.restock_status == pb.COMPENSATION_STATUS_SUCCEEDED
    assert done.cancellation.refunded_amount == usd(5468) and done.cancellation.refund_id
    await asyncio.sleep(1.0)
    refunds = await mesh.psp.refunds()
    assert [row["amount_minor"] for row in refunds] == [5468], "exactly one refund at the PSP"
    assert await stock(database_url, "SKU-A") == (10, 0) and await stock(database_url, "SKU-B") == (10, 0), (
        "stock returned once"
    )
    kinds = [kind for _, _, kind, _ in await outbox(database_url, order.order_id)]
    assert kinds == [
        "OrderCreated",
        "OrderConfirmed",
        "OrderCancelled",
        "OrderRestocked",
        "OrderRefunded",
    ] or kinds == [
        "OrderCreated",
        "OrderConfirmed",
        "OrderCancelled",
        "OrderRefunded",
        "OrderRestocked",
    ]


async def test_cancelling_a_pending_order_voids_the_payment_and_releases_the_reservation(mesh, database_url):
    order = await checkout(mesh, confirm=False)
    assert await stock(database_url, "SKU-A") == (10, 2)
    cancelled = await mesh.orders.CancelOrder(
        pb.CancelOrderRequest(order_id=order.order_id, reason=pb.CANCEL_REASON_PAYMENT_FAILED, idempotency_key="c1"),
        metadata=TRUSTED,
    )
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED
    done = await settled(mesh, order.order_id)
    assert done.cancellation.refund_status == pb.COMPENSATION_STATUS_SUCCEEDED
    assert done.cancellation.refunded_amount.amount_minor == 0 and not done.cancellation.refund_id
    assert done.cancellation.restock_status == pb.COMPENSATION_STATUS_SUCCEEDED
    payment = await mesh.payments.GetPayment(
        payment_pb.GetPaymentRequest(payment_id=order.payment_id), metadata=TRUSTED
    )
    assert payment.payment.status == payment_pb.PAYMENT_STATUS_VOIDED
    assert await stock(database_url, "SKU-A") == (10, 0)
    assert await mesh.psp.refunds() == []
    kinds = [kind for _, _, kind, _ in await outbox(database_url, order.order_id)]
    assert kinds[:2] == ["OrderCreated", "OrderCancelled"]
    assert sorted(kinds[2:]) == ["OrderPaymentVoided", "OrderRestocked"]


class BlackHole:
    """A TCP server that accepts connections and never answers: a call to it hangs until its deadline."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass

        self.server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_cancel_worker_sigkilled_mid_call_is_replaced_and_the_money_moves_once(
    start_service, database_url: str, redis_url: str, redis_prefix: str
):
    psp = await start_psp(database_url)
    hole = BlackHole()
    await hole.start()
    doomed: subprocess.Popen[bytes] | None = None
    try:
        payment = await start_service(PAYMENT, PSP_BASE_URL=psp.base_url, **PAYMENT_FAST)
        inventory_service = await start_service(INVENTORY)
        # The doomed order service runs as its own process; its worker's Payment calls hang in the black hole.
        address = f"127.0.0.1:{free_port()}"
        doomed = subprocess.Popen(
            [sys.executable, "-m", "order_svc"],
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": redis_prefix,
                "GRPC_LISTEN_ADDRESS": address,
                "PAYMENT_TARGET": hole.address,
                "INVENTORY_TARGET": "127.0.0.1:1",
                "ORDER_COMPENSATION_LEASE_SECONDS": "2",
                "LOG_LEVEL": "WARNING",
            },
        )
        async with (
            grpc.aio.insecure_channel(address) as order_channel,
            grpc.aio.insecure_channel(payment.address) as payment_channel,
            trusted_channel(inventory_service.address) as inventory_channel,
        ):
            mesh = Mesh(
                psp,
                payment.address,
                payment,
                inventory_grpc.InventoryServiceStub(inventory_channel),
                pb_grpc.OrderServiceStub(order_channel),
                payment_grpc.PaymentServiceStub(payment_channel),
                lambda: start_service(PAYMENT),
            )
            await _stock_up(mesh.inventory)
            for _ in range(300):
                assert doomed.poll() is None, "order_svc exited"
                if await _serving(address):
                    break
                await asyncio.sleep(0.1)
            order = await checkout(mesh, confirm=True)
            cancelled = await cancel(mesh.orders, order.order_id)
            assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED
            assert cancelled.order.cancellation.refund_status == pb.COMPENSATION_STATUS_PENDING
            # The worker's RefundPayment reached Payment (the test sends it with the worker's own key) and
            # the worker is SIGKILLed before it could record the answer.
            reached = await mesh.payments.RefundPayment(
                refund_request(await _order_as_stored(database_url, order.order_id)), metadata=TRUSTED
            )
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()

        replacement = await start_service(
            ORDER,
            PAYMENT_TARGET=payment.address,
            INVENTORY_TARGET=inventory_service.address,
            ORDER_COMPENSATION_BACKOFF_MAX_SECONDS="0.3",
        )
        async with grpc.aio.insecure_channel(replacement.address) as channel:
            mesh.orders = pb_grpc.OrderServiceStub(channel)
            done = await settled(mesh, order.order_id)
        assert done.cancellation.refund_status == pb.COMPENSATION_STATUS_SUCCEEDED
        assert done.cancellation.refund_id == reached.refund.refund_id, "the replacement replayed the same refund"
        assert [row["amount_minor"] for row in await psp.refunds()] == [5468], "exactly one refund at the PSP"
        assert await stock(database_url, "SKU-A") == (10, 0), "stock returned once"
    finally:
        if doomed is not None and doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        hole.close()
        await psp.stop()


async def _order_as_stored(database_url: str, order_id: str) -> Order:
    database = Database(database_url, min_size=1, max_size=1, statement_timeout_ms=5000, application_name="test")
    await database.open()
    try:
        found = await UnitOfWork(database, OrderStatements).read(lambda tx: tx.order(order_id, lock=False))
        assert found is not None
        return found
    finally:
        await database.close()


async def _serving(address: str) -> bool:
    from grpc_health.v1 import health_pb2_grpc

    from devstack.mesh import health_of

    async with grpc.aio.insecure_channel(address) as channel:
        return await health_of(health_pb2_grpc.HealthStub(channel)) == "SERVING"


async def _stock_up(inventory: inventory_grpc.InventoryServiceAsyncStub) -> None:
    for sku in ("SKU-A", "SKU-B"):
        await inventory.UpsertProduct(
            inventory_pb.UpsertProductRequest(sku=sku, name=sku, price=usd(1999), weight_grams=100), metadata=TRUSTED
        )
        await inventory.AdjustStock(
            inventory_pb.AdjustStockRequest(
                sku=sku, delta=10, reason=inventory_pb.STOCK_ADJUSTMENT_REASON_RECEIVED, idempotency_key=f"i-{sku}"
            ),
            metadata=TRUSTED,
        )
