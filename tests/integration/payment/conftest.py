"""Fixtures for payment tests: the sandbox PSP as a real process, a payment service pointed at it, a stub
that calls as a trusted mesh service, and direct reads of both ledgers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from payment_svc.__main__ import SPEC
from service_runtime.downstream import DownstreamError
from service_runtime.server import RunningService
from shop.payment.v1 import payment_service_pb2 as pb
from shop.payment.v1 import payment_service_pb2_grpc as pb_grpc
from shop.type.v1 import money_pb2
from tests.identity import as_service
from tests.psp import Psp, start_psp
from tests.rpc_errors import expect_failure

TRUSTED = as_service("gateway")

#: Settings that make lost answers settle within a test's patience.
FAST = {
    "PSP_TIMEOUT_SECONDS": "0.5",
    "RECONCILE_INTERVAL_SECONDS": "0.1",
    "RECONCILE_AFTER_SECONDS": "1",
}


@pytest.fixture
async def psp(database_url: str) -> AsyncIterator[Psp]:
    sandbox = await start_psp(database_url, PSP_HANG_SECONDS="2")
    yield sandbox
    await sandbox.stop()


StartPayment = Callable[..., Awaitable["pb_grpc.PaymentServiceAsyncStub"]]


@pytest.fixture
async def start_payment(start_service, psp: Psp) -> AsyncIterator[StartPayment]:
    channels: list[grpc.aio.Channel] = []

    async def start(**env: str) -> pb_grpc.PaymentServiceAsyncStub:
        service: RunningService = await start_service(SPEC, PSP_BASE_URL=psp.base_url, **{**FAST, **env})
        channel = grpc.aio.insecure_channel(service.address)
        channels.append(channel)
        return pb_grpc.PaymentServiceStub(channel)

    yield start
    for channel in channels:
        await channel.close()


@pytest.fixture
async def payment(start_payment: StartPayment) -> pb_grpc.PaymentServiceAsyncStub:
    return await start_payment()


def usd(minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=minor)


def authorize_request(
    token: str = "tok_visa", *, checkout: str = "chk-1", key: str = "auth-1", minor: int = 5000
) -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(checkout_id=checkout, amount=usd(minor), payment_token=token, idempotency_key=key)


async def rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection,
        connection.cursor(row_factory=dict_row) as cursor,
    ):
        await cursor.execute(query, params)
        return list(await cursor.fetchall())


async def fails(call: Any, code: grpc.StatusCode) -> DownstreamError:
    """Awaits a call that must fail with `code` (and exactly one ErrorInfo); returns what it failed with."""
    failure = await expect_failure(call)
    assert failure.code == code, f"expected {code.name}, got {failure.code.name}: {failure.message}"
    return failure
