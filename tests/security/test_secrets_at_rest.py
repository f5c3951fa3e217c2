"""No card number, payment token, secret or e-mail address is kept where it should not be: a shopper checks
out through the real gateway (StartCheckout with her e-mail and address, a PlaceOrder with a raw card
number, which is refused, then one with a test card token), and then every table of every schema, every
log line the process wrote and every exported span are searched for them.

The e-mail may be stored only where a contract stores it (`E_MAIL_STORED_BY_CONTRACT`). The spans-and-logs
half for the token, e-mail and address of a shortcut checkout is also in
tests/integration/observability/test_logs_and_privacy.py; this test goes through StartCheckout, adds the
database, the raw card number, the bearer token and the mesh's secrets."""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import psycopg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg import sql

from service_runtime.settings import (
    DEVELOPMENT_JWT_KEY,
    DEVELOPMENT_PAGE_TOKEN_SECRET,
    DEVELOPMENT_SERVICE_TOKEN_SECRET,
)
from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc
from shop.shipping.v1 import shipping_service_pb2 as shipping_pb
from shop.type.v1 import address_pb2
from tests.hostile.conftest import SKU, Mesh
from tests.identity import as_customer, as_service
from tests.rpc_errors import expect_failure

SHOPPER = "pii-shopper"
E_MAIL = "zed.secretname+pii@example.com"
CARD_NUMBER = "4242424242424242"
CARD_TOKEN = "tok_visa"
STREET = "77 Hidden Lane"
#: The sandbox PSP is the card network: its ledger (schema psp_sandbox) keeps the token it issued, as a
#: real PSP does on its side; the mesh's own schemas may not.
#: Tables whose contract keeps the shopper's e-mail: the checkout (UpdateCheckout changes it), the order
#: (Order.customer_email), the order's events (OrderConfirmed carries it to the notification service) and
#: the notification sent to it.
E_MAIL_STORED_BY_CONTRACT = frozenset(
    {"checkout.checkouts", "orders.orders", "orders.outbox", "notification.notifications"}
)


async def table_rows_as_text(database_url: str) -> dict[str, str]:
    """Every table of every schema ("schema.table") → its rows as JSON text."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        tables = await connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
        )
        found: dict[str, str] = {}
        for schema, table in await tables.fetchall():
            rows = await connection.execute(
                sql.SQL("SELECT coalesce(json_agg(t)::text, '') FROM {} t").format(sql.Identifier(schema, table))
            )
            row = await rows.fetchone()
            found[f"{schema}.{table}"] = row[0] if row else ""
        return found


async def test_a_checkout_leaves_no_card_number_token_secret_or_stray_e_mail_in_the_database_logs_or_spans(
    mesh: Mesh, spans: InMemorySpanExporter, log_lines: io.StringIO
):
    shop = mesh.shop
    shopper = as_customer(SHOPPER)
    bearer = shopper[0][1].removeprefix("Bearer ")
    service_token = as_service("gateway")[0][1]
    cart = await shop.cart_of(SHOPPER, {SKU: 1})
    async with grpc.aio.insecure_channel(mesh.addresses["shop.gateway.v1.CheckoutService"]) as channel:
        gateway = pb_grpc.CheckoutServiceStub(channel)
        started = await gateway.StartCheckout(
            pb.StartCheckoutRequest(
                cart_id=cart.cart_id,
                shipping_address=address_pb2.Address(
                    recipient_name="Zed Secretname",
                    line1=STREET,
                    city="New York",
                    region="NY",
                    postal_code="10001",
                    country_code="US",
                ),
                shipping_method=shipping_pb.SHIPPING_METHOD_STANDARD,
                customer_email=E_MAIL,
                idempotency_key="pii-start",
            ),
            metadata=shopper,
            timeout=20,
        )
        checkout_id = started.checkout.checkout_id
        raw_card = await expect_failure(
            gateway.PlaceOrder(
                pb.PlaceOrderRequest(checkout_id=checkout_id, payment_token=CARD_NUMBER, idempotency_key="pii-1"),
                metadata=shopper,
                timeout=20,
            )
        )
        assert raw_card.code == grpc.StatusCode.INVALID_ARGUMENT, raw_card
        assert CARD_NUMBER not in f"{raw_card.message} {raw_card.metadata} {raw_card.field_violations}"
        await gateway.PlaceOrder(
            pb.PlaceOrderRequest(checkout_id=checkout_id, payment_token=CARD_TOKEN, idempotency_key="pii-2"),
            metadata=shopper,
            timeout=30,
        )
    placed = await _settled(mesh, checkout_id)
    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED, placed
    for _ in range(100):  # the confirmation e-mail (its row is where the address may be)
        if await shop.rows("SELECT 1 FROM notification.notifications WHERE order_id = %s", placed.order_id):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # spans of the consumer end after its row is written

    tables = await table_rows_as_text(shop.database_url)
    exported = [span.to_json(indent=None) for span in spans.get_finished_spans()]
    logged = log_lines.getvalue()
    assert checkout_id in logged and any(checkout_id in span for span in exported)  # searched where it is
    assert any(E_MAIL in text for text in tables.values())  # and the database has the checkout

    never = {
        "card number": CARD_NUMBER,
        "card token": CARD_TOKEN,
        "bearer token": bearer,
        "service token": service_token,
        "JWT key": DEVELOPMENT_JWT_KEY,
        "service token secret": DEVELOPMENT_SERVICE_TOKEN_SECRET,
        "page token secret": DEVELOPMENT_PAGE_TOKEN_SECRET,
    }
    problems = [
        f"{what} in {table}"
        for what, value in never.items()
        for table, text in tables.items()
        if value in text and not (table.startswith("psp_sandbox.") and value == CARD_TOKEN)
    ]
    problems += [
        f"e-mail in {table}"
        for table, text in tables.items()
        if E_MAIL in text and table not in E_MAIL_STORED_BY_CONTRACT
    ]
    for what, value in {**never, "e-mail": E_MAIL, "street": STREET}.items():
        problems += [f"{what} in span {json.loads(span)['name']}" for span in exported if value in span]
        if value in logged:
            problems.append(f"{what} in the log: …{_around(logged, value)}…")
    assert problems == [], problems


async def _settled(mesh: Mesh, checkout_id: str) -> pb.Checkout:
    async with grpc.aio.insecure_channel(mesh.addresses["shop.gateway.v1.CheckoutService"]) as channel:
        gateway = pb_grpc.CheckoutServiceStub(channel)
        request = pb.GetCheckoutRequest(checkout_id=checkout_id)
        for _ in range(150):
            checkout = (await gateway.GetCheckout(request, metadata=as_customer(SHOPPER), timeout=10)).checkout
            if checkout.status != pb.CHECKOUT_STATUS_PLACING:
                return checkout
            await asyncio.sleep(0.2)
        return checkout


def _around(text: str, value: str) -> str:
    at = text.index(value)
    return text[max(0, at - 120) : at + 40].replace(value, "<HERE>")
