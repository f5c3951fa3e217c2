"""JSON log lines carry the trace of the request they were written in; a checkout's card token, e-mail
and street address appear in no exported span and no log line."""

from __future__ import annotations

import asyncio
import io
import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shop.gateway.v1 import gateway_service_pb2 as pb
from tests.integration.gateway.conftest import ADDRESS, Shop

PLACE_ORDER = "/shop.gateway.v1.CheckoutService/PlaceOrder"


async def notified(shop: Shop, order_id: str) -> None:
    for _ in range(100):
        if await shop.rows(
            "SELECT 1 FROM notification.notifications WHERE order_id = %s AND status = 'sent'", order_id
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no notification was sent for {order_id}")


async def test_a_log_line_written_during_a_checkout_carries_its_trace_id(
    gateway: Shop, spans: InMemorySpanExporter, log_lines: io.StringIO
):
    await gateway.product("MUG", 10)
    checkout_id = await gateway.quoted_checkout("alice", {"MUG": 1})

    placed = (await gateway.place("alice", checkout_id)).checkout

    [server] = [s for s in spans.get_finished_spans() if s.name == PLACE_ORDER and s.kind is SpanKind.SERVER]
    assert server.context is not None
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [completed] = [line for line in lines if f"checkout {checkout_id} completed" in line["message"]]
    assert completed["trace_id"] == format(server.context.trace_id, "032x")
    assert len(completed["span_id"]) == 16 and completed["span_id"] != "0" * 16
    assert completed["level"] == "INFO" and completed["service"] == "tests" and completed["logger"] == "gateway.runner"
    assert placed.order_id in completed["message"]


async def test_a_checkouts_token_email_and_street_address_are_in_no_span_and_no_log_line(
    gateway: Shop, spans: InMemorySpanExporter, log_lines: io.StringIO
):
    await gateway.product("TEA", 10)
    checkout_id = await gateway.quoted_checkout("zelda", {"TEA": 1})
    token, email = "tok_visa_debit", "zelda@example.com"
    assert (await gateway.get("zelda", checkout_id)).customer_email == email

    placed = (await gateway.place("zelda", checkout_id, token=token)).checkout
    assert placed.status == pb.CHECKOUT_STATUS_COMPLETED
    await notified(gateway, placed.order_id)
    await asyncio.sleep(0.2)  # the consumer's spans end after the send is recorded

    exported = [span.to_json(indent=None) for span in spans.get_finished_spans()]
    assert any("psp POST authorizations" in span for span in exported)
    assert any("notification send" in span for span in exported)
    logged = log_lines.getvalue()
    assert "notification" in logged and checkout_id in logged  # the lines are there; the secrets are not
    for secret in (token, email, ADDRESS["line1"], ADDRESS["recipient_name"]):
        assert [span for span in exported if secret in span] == [], secret
        assert secret not in logged, secret
